"""The paper-scale run on a GPU workstation or a SLURM cluster: downloads run where the network is and verify what
they fetch, missing data is announced when the workflow is parsed while everything else still builds, GPU jobs are
declared and limited, resource requests fit, and a job's GPU is checked and chosen (dcgan_repro.gpu).

Offline: nothing here reaches the internet (torchvision's download functions are replaced where a test needs a
"download"), and no GPU is needed (CUDA facts are written out by hand).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from conftest import no_download
from dcgan_repro import gpu, io, sizing
from dcgan_repro.data import download, fetch, ingest, supply

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smk(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def job_counts(out: str) -> dict[str, int]:
    """Snakemake's 'Job stats' table -> {rule: jobs}."""
    return {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M)}


def rule_blocks() -> dict[str, tuple[str, str]]:
    """rule name -> (its .smk file name, its text)."""
    blocks = {}
    for f in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", f.read_text(), flags=re.M)[1:]:
            blocks[block.split(":")[0].strip()] = (f.name, block)
    return blocks


# --- downloads: local rules, verified, separate from ingest --------------------------------------------------


def test_download_rules_are_local_rules_and_ingest_reads_only_local_files(tmp_path):
    """Under SLURM a local rule runs on the submit host, where the network is; rule data_ingest runs on compute nodes
    and must never fetch (its script passes offline=True)."""
    code = textwrap.dedent(f"""
        from pathlib import Path
        from snakemake.api import SnakemakeApi
        from snakemake.settings.types import (ConfigSettings, OutputSettings, Quietness, ResourceSettings,
                                              StorageSettings)
        with SnakemakeApi(OutputSettings(quiet={{Quietness.ALL}})) as api:
            wf = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=ConfigSettings(),
                              storage_settings=StorageSettings(), snakefile=Path({str(REPO / 'Snakefile')!r}),
                              workdir=Path({str(tmp_path)!r}))._workflow
            print("LOCALRULES", sorted(wf._localrules), "GROUPED", sorted(r.name for r in wf.rules if r.group))
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    local = re.search(r"LOCALRULES (\[.*?\]) GROUPED (\[.*?\])", res.stdout)
    assert local, res.stdout[-2000:]
    # the downloads: datasets, and the FID Inception weights (a grouped rule is never local: none is grouped)
    assert eval(local.group(1)) == ["ablation_fid_weights", "data_download"]
    assert eval(local.group(2)) == []
    script = (REPO / "workflow" / "scripts" / "data_ingest.py").read_text()
    assert "offline=True" in script
    assert "data_download" in (REPO / "profiles" / "slurm" / "config.yaml").read_text()  # documented where it runs


def test_the_default_dag_fetches_each_download_once_before_its_ingest(tmp_path):
    res = smk("-n", "--directory", str(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    downloads = re.findall(r"^rule data_download:\n    output: (\S+)", out, flags=re.M)
    assert sorted(downloads) == [f"resources/data/checksums/download_{n}.json" for n in ("faces", "lsun", "mnist",
                                                                                         "svhn")]
    ingests = dict((o, i) for i, o in re.findall(r"^rule data_ingest:\n    input: (\S+)\n    output: (\S+)", out,
                                                  flags=re.M))
    assert ingests["resources/data/mnist"] == "resources/data/checksums/download_mnist.json"
    assert ingests["resources/data/lsun_raw"] == "resources/data/checksums/download_lsun.json"


@pytest.mark.parametrize("name", ["mnist_raw", "cifar10", "svhn", "lsun_raw", "faces_raw"])
def test_offline_ingest_never_downloads_and_names_the_download_step(tmp_path, monkeypatch, name):
    """Rule data_ingest (offline=True) with files missing: no network call, an error naming the files and
    `snakemake --until data_download`."""
    import torchvision.datasets.celeba as tv_celeba
    import torchvision.datasets.cifar as tv_cifar
    import torchvision.datasets.mnist as tv_mnist
    import torchvision.datasets.svhn as tv_svhn

    def forbidden(*a, **k):
        raise AssertionError("an offline ingest tried to download")

    for mod, attr in [(tv_mnist, "download_and_extract_archive"), (tv_cifar, "download_and_extract_archive"),
                      (tv_svhn, "download_url"), (tv_celeba, "download_file_from_google_drive"),
                      (download, "download_file")]:
        monkeypatch.setattr(mod, attr, forbidden)
    dl = tmp_path / "dl"
    dataset, cfg = {
        "mnist_raw": ("mnist", {"source": "download", "path": str(dl)}),
        "cifar10": ("cifar10", {"source": "download", "path": str(dl), "train_images": 0, "test_images": 0}),
        "svhn": ("svhn", {"source": "download", "path": str(dl), "train_images": 0, "test_images": 0}),
        "lsun_raw": ("lsun_raw", {"source": "download", "path": str(dl), "category": "bedroom", "image_size": 64,
                                  "max_images": 0}),
        "faces_raw": ("faces_raw", {"source": "celeba", "path": str(dl), "max_images": 0, "link": "hardlink"}),
    }[name]
    with pytest.raises(download.DataError) as e:
        ingest.ingest(dataset, cfg, tmp_path / "out", seed=0, offline=True)
    msg = str(e.value)
    assert "is missing" in msg or "are missing" in msg
    assert "snakemake --until data_download" in msg and str(dl) in msg
    assert not (tmp_path / "out").exists()


def _fake_mnist(raw: Path, monkeypatch) -> dict[str, str]:
    """Four small files standing in for MNIST's IDX files, with fetch.MNIST_RAW_MD5 pointed at their md5s."""
    raw.mkdir(parents=True, exist_ok=True)
    md5 = {}
    for i, name in enumerate(fetch.MNIST_RAW_MD5):
        (raw / name).write_bytes(bytes([i]) * (100 + i))
        md5[name] = hashlib.md5((raw / name).read_bytes()).hexdigest()
    monkeypatch.setattr(fetch, "MNIST_RAW_MD5", md5)
    return md5


def test_download_verifies_every_file_and_records_what_it_fetched(tmp_path, monkeypatch):
    """Rule data_download's record: every file with its md5, and which ones this run fetched; a wrong file in the
    user's folder is named and kept, never replaced."""
    import torchvision.datasets.mnist as tv_mnist

    raw = tmp_path / "dl" / "MNIST" / "raw"
    md5 = _fake_mnist(raw, monkeypatch)
    gone = "t10k-labels-idx1-ubyte"
    payload = (raw / gone).read_bytes()
    (raw / gone).unlink()

    def fake_download(url, download_root, filename, md5=None):  # the mirror "serves" the missing file
        Path(download_root, filename.removesuffix(".gz")).write_bytes(payload)

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", fake_download)
    cfg = {"source": "download", "path": str(tmp_path / "dl")}
    rec = fetch.fetch_dataset("mnist", cfg, tmp_path / "rec.json", ledger=tmp_path / "ledger.json")
    assert io.read_json(tmp_path / "rec.json")["fetched_now"] == [str(raw / gone)] == rec["fetched_now"]
    assert {Path(f["path"]).name: f["md5"] for f in rec["files"]} == md5
    (raw / "train-images-idx3-ubyte").write_bytes(b"damaged")
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", no_download)
    with pytest.raises(download.ChecksumError, match="fails its md5 check"):
        fetch.fetch_dataset("mnist", cfg, tmp_path / "rec2.json", ledger=tmp_path / "ledger.json")
    assert (raw / "train-images-idx3-ubyte").read_bytes() == b"damaged" and not (tmp_path / "rec2.json").exists()


@pytest.mark.shared_data
def test_download_then_ingest_through_the_workflow(shared_data, tmp_path):
    """MNIST already in the user's folder (read-only): rule data_download verifies it without fetching, rule
    data_ingest reads it; the user's folder is unchanged."""
    src = shared_data / "mnist"
    before = sorted((p.relative_to(src), p.stat().st_mtime_ns) for p in src.rglob("*"))
    (tmp_path / "over.yaml").write_text(yaml.safe_dump({"data": {"mnist": {"source": "download", "path": str(src)}}}))
    res = smk("resources/data/mnist", "--cores", "1", "--directory", str(tmp_path), "--configfile",
              str(REPO / "presets" / "demo.yaml"), str(tmp_path / "over.yaml"), timeout=600)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    rec = io.read_json(tmp_path / "resources" / "data" / "checksums" / "download_mnist.json")
    assert rec["fetched_now"] == [] and len(rec["files"]) == 4
    assert io.read_json(tmp_path / "resources" / "data" / "mnist" / "meta.json")["splits"] == {"train": 60000,
                                                                                                 "test": 10000}
    assert sorted((p.relative_to(src), p.stat().st_mtime_ns) for p in src.rglob("*")) == before


def test_gdown_is_pinned_in_requirements_and_the_torch_env():
    """torchvision fetches CelebA from Google Drive through gdown: pinned alike in requirements.txt and the env of
    rule data_download (tests/test_envs.py checks every env against requirements.txt)."""
    req = dict(line.split("==") for line in (REPO / "requirements.txt").read_text().splitlines()
               if "==" in line and not line.startswith("#"))
    env = yaml.safe_load((REPO / "envs" / "torch.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert f"gdown=={req['gdown']}" in pip
    assert '"../../envs/torch.yaml"' in rule_blocks()["data_download"][1]
    assert importlib.metadata.version("gdown") == req["gdown"]


def test_the_manual_dataset_facts_are_torchvisions():
    """The files and md5s the notice and docs name are the ones torchvision checks."""
    from torchvision.datasets import CelebA
    from torchvision.datasets.imagenet import ARCHIVE_META

    assert supply.CELEBA_FILES == tuple((fname, md5) for _, md5, fname in CelebA.file_list)
    assert supply.CELEBA_FOLDER == CelebA.base_folder
    assert supply.IMAGENET_TRAIN_TAR == ARCHIVE_META["train"]
    docs = (REPO / "docs" / "PAPER_SCALE.md").read_text()
    for fname, md5 in supply.CELEBA_FILES + (supply.IMAGENET_TRAIN_TAR,):
        assert fname in docs and md5 in docs, fname


# --- what the user must supply: announced at parse time, the rest still builds --------------------------------


def test_missing_imagenet_is_announced_and_every_other_target_still_builds(tmp_path):
    """config.yaml as shipped (data.imagenet.path: null): `snakemake -n` warns on stderr with the key, the file and its
    md5 and the targets left out, and plans everything else; Table 3 alone builds; Table 1 alone stops at once,
    naming the key."""
    res = smk("-n", "--directory", str(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "config key 'data.imagenet.path' is null" in res.stderr
    assert "ILSVRC2012_img_train.tar  (md5 1d675b47d978889d74fa0da5fadfb00e" in res.stderr
    left = res.stderr.split("Left out of rule all")[1].split("Details:")[0]
    assert "results/tables/table1_cifar10.{csv,md,tex,html}" in left and "fig11_imagenet.{png,pdf}" in left
    assert "table3_mnist" not in left and "fig02" not in left
    assert "dataset: imagenet" not in out and job_counts(out)["train_gan"] == 5  # all but imagenet32
    res = smk("-n", "--directory", str(tmp_path), "results/tables/table3_mnist.md")
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert job_counts(res.stdout + res.stderr)["tables_table3_mnist"] == 1
    res = smk("-n", "--directory", str(tmp_path), "results/tables/table1_cifar10.md")
    assert res.returncode != 0 and "config key 'data.imagenet.path' is null" in res.stdout + res.stderr


def _dropped(stderr: str) -> set[str]:
    """The targets the notice lists as left out of rule all, braces expanded."""
    out = set()
    for chunk in stderr.split("Left out of rule all")[1:]:
        for line in chunk.split("\n")[1:]:
            if not line.startswith("    "):
                break
            m = re.fullmatch(r"(.*)\.\{(.*)\}", line.strip())
            out |= {f"{m.group(1)}.{e}" for e in m.group(2).split(",")} if m else {line.strip()}
    return out


def _ancestors(dot: str) -> dict[str, set[str]]:
    """`snakemake --dag` -> {target file of rule all: the data.<name> sections whose ingest it depends on}."""
    labels = {n: lab for n, lab in re.findall(r'^\s*(\d+)\[label = "([^"]*)"', dot, flags=re.M)}
    parents: dict[str, set[str]] = {n: set() for n in labels}
    for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M):
        parents[b].add(a)

    def up(n: str, seen: set[str]) -> set[str]:
        for p in parents[n] - seen:
            seen.add(p)
            up(p, seen)
        return seen

    key = {"lsun_raw": "lsun", "faces_raw": "faces"}
    out = {}
    for n, lab in labels.items():
        rule, *wild = lab.split("\\n")
        data = {key.get(w.split(": ")[1], w.split(": ")[1]) for p in up(n, set()) for r, *ws in
                [labels[p].split("\\n")] if r == "data_ingest" for w in ws}
        wc = dict(w.split(": ") for w in wild)
        if rule == "tables_views":
            out |= {f"results/tables/{wc['table']}.{e}": data for e in ("tex", "html")}
        elif rule == "tables_index":
            out["results/tables/README.md"] = data
        elif rule.startswith("tables_"):
            out |= {f"results/tables/{rule[len('tables_'):]}.{e}": data for e in ("csv", "md")}
        elif rule.startswith("figures_"):
            stem = wc.get("sheet", rule[len("figures_"):])
            out |= {f"results/figures/{stem}.{e}": data for e in ("png", "pdf")}
    return out


@pytest.mark.slow
@pytest.mark.parametrize("missing", ["imagenet", "faces", "lsun", "cifar10", "svhn"])
def test_a_missing_dataset_takes_out_of_rule_all_exactly_the_targets_built_from_it(tmp_path, missing):
    """Against the real DAG (everything supplied): the notice leaves out exactly the targets whose jobs read the
    missing dataset, and the rest of rule all plans without it."""
    imagenet = tmp_path / "imagenet" / "n01440764"
    imagenet.mkdir(parents=True)
    full = tmp_path / "full.yaml"
    full.write_text(yaml.safe_dump({"data": {"imagenet": {"source": "path", "path": str(imagenet.parent)}}}))
    dag = smk("--dag", "--directory", str(tmp_path), "--configfile", str(full))
    assert dag.returncode == 0, dag.stderr[-3000:]
    needs = _ancestors(dag.stdout)
    gone = {"imagenet": {"source": "path", "path": None}, "faces": {"source": "folder", "path": "/no/faces"},
            "lsun": {"source": "path", "path": "/no/lsun"}, "cifar10": {"source": "npz", "path": "/no/c.npz"},
            "svhn": {"source": "npz", "path": "/no/s.npz"}}[missing]
    cfg = tmp_path / "missing.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"imagenet": {"source": "path", "path": str(imagenet.parent)},
                                            missing: gone}}))
    res = smk("-n", "--directory", str(tmp_path), "--configfile", str(cfg))
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert f"data.{missing}.path" in res.stderr
    assert _dropped(res.stderr) == {t for t, data in needs.items() if missing in data}
    raw = {"lsun": "lsun_raw", "faces": "faces_raw"}.get(missing, missing)
    assert f"dataset: {raw}\n" not in res.stdout + res.stderr


