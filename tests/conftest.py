"""Shared test fixtures. ../shared/data is optional: tests that need it skip with a reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real MNIST, CIFAR-10 subset, faces, scenes, weights) or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (real-data checks run only where ../shared/data exists)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The real Snakefile run once on presets/demo.yaml + tests/tiny.yaml (offline), shared by the end-to-end
    tests (test_workflow, test_report): (its --directory, the finished snakemake process)."""
    wd = tmp_path_factory.mktemp("tiny_run")
    res = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "2", "--directory", str(wd), "--configfile",
                          str(REPO / "presets" / "demo.yaml"), str(REPO / "tests" / "tiny.yaml")],
                         cwd=REPO, capture_output=True, text=True, timeout=1500)
    return wd, res
