"""The reproduction record under record/: only presets/record.yaml writes there and it writes nowhere else; it plans
no download of data the record's machine lacks; every committed table is what its rule builds from the committed
result files; every committed result names the record preset, a commit of the history and its inputs' checksums;
the README's headline block is generated from the record. Each check skips what the record does not hold yet."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan_repro import record

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "record"
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def smk(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SNAKEMAKE, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def committed_results() -> list[Path]:
    try:
        return record.committed_results(RECORD)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git work tree: which result files are committed is unknown")


@pytest.fixture
def paths_file(tmp_path) -> Path:
    """A paths file (presets/paths.example.yaml's keys) pointing at empty stand-ins: enough for a dry run."""
    data = tmp_path / "data"
    for d in ("mnist", "faces", "imagenet32", "svhn"):
        (data / d).mkdir(parents=True)
    for f in ("cifar10.npz", "photos.npz", "composites.npz"):
        (data / f).write_bytes(b"")
    paths = tmp_path / "paths.yaml"
    paths.write_text(
        f"data:\n  mnist: {{path: {data / 'mnist'}}}\n  cifar10: {{source: npz, path: {data / 'cifar10.npz'}}}\n"
        f"  faces: {{path: {data / 'faces'}}}\n"
        f"weights: {{imagenet32: {data / 'imagenet32'}, svhn: {data / 'svhn'}, allow_partial: [imagenet32]}}\n"
        f"checks:\n  dedup: {{photos: {data / 'photos.npz'}}}\n  faces: {{composites: {data / 'composites.npz'}}}\n"
    )
    return paths


# --- protection -----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not RECORD.is_dir(), reason="no record/ folder in this checkout")
def test_another_preset_refuses_to_write_into_the_record():
    res = smk("-n", "--directory", "record", "--configfile", "presets/demo.yaml")
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "holds the committed reproduction record, written only by presets/record.yaml" in out
    assert "preset 'demo' must not write there" in out


def test_the_record_preset_refuses_any_other_folder(tmp_path, paths_file):
    res = smk("-n", "--directory", str(tmp_path), "--configfile", "presets/record.yaml", str(paths_file))
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert "preset 'record' writes the committed reproduction record and runs only in" in out
    assert "--directory record --configfile presets/record.yaml my_paths.yaml" in out
    assert not any(tmp_path.glob("results")), "nothing may be written before the refusal"


@pytest.mark.skipif(not RECORD.is_dir(), reason="no record/ folder in this checkout")
def test_the_record_plans_no_download_of_data_it_lacks(paths_file):
    """`snakemake -n` of the record (rule all under the record preset) with a paths file: no LSUN, ImageNet, SVHN or
    CelebA job at all; the data it reads comes from the user's paths."""
    # --nolock: a dry run may look while the record is being built
    res = smk("-n", "--nolock", "--directory", "record", "--configfile", "presets/record.yaml", str(paths_file))
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    jobs = re.findall(r"^rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$", out, flags=re.M)
    wild = {(rule, w) for rule, w in jobs}
    downloads = {w.split("=")[1] for rule, w in wild if rule == "data_download"}
    assert downloads <= {"mnist"}, f"the record would download {sorted(downloads)}"
    ingests = {w.split("=")[1] for rule, w in wild if rule == "data_ingest"}
    assert ingests <= {"mnist", "cifar10", "faces_raw"}, ingests
    trained = {w.split("=")[1] for rule, w in wild if rule == "train_gan"}
    assert trained <= {"mnist_dcgan", "mnist_gan", "faces"}, trained
    assert "the record leaves out" in out and "imagenet, lsun, svhn" in out
    for lacking in ("lsun", "imagenet", "svhn", "celeba"):
        assert f"resources/download/{lacking}" not in out


# --- consistency --------------------------------------------------------------------------------------------------

def test_every_committed_table_is_rebuilt_identically_from_the_committed_results(tmp_path):
    names = record.table_names(RECORD)
    if not names:
        pytest.skip("the record holds no tables yet")
    committed = set(committed_results())
    for name in names:
        for src in record.table_sources(RECORD, name):
            assert RECORD / src in committed, f"table {name} is built from {src}, which is not committed"
    assert record.table_differences(RECORD, tmp_path) == []


def test_a_hand_edited_number_is_caught(tmp_path):
    """The rebuild is a real check: change one number in a copy of a committed table and it differs."""
    names = record.table_names(RECORD)
    if not names:
        pytest.skip("the record holds no tables yet")
    name = names[0]
    copy = tmp_path / "record"
    for src in record.table_sources(RECORD, name):
        (copy / src).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(RECORD / src, copy / src)
    tables = copy / record.TABLES_DIR
    tables.mkdir(parents=True, exist_ok=True)
    for f in (RECORD / record.TABLES_DIR).glob(f"{name}.*"):
        shutil.copy(f, tables / f.name)
    assert record.table_differences(copy, tmp_path / "ok") == []
    csv = tables / f"{name}.csv"
    lines = csv.read_text().splitlines(keepends=True)
    row = next(i for i, line in enumerate(lines) if ",measured," in line)
    fields = lines[row].split(",")
    ours = record.tables.COLUMNS.index("ours")
    fields[ours] = str(float(fields[ours]) + 1)
    lines[row] = ",".join(fields)
    csv.write_text("".join(lines))
    assert str(csv) in record.table_differences(copy, tmp_path / "edited")


def test_a_table_without_its_result_files_fails(tmp_path):
    names = record.table_names(RECORD)
    if not names:
        pytest.skip("the record holds no tables yet")
    tables = tmp_path / record.TABLES_DIR
    tables.mkdir(parents=True)
    shutil.copy(RECORD / record.TABLES_DIR / f"{names[0]}.csv", tables)
    with pytest.raises(record.RecordError, match="which is not in the record"):
        record.table_differences(tmp_path, tmp_path / "out")


def test_every_committed_result_names_the_record_preset_a_commit_and_its_data():
    results = committed_results()
    if not results:
        pytest.skip("the record holds no result files yet")
    problems = [p for path in results for p in record.provenance_problems(path, record.in_git_history)]
    assert problems == []


def test_provenance_problems_are_named(tmp_path):
    bad = tmp_path / "r.json"
    record.io.write_json(bad, {"provenance": {"config": {"preset": "demo"}, "code_version": "unknown", "inputs": {}}})
    problems = record.provenance_problems(bad, lambda sha: True)
    assert any("preset 'demo', not 'record'" in p for p in problems)
    assert any("code version 'unknown'" in p for p in problems)
    assert any("no input checksums" in p for p in problems)
    good = tmp_path / "g.json"
    record.io.write_json(good, {"provenance": {"overrides": {"preset": "record"}, "code_version": "01394ac610dd+dirty",
                                               "inputs": {"data": {"x.npy": "sha256:" + "0" * 64}}}})
    assert record.provenance_problems(good, lambda sha: sha == "01394ac610dd") == []


# --- the README headline ------------------------------------------------------------------------------------------

def test_the_readme_headline_is_generated_from_the_record():
    readme = (REPO / "README.md").read_text()
    assert record.readme_block(readme) == record.headline(RECORD), (
        "README.md's headline block is stale: python -m dcgan_repro.record readme")
    assert len(readme.splitlines()) <= 200


def test_the_readme_rewrite_touches_only_its_block(tmp_path):
    text = f"# title\n\nbefore\n{record.BEGIN}\nstale text\n{record.END}\nafter\n"
    new = record.with_headline(text, tmp_path)
    assert new.startswith("# title\n\nbefore\n") and new.endswith("\nafter\n")
    assert "The record holds no tables yet." in new and "stale text" not in new