def test_celeba_without_gdown_is_announced_with_every_file_and_md5(tmp_path):
    missing = supply.missing_supplies(yaml.safe_load((REPO / "config.yaml").read_text())
                                      | {"data": {**yaml.safe_load((REPO / "config.yaml").read_text())["data"],
                                                  "faces": {"source": "celeba", "path": str(tmp_path), "max_images": 0,
                                                            "link": "hardlink"},
                                                  "imagenet": {"source": "demo", "path": None, "image_size": 32,
                                                               "max_images": 0}}},
                                      can_fetch_celeba=False)
    assert [s.dataset for s in missing] == ["faces"]
    text = supply.notice(missing, {"faces": ["results/figures/fig10_faces.png", "results/figures/fig10_faces.pdf"]})
    for fname, md5 in supply.CELEBA_FILES:
        assert f"{tmp_path / 'celeba' / fname}  (md5 {md5})" in text
    assert "gdown==6.5.1" in text and "results/figures/fig10_faces.{png,pdf}" in text
    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    for fname, _ in supply.CELEBA_FILES[1:]:
        (tmp_path / "celeba" / fname).write_text("x")
    assert supply.celeba_present(tmp_path)  # placed by hand: nothing to announce
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["data"]["faces"]["path"] = str(tmp_path)
    assert [s.dataset for s in supply.missing_supplies(cfg, can_fetch_celeba=False)] == ["imagenet"]


