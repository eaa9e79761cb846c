"""The Snakefile itself: the paper-scale DAG is complete, rules are well-formed, lint is clean, the README's
commands and CI agree, and a tiny config runs the real workflow end to end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]

# Every stage the paper needs: rule -> number of jobs at paper scale (None = at least one).
PAPER_STAGES = {
    "data_download": 5,  # mnist, cifar10, svhn, lsun, faces (CelebA); ImageNet is the user's
    "data_ingest": 6,  # mnist, cifar10, svhn, lsun_raw, imagenet, faces_raw
    "dedup_train_autoencoder": 1, "dedup_hash_shard": None, "dedup_gather": 1,
    "faces_detect_shard": None, "faces_gather": 1,
    "train_gan": 6,  # lsun, faces, imagenet32, svhn, mnist_dcgan, mnist_gan
    "features_extract": 6,  # train and test of cifar10 (the trained ImageNet D, raw pixels) and svhn (the SVHN D)
    "features_kmeans": 1,
    "svm_fit": 7,  # CIFAR-10 all labels and 400 per class on D, K-means and pixel features; SVHN 1000 labels
    "svm_supervised_cnn": 1,
    "mnist_eval_select_epoch": 2, "mnist_eval_generated": 4, "mnist_eval_real": 1,
    "figures_sample_sheet": 4, "figures_fig04_interpolation": 1, "figures_fig05_guided_backprop": 1,
    "figures_fig06_window_dropout": 1, "figures_fig07_vector_arithmetic": 1, "figures_fig08_turn_vector": 1,
    "figures_fig09_mnist_samples": 1,
    "tables_table1_cifar10": 1, "tables_table2_svhn": 1, "tables_table3_mnist": 1, "tables_index": 1,
    "tables_views": 3,
}
GPU_RULES = {"train_gan", "dedup_train_autoencoder", "features_extract", "svm_supervised_cnn",
             "mnist_eval_generated"}
HEAVY_RULES = GPU_RULES | {"data_ingest", "dedup_hash_shard", "dedup_gather", "faces_detect_shard", "svm_fit"}


def smk(*args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def rule_blocks() -> dict[str, str]:
    blocks = {}
    for f in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", f.read_text(), flags=re.M)[1:]:
            blocks[block.split(":")[0].strip()] = block
    return blocks


def imagenet_supplied(tmp_path: Path) -> list[str]:
    """--configfile arguments that point data.imagenet.path at a (tiny) ImageNet train folder: the paper DAG with
    every dataset supplied (config.yaml leaves it null, which drops its targets from rule all)."""
    (tmp_path / "imagenet" / "n01440764").mkdir(parents=True)
    (tmp_path / "imagenet.yaml").write_text(f"data: {{imagenet: {{path: {tmp_path / 'imagenet'}}}}}\n")
    return ["--configfile", str(tmp_path / "imagenet.yaml")]


def test_paper_dag_lists_every_stage(tmp_path):
    res = smk("-n", "--quiet", "rules", "--directory", str(tmp_path), *imagenet_supplied(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout + res.stderr, flags=re.M))
    for rule, n in PAPER_STAGES.items():
        assert rule in counts, f"paper-scale dry run does not schedule {rule}"
        if n is not None:
            assert int(counts[rule]) == n, f"{rule}: {counts[rule]} jobs, expected {n}"
    assert int(counts["dedup_hash_shard"]) > 1 and int(counts["faces_detect_shard"]) > 1  # scatter


def test_paper_dag_fits_each_svm_protocol_on_its_features(tmp_path):
    """The svm_fit jobs the registry (dcgan_repro.svm.registry, via common.smk) gives the paper DAG: each protocol's
    features and labelled dataset, and the D that features_extract applies to each dataset (Sec. 5.1, 5.2)."""
    res = smk("-n", "--directory", str(tmp_path), "all", *imagenet_supplied(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = re.findall(r"^rule (\w+):\n    input: (.*)\n    output: (.*)$", res.stdout + res.stderr, flags=re.M)
    fits = {out: inp for rule, inp, out in jobs if rule == "svm_fit"}
    feats, data = "results/features", "resources/data"
    about = lambda f: "" if f.endswith("kmeans") else f", {feats}/{f}/train.json"  # noqa: E731
    assert fits == {
        f"results/svm/svm_{f}_{budget}.json": f"{feats}/{f}/train.npy, {feats}/{f}/test.npy, {data}/{d}{about(f)}"
        for f, d, budget in [("svhn_trained", "svhn", "1000"), ("cifar10_trained", "cifar10", "400pc"),
                             ("cifar10_trained", "cifar10", "all"), ("cifar10_kmeans", "cifar10", "400pc"),
                             ("cifar10_kmeans", "cifar10", "all"), ("cifar10_pixels", "cifar10", "400pc"),
                             ("cifar10_pixels", "cifar10", "all")]
    }
    extracted = {out: inp for rule, inp, out in jobs if rule == "features_extract"}
    assert extracted == {
        f"{feats}/{d}_{kind}/{split}.npy, {feats}/{d}_{kind}/{split}.json":
            f"{data}/{d}" + (f", results/models/{run}/model.pt" if kind == "trained" else "")
        for d, run, kind in [("svhn", "svhn", "trained"), ("cifar10", "imagenet32", "trained"),
                             ("cifar10", None, "pixels")] for split in ("train", "test")}


def test_rules_have_log_benchmark_resources_and_env():
    blocks = rule_blocks()
    assert set(PAPER_STAGES) <= set(blocks)
    for name, block in blocks.items():
        assert "\n    log:" in block, f"rule {name} has no log:"
        if name in HEAVY_RULES:
            assert "\n    benchmark:" in block, f"heavy rule {name} has no benchmark:"
        if name in GPU_RULES:
            assert re.search(r"\n    resources:(\n        .*)*\n        gpu=1", block), f"GPU rule {name}"
        assert "\n    conda:" in block, f"rule {name} has no conda: env"


# Rules whose name or script breaks the naming scheme below, each with the reason (none today).
NAMING_EXCEPTIONS: dict[str, str] = {}


def test_rule_names_start_with_their_stage_and_scripts_are_named_after_their_rule():
    """One name per stage at every level: rule `<stage>_<what>` in workflow/rules/<stage>.smk, run by
    workflow/scripts/<rule>.py; every script belongs to the rule of its name."""
    scripts = {p.stem for p in (REPO / "workflow" / "scripts").glob("*.py")}
    used = set()
    for f in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        stage = f.stem
        for block in re.split(r"^rule ", f.read_text(), flags=re.M)[1:]:
            name = block.split(":")[0].strip()
            if name in NAMING_EXCEPTIONS:
                continue
            assert name.startswith(f"{stage}_"), f"rule {name} in {f.name} does not start with '{stage}_'"
            script = re.search(r"\n    script:\n        \"\.\./scripts/([\w.]+)\.py\"", block)
            assert script, f"rule {name} has no script: workflow/scripts/{name}.py"
            assert script.group(1) == name, f"rule {name} runs scripts/{script.group(1)}.py, not scripts/{name}.py"
            assert name in scripts, f"rule {name}: workflow/scripts/{name}.py does not exist"
            used.add(name)
    assert not scripts - used - set(NAMING_EXCEPTIONS), f"scripts of no rule: {sorted(scripts - used)}"


def test_lint_is_clean():
    res = smk("--lint")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    lints = re.findall(r"^\s+\* (.+)$", out, flags=re.M)
    assert not lints, f"snakemake --lint: {sorted(set(lints))}"


def test_rules_are_snakefmt_formatted():
    """CI checks formatting of the Snakefile and every workflow/rules/*.smk (fix with: snakefmt Snakefile workflow)."""
    files = ["Snakefile", *sorted(str(p.relative_to(REPO)) for p in (REPO / "workflow" / "rules").glob("*.smk"))]
    res = subprocess.run([sys.executable, "-m", "snakefmt", "--check", *files], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, f"snakefmt would reformat (run `snakefmt Snakefile workflow`):\n{res.stderr[-3000:]}"


def test_bad_config_fails_at_once_naming_the_key(tmp_path):
    res = smk("-n", "--directory", str(tmp_path), "--config", "precision=fp16")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "config key 'precision'" in out and "allowed values: fp32, bf16, auto" in out


def test_forced_rerun_never_touches_a_user_folder_inside_data_root(tmp_path):
    """A face folder inside data.root is where the workflow's 'faces' dataset goes: `snakemake -F` would delete it
    (Snakemake removes a directory() output before the job). The run is refused before any job, files untouched."""
    faces = tmp_path / "R" / "faces"
    faces.mkdir(parents=True)
    photo = faces / "holiday.jpg"
    photo.write_bytes(b"\xff\xd8\xff a user's only copy")
    (tmp_path / "over.yaml").write_text("data:\n  root: R\n  faces: {source: folder, path: R/faces}\n")
    res = smk("R/faces", "-F", "--cores", "1", "--directory", str(tmp_path), "--configfile",
              str(REPO / "presets" / "demo.yaml"), str(tmp_path / "over.yaml"), timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "config key 'data.faces.path'" in out and "config key 'data.root' (R)" in out
    assert sorted(p.name for p in faces.iterdir()) == ["holiday.jpg"]
    assert photo.read_bytes() == b"\xff\xd8\xff a user's only copy"


def test_damaged_dataset_is_named_by_the_dry_run(tmp_path):
    """A truncated ingested array fails `snakemake -n` naming the file and the fix, before any job can start (and
    before Snakemake deletes the outputs of the jobs that would read it)."""
    import numpy as np

    from dcgan_repro import io

    d = tmp_path / "resources" / "data" / "mnist"
    io.write_dataset(d, "train", np.zeros((30, 28, 28, 1), np.uint8), np.zeros(30, np.int64))
    io.write_json(d / "meta.json", {"splits": {"train": 30}, "image_shape": [28, 28, 1], "provenance": {}})
    with open(d / "train_y.npy", "r+b") as f:
        f.truncate(200)
    res = smk("-n", "--directory", str(tmp_path), "--configfile", str(REPO / "presets" / "demo.yaml"))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert ("ingested dataset resources/data/mnist is damaged: resources/data/mnist/train_y.npy is 200 bytes, but "
            "its header (30 int64) needs 368") in out
    assert "Delete the folder resources/data/mnist and run the workflow again" in out


def test_readme_commands_and_ci_agree():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", readme, flags=re.S)
    first = [line for line in blocks[0].splitlines() if line.strip() and not line.startswith("#")]
    assert len(first) == 2, "the README starts with exactly two commands (demo, tests)"
    demo, tests = first
    assert "presets/demo.yaml" in demo and "snakemake" in demo
    assert "pytest" in tests
    ci = (REPO / ".ci" / "run").read_text()
    assert tests.replace(" -q", "") in ci.replace(" -q", ""), ".ci/run must run the README's test command"


@pytest.mark.slow
def test_tiny_config_runs_the_real_snakefile_end_to_end(tiny_run):
    """The real Snakefile on the demo preset shrunk further (tests/tiny.yaml), offline, in a scratch folder
    (the run is the session fixture tiny_run in conftest.py; test_report.py builds the HTML report on it)."""
    tmp_path, res = tiny_run
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    tables = tmp_path / "results" / "tables"
    figures = tmp_path / "results" / "figures"
    for t in ("table1_cifar10", "table2_svhn", "table3_mnist"):
        for ext in ("csv", "md", "tex", "html"):
            assert (tables / f"{t}.{ext}").stat().st_size > 0
        assert "demo" in (tables / f"{t}.md").read_text().lower()
    for n in range(2, 12):
        pngs = list(figures.glob(f"fig{n:02d}_*.png"))
        assert pngs, f"figure {n} missing"
        assert all(p.with_suffix(".pdf").exists() for p in pngs)
    # every result JSON records what produced it
    for f in (tmp_path / "results").rglob("*.json"):
        rec = json.loads(f.read_text())
        if isinstance(rec, dict) and f.parent.name in {"svm", "mnist_eval"}:
            prov = rec["provenance"]
            assert {"code_version", "seed", "config", "inputs", "wall_time_s"} <= set(prov), f
            # ... and the settings in force that differ from config.yaml: the demo preset and tests/tiny.yaml
            assert prov["overrides"]["preset"] == "demo" and prov["overrides"]["device"] == "cpu", f
            assert prov["overrides"]["runs.mnist_dcgan.epochs"] == 1, f
    train_prov = json.loads((tmp_path / "results" / "models" / "mnist_gan" / "train_summary.json").read_text())
    over = train_prov["provenance"]["overrides"]
    assert over["runs.mnist_gan.decay_fraction"] == 0.25 and over["runs.lsun.ngf"] == 8  # run_defaults reached lsun
    assert over["runs.lsun.epochs"] == 2 and "runs.lsun.snapshot_epochs" not in over  # derived keys left out
    assert not any(k.startswith("run_defaults.") for k in over)


@pytest.mark.slow
def test_the_authors_svhn_d_gives_a_table2_row_through_the_workflow(shared_data, tmp_path):
    """The demo's Table 2 with features.discriminator.svhn: both and weights.svhn at the authors' released SVHN model
    (the copy in ../shared): their D is verified, its 7,168-d features go through the same L2-SVM, and the table holds
    the measured row "the authors' released D" beside the one of the D trained here."""
    extra = tmp_path / "released.yaml"
    extra.write_text(yaml.safe_dump({"features": {"discriminator": {"svhn": "both"}},
                                     "weights": {"svhn": str(shared_data / "weights" / "dcgan_code_svhn")}}))
    res = smk("--cores", "2", "--directory", str(tmp_path), "results/tables/table2_svhn.csv", "--configfile",
              str(REPO / "presets" / "demo.yaml"), str(REPO / "tests" / "tiny.yaml"), str(extra), timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    df = pd.read_csv(tmp_path / "results" / "tables" / "table2_svhn.csv").set_index("model")
    released = df.loc["DCGAN, the authors' released D + our L2-SVM"]
    assert released["kind"] == "measured" and released["paper"] == 22.48 and "epoch 200" in released["note"]
    assert df.loc["DCGAN (ours) + L2-SVM", "kind"] == "measured"
    result = json.loads((tmp_path / "results" / "svm" / "svm_svhn_released_1000.json").read_text())
    assert result["feature_dim"] == 7168 and result["feature_source"]["release"]["complete"]


def test_the_pinned_snakemake_never_runs_more_cores_than_given(tmp_path):
    """Two 1-thread jobs that become ready together under --cores 1 run one after the other. Snakemake 9.14.8
    ran them at once (a single ready job's cores were never deducted, then freed anyway), which oversubscribed
    the CPU presets' training jobs; 9.27.1 does not."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "a.txt", "b.txt"\n'
        'rule first:\n    output: "x.txt"\n    shell: "touch {output}"\n'
        + "".join(f'rule {r}:\n    input: "x.txt"\n    output: "{r}.txt"\n    threads: 1\n'
                  f'    shell: "date +%s.%N > {r}.start; sleep 2; date +%s.%N > {{output}}"\n' for r in "ab"))
    subprocess.run([*SNAKEMAKE, "--cores", "1", "-q"], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    spans = sorted((float((tmp_path / f"{r}.start").read_text()), float((tmp_path / f"{r}.txt").read_text()))
                   for r in "ab")
    assert spans[1][0] >= spans[0][1], f"jobs overlapped under --cores 1: {spans}"
