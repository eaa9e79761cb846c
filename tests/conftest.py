"""Shared test fixtures (../shared/data is optional: tests that need it skip with a reason) and float32 tolerances."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