# --- GPUs: every GPU user declares one, and never more run than exist ----------------------------------------

# Rules whose library code runs torch on config `device` (auto: a GPU where there is one).
GPU_RULES = {"train_gan", "dedup_train_autoencoder", "dedup_hash_shard", "features_extract", "features_kmeans",
             "svm_fit", "svm_supervised_cnn", "mnist_eval_select_epoch", "mnist_eval_generated", "mnist_eval_real",
             # figures load a generator on config `device`
             "figures_sample_sheet", "figures_fig04_interpolation", "figures_fig05_guided_backprop",
             "figures_fig06_window_dropout", "figures_fig07_vector_arithmetic", "figures_fig08_turn_vector",
             "figures_fig09_mnist_samples", "figures_authors_svhn_samples",
             # the ablation's training and scoring runs
             "ablation_train", "ablation_score"}
# Rules that receive the device setting but run on the CPU, with the reason.
CPU_RULES = {"dedup_check": "dedup_check.run trains its autoencoders with dedup.train_autoencoder's default CPU "
                            "device",
             "ablation_classifier": "a small MNIST classifier trained on the CPU (ablation.frechet.train_classifier)"}


def test_every_rule_that_can_use_the_gpu_declares_it():
    """A rule given config `device` in the torch env either declares resources gpu=1 (so --resources gpu=N and SLURM
    --gpus count it) or is listed as CPU-only with the reason."""
    for name, (_, block) in rule_blocks().items():
        gets_device = "common=common_params()" in block and '"../../envs/torch.yaml"' in block
        declares = re.search(r"\n    resources:(\n        .*)*\n        gpu=1\b", block) is not None
        if name in GPU_RULES:
            assert declares, f"rule {name} runs torch on the configured device but declares no gpu=1"
        elif declares:
            raise AssertionError(f"rule {name} declares gpu=1: add it to GPU_RULES")
        else:
            assert not gets_device or name in CPU_RULES, f"rule {name} is given `device` but declares no gpu=1"


