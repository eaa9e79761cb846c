"""Shared test fixtures (../shared/data is optional: tests that need it skip with a reason) and float32 tolerances."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
import urllib.error
from pathlib import Path
from types import SimpleNamespace

import numpy as np
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


# --- float32 rounding tolerances ---------------------------------------------------------------------

F32_UNIT_ROUNDOFF = 2.0 ** -24  # u of IEEE float32 (round to nearest)
F64_UNIT_ROUNDOFF = 2.0 ** -53


def gamma_f32(k: int) -> float:
    """Higham's gamma_k = k u / (1 - k u) for float32 (u = 2**-24): the relative bound on k roundings."""
    ku = k * F32_UNIT_ROUNDOFF
    assert ku < 1, f"gamma_k undefined for k = {k}"
    return ku / (1 - ku)


def f32_tol(scale, k: int, evaluations: int = 2):
    """Elementwise tolerance for float32 dot products (or matrix products) of inner length k.

    Forward error bound (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., Thm 3.5 / Sec. 3.5):
    |fl(x.y) - x.y| <= gamma_k sum_i |x_i y_i|, for any summation order, blocking, FMA use or thread split -- so it
    holds on every BLAS and CPU that computes in IEEE float32 (not TF32 / bf16). ``scale`` is the exact
    sum_i |x_i y_i| per element (for A @ B: ``abs(A) @ abs(B)``, computed in float64). A product of products,
    fl(fl(A B) C), has error <= gamma_{k1+k2} |A||B||C| (Higham Sec. 3.5, Lemma 3.3): pass k = k1 + k2 (+1 for a
    rounding to float32 in between) and scale = |A||B||C|. Two float32 evaluations compared with each other get the
    sum of both bounds (``evaluations=2``); one compared with an exact (float64) reference gets one (``evaluations=1``).
    """
    return evaluations * gamma_f32(k) * scale


def assert_close_f32(actual, expected, *, k: int, scale, evaluations: int = 2, msg: str = "") -> None:
    """Assert |actual - expected| <= f32_tol(scale, k, evaluations) elementwise (numpy arrays or torch tensors).

    Each evaluation may also end with a float64 step (float32 products added up or shifted in float64): one more
    rounding of the result, 2**-53 |result| per evaluation, is allowed on top; it is ~1e-9 of the float32 term
    whenever |result| <= scale, so it never loosens a float32 comparison noticeably.
    """
    a, e, s = (np.asarray(t.detach().cpu() if hasattr(t, "detach") else t, dtype=np.float64)
               for t in (actual, expected, scale))
    assert a.shape == e.shape, f"{msg}: shapes {a.shape} != {e.shape}"
    tol = f32_tol(np.broadcast_to(s, e.shape), k, evaluations) + evaluations * F64_UNIT_ROUNDOFF * np.maximum(
        np.abs(a), np.abs(e))
    err = np.abs(a - e)
    bad = ~(err <= tol)  # NaN fails too
    assert not bad.any(), (f"{msg}: {int(bad.sum())}/{bad.size} elements exceed the float32 bound "
                           f"({evaluations} x gamma_{k} = {evaluations * gamma_f32(k):.3g} x |x||y|); worst "
                           f"|diff| {err.flat[np.argmax(err - tol)]:.3g} vs tol {tol.flat[np.argmax(err - tol)]:.3g}")


# --- L2-SVM test data and settings, shared by tests/test_svm_*.py -------------------------------------

SVM_CFG = {"c_grid": [1e-3, 1e-2, 1e-1], "selection_draws": 3, "final_draws": 4, "validation_size": 60,
           "svhn_labels_per_class": 8, "cifar10_labels_per_class": 8, "max_iter": 1000, "seed": 42}  # config ``svm``
SVM_COMMON = {"preset": "test", "device": "cpu", "precision": "fp32"}  # config ``common`` (device, precision)


def blobs(n: int, k: int, f: int, seed: int, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian classes in f dims (means fixed by a separate seed, so train and test share them)."""
    means = np.random.default_rng(123).normal(0, 1, (k, f))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    rng.shuffle(y)
    return (means[y] + spread * rng.normal(0, 1, (n, f))).astype(np.float32), y.astype(np.int64)


def pooled_features(n: int, f: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled-conv-like features: rectified low-rank class structure plus noise, per-feature scales 0.1 ... 3
    (the generating model is fixed, ``seed`` draws the samples)."""
    g = np.random.default_rng(1234)
    means, A = g.normal(0, 1, (k, 16)), g.normal(0, 1, (16, f))
    scale = np.exp(g.uniform(np.log(0.1), np.log(3), f))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    lat = means[y] + 1.2 * rng.normal(0, 1, (n, 16))  # (n, 16)
    return (np.maximum(lat @ A / 4 + rng.normal(0, 1, (n, f)), 0) * scale).astype(np.float32), y


# --- helpers shared by several test files ----------------------------------------------------------------------


def fake_snakemake(rule: str, tmp: Path, *, input: dict, output: dict, params: dict) -> SimpleNamespace:
    """What Snakemake's script: directive injects, enough for runtime.rule_context and our rule scripts."""
    from snakemake.iocontainers import Namedlist

    return SimpleNamespace(rule=rule, input=Namedlist(fromdict=input), output=Namedlist(fromdict=output),
                           params=Namedlist(fromdict=params), log=Namedlist([str(tmp / f"logs/{rule}.log")]),
                           threads=1, wildcards=Namedlist())


def run_script(name: str, smk: SimpleNamespace) -> None:
    """Run workflow/scripts/<name>.py as Snakemake would, with ``smk`` as its ``snakemake`` object."""
    runpy.run_path(str(REPO / "workflow" / "scripts" / f"{name}.py"), init_globals={"snakemake": smk})


def no_download(*args, **kwargs):
    """Stands in for any download function: the network is unreachable."""
    raise urllib.error.URLError("offline (test)")


def write_json_file(path: Path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` (parents created); return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path