def test_gpu_jobs_never_exceed_the_gpus_given(tmp_path):
    """The pinned Snakemake with --resources gpu=N runs at most N gpu=1 jobs at once, whatever --cores allows."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: expand("j{i}.txt", i=range(4))\n'
        'rule job:\n    output: "j{i}.txt"\n    resources: gpu=1\n'
        '    shell: "date +%s.%N > j{wildcards.i}.start; sleep 1.5; date +%s.%N > {output}"\n')
    for n in (1, 2):
        for f in tmp_path.glob("j*"):
            f.unlink()
        subprocess.run([*SNAKEMAKE, "--cores", "4", "--resources", f"gpu={n}", "-q"], cwd=tmp_path, check=True,
                       capture_output=True, timeout=120)
        spans = [(float((tmp_path / f"j{i}.start").read_text()), float((tmp_path / f"j{i}.txt").read_text()))
                 for i in range(4)]
        peak = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
        assert peak == n, f"gpu={n}: {peak} GPU jobs ran at once"


def test_readme_and_local_profile_limit_gpu_jobs():
    """Every paper-scale command in the README runs with a GPU limit (--resources gpu=N or the local profile, which
    sets one), and the local profile keeps going past a failed branch."""
    prof = yaml.safe_load((REPO / "profiles" / "local" / "config.yaml").read_text())
    assert prof["resources"]["gpu"] >= 1 and prof["keep-going"] is True
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Paper scale")[1].split("\n## ")[0]
    runs = [line for line in re.findall(r"```bash\n(.*?)```", section, flags=re.S)[0].splitlines()
            if "snakemake" in line and " -n" not in line and "--until" not in line and "slurm" not in line]
    assert runs and all("--resources gpu=" in r or "profiles/local" in r for r in runs), runs


# --- resource requests that fit paper scale --------------------------------------------------------------------


def test_requests_fit_common_partition_limits(tmp_path):
    """The paper-scale DAG: no job asks for more than 24 h; training asks for its memory-mapped array plus working
    memory (LSUN: 37 GB of images); the scatter shards run 16 to a SLURM job."""
    res = smk("-n", "--directory", str(tmp_path))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    runtimes = [int(m) for m in re.findall(r"runtime=(\d+)", out)]
    assert runtimes and max(runtimes) <= 24 * 60
    lsun = re.search(r"wildcards: run=lsun\n    resources: [^\n]*mem_mb=(\d+)", out)
    assert lsun and int(lsun.group(1)) >= sizing.expected_train_mb({"data": {"lsun": {"source": "download",
                                                                               "max_images": 0, "image_size": 64}},
                                                                     "faces": {}}, "lsun")
    prof = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert "attempt" not in str(prof.get("set-resources", {}))  # no time limit grows on retries
    assert set(prof["groups"]) == {"dedup_hash_shard=dedup_hash", "faces_detect_shard=faces_detect"}
    assert prof["set-resource-scopes"] == ["shard_slot=local"] and prof["resources"] == ["shard_slot=1"]
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    assert cfg["runs"]["mnist_dcgan"]["snapshot_every"] == 5 == cfg["runs"]["mnist_gan"]["snapshot_every"]


def test_memory_requests_follow_the_input_sizes(tmp_path):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    lsun_mb = sizing.expected_train_mb(cfg, "lsun_raw")
    assert lsun_mb == -(-3_033_042 * 64 * 64 * 3 // sizing.MB)  # 37.3 GB of uint8 images
    assert sizing.train_mem_mb(cfg, tmp_path / "lsun_raw") == sizing.request_mb(6000, lsun_mb)  # before ingest
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "train_x.npy").write_bytes(bytes(5 * sizing.MB))
    assert sizing.files_mb([d]) == 5 and sizing.train_mem_mb(cfg, d) == 7000  # measured once it exists: 6 GB + 5 MiB
    assert sizing.files_mb([tmp_path / "nothing"]) is None


# --- dcgan_repro.gpu: CUDA usable (or why not), one GPU per job ------------------------------------------------

GOOD = gpu.CudaFacts(torch_version="2.14.1+cu130", build_cuda="13.0", available=True, driver="580.82.07",
                     devices=(("NVIDIA H100 80GB HBM3", (9, 0)),),
                     arch_list=("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"), visible="0")


@pytest.mark.parametrize("change, words", [
    ({}, None),
    ({"build_cuda": None, "available": False, "devices": ()}, ["CPU-only build", "pip install"]),
    ({"driver": "535.104.05", "available": False, "devices": ()}, ["535.104.05", "580.65.06", "cu126"]),
    ({"driver": None, "available": False, "devices": ()}, ["no NVIDIA driver found", "580.65.06"]),
    ({"devices": (("Tesla V100-SXM2-16GB", (7, 0)),)}, ["Tesla V100", "sm_70", "no kernels", "cu126"]),
    ({"visible": ""}, ["CUDA_VISIBLE_DEVICES=''", "hides every GPU"]),
    ({"available": False, "devices": (), "init_error": "RuntimeError: CUDA unknown error"}, ["CUDA unknown error"]),
])
def test_cuda_problem_names_the_reason(change, words):
    facts = gpu.CudaFacts(**{**GOOD.__dict__, **change})
    problem = gpu.cuda_problem(facts)
    if words is None:
        assert problem is None
        gpu.require_cuda(facts)
    else:
        assert problem and all(w in problem for w in words), problem
        with pytest.raises(RuntimeError, match="was given a GPU but cannot use it"):
            gpu.require_cuda(facts)


def test_architecture_support_follows_cuda_compatibility():
    assert gpu.arch_supported((8, 6), ("sm_80",))          # same major, newer minor: runs sm_80 cubins
    assert not gpu.arch_supported((7, 0), ("sm_75", "sm_80"))
    assert not gpu.arch_supported((8, 0), ("sm_86",))      # a cubin never runs on an older minor
    assert gpu.arch_supported((12, 0), ("sm_90", "compute_90"))  # PTX is compiled for newer GPUs
    assert gpu.arch_supported((9, 0), ("sm_90a",))
    assert gpu.parse_proc_driver("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 2025") == \
        "580.65.06"


CLAIM = textwrap.dedent("""
    import os, sys, time
    from dcgan_repro import gpu
    claim = gpu.claim_gpu(sys.argv[1].split(","), sys.argv[2], poll_s=0.05)
    print(os.environ["CUDA_VISIBLE_DEVICES"], time.time(), flush=True)
    time.sleep(float(sys.argv[3]))
    print("done", time.time(), flush=True)
""")


def _claimant(gpus: str, lock_dir: Path, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CLAIM, gpus, str(lock_dir), str(hold_s)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_concurrent_jobs_get_distinct_gpus_and_wait_for_a_free_one(tmp_path):
    """Three jobs, two GPUs: the first two hold GPUs 0 and 1 (one each), the third waits and takes the first freed."""
    first = [_claimant("0,1", tmp_path, 2.0) for _ in range(2)]
    time.sleep(1.0)
    third = _claimant("0,1", tmp_path, 0.0)
    outs = [p.communicate(timeout=60)[0].split() for p in first]
    third_out = third.communicate(timeout=60)[0].split()
    assert sorted(o[0] for o in outs) == ["0", "1"]
    assert third_out[0] in ("0", "1") and float(third_out[1]) >= min(float(o[3]) for o in outs) - 0.01


def test_a_killed_job_frees_its_gpu(tmp_path):
    holder = _claimant("3", tmp_path, 60.0)
    assert holder.stdout.readline().split()[0] == "3"
    holder.kill()
    holder.wait(timeout=30)
    claim = gpu.claim_gpu(["3"], tmp_path, timeout_s=10, poll_s=0.05)  # the kernel released the lock
    try:
        assert claim.gpu == "3" and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    finally:
        claim.release()
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)


def test_pin_job_hides_gpus_from_cpu_jobs_and_keeps_a_schedulers_choice(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert gpu.pin_job(0) is None and os.environ["CUDA_VISIBLE_DEVICES"] == ""
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5")
    assert gpu.pin_job(1, tmp_path).gpu == "5" and not list(tmp_path.iterdir())  # SLURM bound it: no lock taken
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,7")
    claim = gpu.pin_job(1, tmp_path)
    try:
        assert claim.gpu == "2" and os.environ["CUDA_VISIBLE_DEVICES"] == "2"
    finally:
        claim.release()
    with pytest.raises(ValueError, match="gpu=2"):
        gpu.pin_job(2, tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="no GPU to claim"):
        gpu.claim_gpu(lock_dir=tmp_path, timeout_s=1)


# --- every workflow job: its GPU chosen and checked before torch starts CUDA (runtime.place_job) -----------------

JOB_SCRIPT = """
import json, os, sys
sys.path.insert(0, {repo!r})
from dcgan_repro import runtime
runtime.rule_context(snakemake)
import torch
with open(snakemake.output[0], "w") as f:
    json.dump({{"visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "cuda": torch.cuda.is_available()}}, f)
"""


def _job_workflow(tmp_path: Path, device: str) -> Path:
    """A one-rule workflow whose job starts as every rule script does (runtime.rule_context)."""
    (tmp_path / "job.py").write_text(JOB_SCRIPT.format(repo=str(REPO)))
    (tmp_path / "Snakefile").write_text(textwrap.dedent(f"""\
        configfile: "{REPO / 'config.yaml'}"
        config["device"] = "{device}"
        rule gpu_job:
            output: "gpu.json"
            log: "gpu.log"
            resources: gpu=1
            script: "job.py"
        rule cpu_job:
            output: "cpu.json"
            log: "cpu.log"
            script: "job.py"
        """))
    return tmp_path


def test_a_gpu_job_without_usable_cuda_fails_with_the_reason(tmp_path):
    """A job given a GPU (resources gpu=1; the scheduler's CUDA_VISIBLE_DEVICES names one) on a machine where torch
    cannot use CUDA stops at its start, naming why, instead of training on the CPU; a job without gpu sees none."""
    wd = _job_workflow(tmp_path, "auto")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0", "SLURM_JOB_ID": "7"}
    if gpu.cuda_problem(gpu.cuda_facts()) is None:
        pytest.skip("this machine has a usable GPU")
    out = subprocess.run([*SNAKEMAKE, "gpu.json", "--cores", "1"], cwd=wd, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode != 0 and not (wd / "gpu.json").exists()
    log = (wd / "gpu.log").read_text()
    assert "was given a GPU but cannot use it" in log + out.stderr, log[-2000:]
    out = subprocess.run([*SNAKEMAKE, "cpu.json", "--cores", "1"], cwd=wd, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((wd / "cpu.json").read_text()) == {"visible": "", "cuda": False}


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_runs_keep_working_where_there_is_no_gpu(tmp_path, device):
    """device cpu never touches CUDA_VISIBLE_DEVICES; device auto on a machine with no GPU at all (none listed)
    runs a gpu=1 job on the CPU with a warning."""
    wd = _job_workflow(tmp_path, device)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    if gpu.visible_gpus():
        pytest.skip("this machine lists a GPU")
    out = subprocess.run([*SNAKEMAKE, "gpu.json", "--cores", "1"], cwd=wd, capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((wd / "gpu.json").read_text())["visible"] is None
    assert ("this machine has no GPU" in (wd / "gpu.log").read_text()) == (device == "auto")
