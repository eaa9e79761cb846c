"""L2-SVM protocols (Tables 1, 2) and the supervised CNN baseline: solver, draws, test-set hygiene, errors."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.svm import LinearSVC

from conftest import assert_close_f32, gamma_f32
from dcgan_repro import io, svm

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

CFG = {"c_grid": [1e-3, 1e-2, 1e-1], "selection_draws": 3, "final_draws": 4, "validation_size": 60,
       "svhn_labels_per_class": 8, "cifar10_labels_per_class": 8, "max_iter": 1000, "seed": 42}
COMMON = {"preset": "test", "device": "cpu", "precision": "fp32"}


def _blobs(n: int, k: int, f: int, seed: int, spread: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """k Gaussian classes in f dims (means fixed by a separate seed, so train and test share them)."""
    means = np.random.default_rng(123).normal(0, 1, (k, f))
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    rng.shuffle(y)
    return (means[y] + spread * rng.normal(0, 1, (n, f))).astype(np.float32), y.astype(np.int64)


def _dataset(tmp_path: Path, name: str, ytr: np.ndarray, yte: np.ndarray, xtr: np.ndarray, xte: np.ndarray,
             stand_in: str | None = "toy blobs standing in") -> tuple[Path, Path, Path]:
    """A dataset folder in the common format plus train/test feature files."""
    d = tmp_path / "data" / name
    for split, y in (("train", ytr), ("test", yte)):
        io.write_dataset(d, split, np.zeros((len(y), 2, 2, 3), np.uint8), y)
    k = int(max(ytr.max(), yte.max())) + 1
    io.write_json(d / "meta.json", {"name": name, "splits": {"train": len(ytr), "test": len(yte)},
                                    "image_shape": [2, 2, 3], "n_classes": k,
                                    "class_names": [f"c{i}" for i in range(k)], "source": "test",
                                    "stand_in": stand_in})
    ftr, fte = tmp_path / "feat" / "train.npy", tmp_path / "feat" / "test.npy"
    io.save_npy(ftr, xtr)
    io.save_npy(fte, xte)
    return d, ftr, fte


def test_solver_beats_chance_and_matches_linearsvc():
    X, y = _blobs(300, 4, 20, seed=0, spread=1.5)
    Xt, yt = _blobs(400, 4, 20, seed=1, spread=1.5)
    W, b = svm.fit_l2svm(X, y, 0.01, n_classes=4, max_iter=2000)
    assert W.shape == (4, 20) and b.shape == (4,)
    err = svm.error_pct(Xt, yt, [(W, b)], block_rows=37)[0]
    assert err < 15.0  # chance is 75% error
    ref = LinearSVC(C=0.01, max_iter=2000).fit(X, y)
    np.testing.assert_array_equal(svm.predict(Xt, (W, b)), ref.predict(Xt))
    # two classes: sklearn keeps one weight row; ours must predict the same
    m2 = y < 2
    W2, b2 = svm.fit_l2svm(X[m2], y[m2], 0.01, n_classes=2)
    np.testing.assert_array_equal(svm.predict(Xt, (W2, b2)), LinearSVC(C=0.01).fit(X[m2], y[m2]).predict(Xt))
    # a class missing from the labels is never predicted
    W3, b3 = svm.fit_l2svm(X[y != 2], y[y != 2], 0.01, n_classes=4)
    assert 2 not in set(svm.predict(Xt, (W3, b3)))


def _features(n: int, f: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled-conv-like features: rectified low-rank class structure plus noise, per-feature scales 0.1 ... 3
    (the generating model is fixed, ``seed`` draws the samples)."""
    g = np.random.default_rng(1234)
    means, A = g.normal(0, 1, (k, 16)), g.normal(0, 1, (16, f))
    scale = np.exp(g.uniform(np.log(0.1), np.log(3), f))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    lat = means[y] + 1.2 * rng.normal(0, 1, (n, 16))  # (n, 16)
    return (np.maximum(lat @ A / 4 + rng.normal(0, 1, (n, f)), 0) * scale).astype(np.float32), y


def _linearsvc(X, y, C, **kw) -> svm.LinearModel:
    ref = LinearSVC(C=C, **kw).fit(X, y)
    if len(ref.classes_) == 2:
        return np.r_[-ref.coef_, ref.coef_], np.r_[-ref.intercept_, ref.intercept_]
    return ref.coef_, ref.intercept_


def _f32_objective_tol(X: np.ndarray, y: np.ndarray, C: float, model: svm.LinearModel) -> np.ndarray:
    """Bound (K,) on |objective from float32 decision values - float64 l2svm_objective| at one float32 model.

    z_i = x_i . w + b from float32 products of length f, b in float64 (the model's float32 b is its rounding):
    |dz_i| <= d_i = gamma_{f+1} (|x_i||w| + |b|) (Higham Thm 3.5); max(0, 1 - y z) moves by at most d_i, so its square
    by (2 r_i + d_i) d_i, only where 1 - y z > -d_i; 0.5 ||w||^2 from float64 weights moves by <= u ||w||^2; the float64
    sums of N nonnegative terms add gamma^64_N < 1e-12 (relative)."""
    W, b = (np.asarray(a, np.float64) for a in model)
    X64 = np.asarray(X, np.float64)
    Y = np.where(y[:, None] == np.arange(len(b)), 1.0, -1.0)  # (N, K)
    m = 1 - Y * (X64 @ W.T + b)  # (N, K)
    d = gamma_f32(X.shape[1] + 1) * (np.abs(X64) @ np.abs(W).T + np.abs(b))
    loss = np.where(m > -d, (2 * np.maximum(m, 0) + d) * d, 0.0).sum(0)
    tol = C * loss + 2.0**-24 * ((W * W).sum(1) + b * b) + 1e-12 * svm.l2svm_objective(X, y, C, model)
    return tol[np.unique(y)]


@pytest.mark.parametrize("solver", ["torch", "dual_cd"])
@pytest.mark.parametrize("n, f, k, C", [(3000, 300, 10, 1e-3), (3000, 300, 10, 1e-2), (2000, 200, 2, 1e-2)])
def test_our_solvers_agree_with_linearsvc(n, f, k, C, solver):
    """Parity with the reference: the same objective values (to 1e-5) and test accuracy within 0.3 points."""
    X, y = _features(n, f, k, seed=0)
    Xt, yt = _features(2000, f, k, seed=1)
    info: dict = {}
    ours = svm.fit_l2svm(X, y, C, n_classes=k, solver=solver, info=info)
    ref = _linearsvc(X, y, C)
    assert info["converged"]
    np.testing.assert_allclose(svm.l2svm_objective(X, y, C, ours), svm.l2svm_objective(X, y, C, ref), rtol=1e-5)
    if solver == "torch":  # the solver's own objective: the same point, float32 products of X (k = f + 1)
        diff = np.abs(info["objective"] - svm.l2svm_objective(X, y, C, ours))
        assert np.all(diff <= _f32_objective_tol(X, y, C, ours)), (diff, _f32_objective_tol(X, y, C, ours))
    acc_ours, acc_ref = (100 - svm.error_pct(Xt, yt, [m])[0] for m in (ours, ref))
    assert abs(acc_ours - acc_ref) <= 0.3
    assert acc_ours > 100 / k + 30  # a real classifier, not chance


def test_dual_cd_blocks_are_exact_coordinate_descent_and_the_gram_is_shared():
    """Blocked steps equal one-row-at-a-time coordinate descent (same seeded order); a Gram matrix passed in
    (one per draw, shared by the C grid) gives the fit computed from X; the epochs end by the stopping rule."""
    X, y = _features(600, 80, 5, seed=4)
    Y = np.where(y[:, None] == np.arange(5), 1.0, -1.0)
    Q = svm.gram_matrix(X)
    Xa = np.c_[X.astype(np.float64), np.ones(len(X))]
    # float32 products of length 80 (+1: the float64 intercept column and reference), against float64 (Higham 3.5)
    assert_close_f32(Q, Xa @ Xa.T, k=81, scale=np.abs(Xa) @ np.abs(Xa).T, evaluations=1, msg="gram")
    one = svm._dual_cd(svm._GramRows(Q, 5), Y, 1e-2, 1e-4, 500, seed=7, block=1)
    blocked = svm._dual_cd(svm._GramRows(Q, 5), Y, 1e-2, 1e-4, 500, seed=7, block=64)
    streamed = svm._dual_cd(svm._StreamRows(X, 5), Y, 1e-2, 1e-4, 500, seed=7, block=64)
    assert one["converged"] and blocked["converged"] and one["epochs"] == blocked["epochs"]
    np.testing.assert_allclose(blocked["A"], one["A"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(streamed["A"], one["A"], atol=1e-3 * one["A"].max())  # same steps, float32 W
    other_order = svm._dual_cd(svm._GramRows(Q, 5), Y, 1e-2, 1e-4, 500, seed=8, block=64)
    assert not np.array_equal(other_order["A"], blocked["A"])  # the seed sets the order (the optimum is shared)
    info: dict = {}
    shared = svm.fit_l2svm(X, y, 1e-2, n_classes=5, solver="dual_cd", gram=Q, seed=7, info=info)
    own = svm.fit_l2svm(X, y, 1e-2, n_classes=5, solver="dual_cd", seed=7)
    np.testing.assert_array_equal(shared[0], own[0])
    assert info["converged"] and info["iterations"] == blocked["epochs"]
    with pytest.raises(ValueError, match="gram has shape"):
        svm.fit_l2svm(X[:100], y[:100], 1e-2, n_classes=5, solver="dual_cd", gram=Q)
    assert svm.resolve_solver("auto", 16_384) == "dual_cd" and svm.resolve_solver("auto", 16_385) == "torch"
    # warm start along the C grid (what _fit_draws does): the same optimum in fewer epochs, Gram or streamed
    small: dict = {}
    svm.fit_l2svm(X, y, 5e-3, n_classes=5, solver="dual_cd", gram=Q, seed=7, info=small)  # the grid step below
    for gram in (Q, None):
        warm: dict = {}
        svm.GRAM_MAX_BYTES, saved = (svm.GRAM_MAX_BYTES if gram is not None else 0), svm.GRAM_MAX_BYTES
        try:
            W_warm = svm.fit_l2svm(X, y, 1e-2, n_classes=5, solver="dual_cd", gram=gram, seed=7,
                                   dual_start=small["dual"], info=warm)
        finally:
            svm.GRAM_MAX_BYTES = saved
        assert warm["converged"] and warm["iterations"] < info["iterations"]
        np.testing.assert_allclose(svm.l2svm_objective(X, y, 1e-2, W_warm), svm.l2svm_objective(X, y, 1e-2, own),
                                   rtol=1e-6)


def test_dual_cd_runs_its_small_products_on_one_blas_thread():
    """The sequential steps' tiny products run with BLAS limited to one thread (several threads made the epochs
    ~3-6x slower on a shared 2-core machine); the limit ends with the solve."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    seen: list[list[int]] = []

    class Recording(svm._GramRows):
        def apply(self, U: np.ndarray) -> None:
            seen.append(blas_threads())
            super().apply(U)

    X, y = _features(200, 40, 3, seed=5)
    Y = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-thread job starts with
        before = blas_threads()
        svm._dual_cd(Recording(svm.gram_matrix(X), 3), Y, 1e-2, 1e-4, 5, seed=0)
        assert seen and all(t == [1] * len(before) for t in seen)
        assert blas_threads() == before and max(before) == 2  # restored; some BLAS was at 2 (else vacuous)


def test_torch_solver_reaches_the_optimum_by_its_documented_rule():
    """Independently of liblinear: the float64 gradient of LinearSVC's objective at our solution meets the
    documented stopping rule, for the bf16 Hessian (the default where bf16 is native), the exact (fp32) Hessian and
    the streaming path."""
    X, y = _features(1500, 120, 4, seed=2)
    C, k = 5e-3, 4
    Xa = np.c_[X.astype(np.float64), np.ones(len(X))]  # (N, F+1): the intercept's constant feature
    Y = np.where(y[:, None] == np.arange(k), 1.0, -1.0)  # (N, K)
    g0 = 2 * C * np.linalg.norm(Xa.T @ Y, axis=0)  # gradient norm at w = 0, per class
    n_pos = np.bincount(y, minlength=k)
    tol = 1e-4 * np.maximum(np.minimum(n_pos, len(y) - n_pos), 1) / len(y)
    fits = {}
    for name, kw in {"bf16": {"hessian_dtype": torch.bfloat16}, "fp32": {"hessian_dtype": None},
                     "stream": {"hessian_cache_bytes": 0}, "line_search": {"newton": "line_search"},
                     "trust_region": {"newton": "trust_region"}}.items():
        W, b = fits[name] = svm.fit_l2svm(X, y, C, n_classes=k, **kw)
        Wa = np.c_[W, b].astype(np.float64).T  # (F+1, K)
        z = Xa @ Wa
        grad = Wa + 2 * C * Xa.T @ np.where(Y * z < 1, z - Y, 0.0)
        assert np.all(np.linalg.norm(grad, axis=0) <= 2 * tol * g0), name  # 2x: float32 rounding of X products
    objective = {n: svm.l2svm_objective(X, y, C, m) for n, m in fits.items()}
    np.testing.assert_allclose(objective["bf16"], objective["fp32"], rtol=1e-6)
    np.testing.assert_allclose(objective["stream"], objective["fp32"], rtol=1e-6)
    np.testing.assert_allclose(objective["line_search"], objective["fp32"], rtol=1e-6)
    np.testing.assert_allclose(objective["trust_region"], objective["fp32"], rtol=1e-6)
    with pytest.raises(ValueError, match="newton must be one of subspace, line_search, trust_region"):
        svm.fit_l2svm(X, y, C, n_classes=k, newton="bfgs")


def test_line_search_takes_the_largest_halving_with_sufficient_decrease():
    """liblinear's backtracking rule, checked against the objective computed from scratch: the step taken meets
    f(w + a s) - f(w) <= 0.01 a g.s and twice the step does not (or it is 1); a non-descent direction gets 0."""
    X, y = _features(800, 40, 3, seed=5)
    C = 1e-2
    obj = svm._SquaredHingeOvR(X.astype(np.float64), y, np.arange(3), C, torch.device("cpu"), None, 1 << 30)
    gen = torch.Generator().manual_seed(1)
    W = 0.01 * torch.randn(3, 41, generator=gen, dtype=torch.float64)
    f, g, _, _ = obj.fun_grad(W)
    f = f.view(-1, 1)
    S = -g * torch.tensor([[1.0], [40.0], [-1.0]], dtype=torch.float64)  # descent, far too long, ascent
    XS = torch.as_tensor(np.c_[X, np.ones(len(X))].astype(np.float64)) @ S.T  # (N, 3) X_aug S^T
    alpha = svm._line_search(obj, W, S, g, XS, torch.ones(3, 1, dtype=torch.bool))
    assert alpha[2, 0] == 0 and 0 < alpha[1, 0] < alpha[0, 0] <= 1

    def f_at(a):
        return obj.fun_grad(W + a * S)[0].view(-1, 1)

    obj.fun_grad(W)
    gs = (g * S).sum(1, keepdim=True)
    for k in range(2):
        a = alpha[k:k + 1]
        assert float((f_at(alpha) - f)[k]) <= 0.01 * float(a * gs[k]) + 1e-12
        if float(a) < 1:
            assert float((f_at(2 * alpha) - f)[k]) > 0.01 * float(2 * a * gs[k])


def test_hessian_fixed_in_the_objective_pass_and_stacked_products_match_the_plain_ones():
    """fun_grad(hessian=True) fixes the same Hessian as a separate set_active pass (cache, activity,
    preconditioner), in the cache or streaming when the rows overflow it; a (B, K, P) product equals B (K, P) ones."""
    X, y = _features(600, 30, 3, seed=4)
    W = torch.as_tensor(np.c_[svm.fit_l2svm(X, y, 1e-2, n_classes=3)], dtype=torch.float64)  # (3, 31) the optimum
    V = torch.randn(2, 3, 31, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # H V = V + 2C (act * (X_aug V32^T))^T X_aug in float32 (V32: V's weights rounded to float32, as hess_vec does):
    # products of inner length 30 + 1, rounded to float32, then of length <= 600 rows; each evaluation is within
    # gamma_k |2C| (act * |X_aug||V32|^T)^T |X_aug| of the exact value, k = 30 + 1 + 600 (Higham Sec. 3.5)
    Xa = torch.as_tensor(np.c_[X, np.ones(len(X))], dtype=torch.float64)  # (600, 31)
    V32 = torch.cat([V[..., :-1].float().double(), V[..., -1:]], -1).abs()  # (2, 3, 31)
    k = 30 + 1 + 600
    products = {}
    for cache_bytes in (1 << 20, 200 * 30 * 4):  # all margin rows cached / they overflow: products stream X
        fused = svm._SquaredHingeOvR(X, y, np.arange(3), 1e-2, torch.device("cpu"), None, cache_bytes)
        plain = svm._SquaredHingeOvR(X, y, np.arange(3), 1e-2, torch.device("cpu"), None, cache_bytes)
        _, _, active, _ = fused.fun_grad(W, hessian=True)
        assert 200 < int(active.any(1).sum()) < 600  # some rows outside every margin, more than 200 inside
        scale = 2e-2 * (active.double() * (Xa.abs() @ V32.transpose(1, 2))).transpose(1, 2) @ Xa.abs()  # (2, 3, 31)
        plain.fun_grad(W)
        M = plain.set_active(active)
        assert (fused.cache is None) == (plain.cache is None) == (cache_bytes < 1 << 20)
        torch.testing.assert_close(fused.M, M, rtol=1e-6, atol=0)
        if fused.cache is not None:
            torch.testing.assert_close(fused.cache, plain.cache, rtol=0, atol=0)
            torch.testing.assert_close(fused.cache_active, plain.cache_active, rtol=0, atol=0)
        stacked = fused.hess_vec(V)
        for b in range(2):
            assert_close_f32(stacked[b], plain.hess_vec(V[b]), k=k, scale=scale[b], msg=f"stacked {b}")
        products[cache_bytes] = stacked
    assert_close_f32(products[1 << 20], products[200 * 30 * 4], k=k, scale=scale, msg="cached vs streamed")
    wrong = products[1 << 20].flatten().clone()  # the check can fail: the largest element off by a relative 1e-3
    big = wrong.abs().argmax()
    wrong[big] *= 1 + 1e-3
    with pytest.raises(AssertionError, match="exceed the float32 bound"):
        assert_close_f32(wrong.view(stacked.shape), products[1 << 20], k=k, scale=scale)


def test_subspace_step_minimises_the_quadratic_model_over_the_old_steps():
    """The subspace step is the model minimiser over span{s, old steps}: the Newton step itself when the span
    holds it, the minimiser along s when the old steps add nothing, never a worse model value than the CG step."""
    gen = torch.Generator().manual_seed(2)
    K, P = 2, 6
    A = torch.randn(K, P, P, generator=gen, dtype=torch.float64)
    H = A @ A.transpose(1, 2) + torch.eye(P, dtype=torch.float64)  # (K, P, P) SPD

    def hv(v):  # (B, K, P)
        return torch.einsum("kpq,bkq->bkp", H, v)

    g = torch.randn(K, P, generator=gen, dtype=torch.float64)
    newton = -torch.linalg.solve(H, g)  # (K, P)
    s = 0.3 * newton + 0.1 * torch.randn(K, P, generator=gen, dtype=torch.float64)  # a rough CG step
    old = torch.stack([newton - 2 * s, torch.zeros(K, P, dtype=torch.float64)])  # spans the rest; a zero step
    step = svm._subspace_step(g, s, hv(s[None])[0], old, hv(old))
    torch.testing.assert_close(step, newton, rtol=1e-8, atol=1e-10)

    def q(x):
        return (g * x).sum(1) + 0.5 * (x * hv(x[None])[0]).sum(1)

    useless = torch.zeros(1, K, P, dtype=torch.float64)  # span{s}: the model's minimiser along s
    Hs = hv(s[None])[0]
    along = -(g * s).sum(1, keepdim=True) / (s * Hs).sum(1, keepdim=True) * s
    torch.testing.assert_close(svm._subspace_step(g, s, Hs, useless, hv(useless)), along)
    other = torch.randn(1, K, P, generator=gen, dtype=torch.float64)
    assert bool((q(svm._subspace_step(g, s, hv(s[None])[0], other, hv(other))) <= q(s) + 1e-12).all())


def test_warm_start_and_row_views_change_cost_not_result(tmp_path):
    """A warm start along the C grid lands on the cold-start solution with fewer passes over X; a memory-mapped
    file and a chunk-reading row view give bit-identical fits to the same rows in memory."""
    X, y = _features(2000, 150, 10, seed=3)
    cold, warm = {}, {}
    m_cold = svm.fit_l2svm(X, y, 1e-2, n_classes=10, info=cold)
    m_prev = svm.fit_l2svm(X, y, 1e-3, n_classes=10)
    m_warm = svm.fit_l2svm(X, y, 1e-2, n_classes=10, init=m_prev, info=warm)
    np.testing.assert_allclose(warm["objective"], cold["objective"], rtol=1e-5)
    assert warm["passes"] < cold["passes"]
    path = tmp_path / "x.npy"
    io.save_npy(path, X)
    mm = io.load_npy(path)  # read-only memmap
    idx = np.sort(np.random.default_rng(0).choice(len(X), 1200, replace=False))
    direct = svm.fit_l2svm(X[idx], y[idx], 1e-3, n_classes=10)
    for view in (svm._RowSubset(mm, idx), svm._rows(mm, idx)):
        Wv, bv = svm.fit_l2svm(view, y[idx], 1e-3, n_classes=10)
        np.testing.assert_array_equal(Wv, direct[0])
        np.testing.assert_array_equal(bv, direct[1])
    assert svm._rows(mm, np.arange(len(X))) is mm  # all rows: the memmap itself, no copy


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the CUDA path of the solver is not exercised")
def test_torch_solver_on_gpu_matches_cpu():
    X, y = _features(3000, 300, 10, seed=4)
    cpu = svm.fit_l2svm(X, y, 1e-3, n_classes=10)
    gpu = svm.fit_l2svm(X, y, 1e-3, n_classes=10, device="cuda")
    np.testing.assert_allclose(svm.l2svm_objective(X, y, 1e-3, gpu), svm.l2svm_objective(X, y, 1e-3, cpu), rtol=1e-5)


def test_solver_refuses_a_fit_that_cannot_fit_in_memory(monkeypatch):
    X, y = _blobs(50, 2, 8, seed=0)
    monkeypatch.setattr(svm.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1, "SC_PAGE_SIZE": 4096}[name])
    with pytest.raises(MemoryError, match=r"LinearSVC on 50 x 8 features needs about .* GiB"):
        svm.fit_l2svm(X, y, 0.01, n_classes=2, solver="liblinear")


def test_error_pct_streams_many_models_like_direct_scoring():
    X, y = _blobs(200, 3, 10, seed=2, spread=2.0)
    models = [svm.fit_l2svm(X[i::3], y[i::3], c, n_classes=3) for i, c in enumerate([1e-3, 1e-2, 1.0])]
    direct = [100 * np.mean(svm.predict(X, m) != y) for m in models]
    np.testing.assert_allclose(svm.error_pct(X, y, models, block_rows=13), direct)


def test_split_and_draws_are_exact_and_seeded():
    y = np.repeat(np.arange(5), 40)
    val, pool = svm.split_train_validation(len(y), 50, seed=42)
    assert len(val) == 50 and len(pool) == 150 and not set(val) & set(pool)
    assert np.array_equal(val, svm.split_train_validation(len(y), 50, seed=42)[0])
    pools = svm.class_pools(y, pool, 5, 7)
    idx = svm.draw_labelled(pools, 7, np.random.default_rng(0))
    assert np.array_equal(np.bincount(y[idx], minlength=5), [7] * 5)
    assert len(set(idx)) == 35 and set(idx) <= set(pool)
    with pytest.raises(ValueError, match="svm.validation_size = 200"):
        svm.split_train_validation(200, 200, 0)


def test_protocol_draws_labels_per_class_and_never_selects_on_test(tmp_path, monkeypatch):
    Xtr, ytr = _blobs(400, 5, 16, seed=3, spread=1.0)
    Xte, yte = _blobs(150, 5, 16, seed=4, spread=1.0)
    d, ftr, fte = _dataset(tmp_path, "svhn", ytr, yte, Xtr, Xte)
    events: list[tuple] = []
    real_fit, real_load = svm.fit_l2svm, io.load_npy

    def spy_fit(X, y, C, **kw):
        events.append(("fit", C, np.bincount(y, minlength=5).tolist(), len(y)))
        return real_fit(X, y, C, **kw)

    def spy_load(path, mmap=True):
        events.append(("load", str(path)))
        return real_load(path, mmap)

    monkeypatch.setattr(svm, "fit_l2svm", spy_fit)
    monkeypatch.setattr(io, "load_npy", spy_load)
    out = tmp_path / "res" / "svm_svhn_1000.json"
    res = svm.fit_and_score("svm_svhn_1000", ftr, fte, d, CFG, out, COMMON)

    fits = [e for e in events if e[0] == "fit"]
    assert len(fits) == 3 * 3 + 4  # every C on every selection draw, then the final draws
    assert all(e[2] == [8] * 5 for e in fits)  # exactly labels_per_class of every class, every draw
    test_loads = [i for i, e in enumerate(events) if e == ("load", str(fte))]
    assert len(test_loads) == 1  # the test features are opened once ...
    assert test_loads[0] > max(i for i, e in enumerate(events) if e[0] == "fit")  # ... after every fit
    assert all(e[1] == res["C"] for e in fits[9:])

    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in ("protocol", "dataset", "features", "feature_dim", "labels_per_class", "C", "validation_error_pct",
                "test_error_pct", "test_error_ci95_pct", "test_accuracy_pct", "draws", "stand_in", "provenance"):
        assert key in on_disk, key
    assert (on_disk["features"], on_disk["feature_dim"], on_disk["draws"]) == ("svhn", 16, 4)
    assert on_disk["labels_per_class"] == 8 and on_disk["stand_in"] == "toy blobs standing in"
    assert sorted(on_disk["validation_error_pct"]) == sorted(["0.001", "0.01", "0.1"])
    assert on_disk["C"] in CFG["c_grid"]
    assert on_disk["test_error_pct"] < 40 and on_disk["test_error_ci95_pct"] >= 0  # chance: 80%
    assert on_disk["test_accuracy_pct"] == pytest.approx(100 - on_disk["test_error_pct"])
    assert on_disk["provenance"]["seed"] == 42 and str(ftr) in json.dumps(on_disk["provenance"]["inputs"])

    # selection does not depend on the test set at all: scramble it, the choice and validation errors stay
    rng = np.random.default_rng(9)
    io.save_npy(fte, rng.normal(0, 5, Xte.shape).astype(np.float32))
    io.write_dataset(d, "test", np.zeros((len(yte), 2, 2, 3), np.uint8), rng.permutation(yte))
    res2 = svm.fit_and_score("svm_svhn_1000", ftr, fte, d, CFG, tmp_path / "res" / "again.json", COMMON)
    assert (res2["C"], res2["validation_error_pct"]) == (res["C"], res["validation_error_pct"])
    assert res2["test_error_pct"] > 50


def test_all_labels_protocol_refits_on_all_training_data(tmp_path, monkeypatch):
    Xtr, ytr = _blobs(300, 3, 12, seed=5, spread=2.0)
    Xte, yte = _blobs(90, 3, 12, seed=6, spread=2.0)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, yte, Xtr, Xte, stand_in=None)
    sizes: list[int] = []
    real_fit = svm.fit_l2svm
    monkeypatch.setattr(svm, "fit_l2svm", lambda X, y, C, **kw: sizes.append(len(y)) or real_fit(X, y, C, **kw))
    res = svm.fit_and_score("svm_cifar10_all", ftr, fte, d, CFG, tmp_path / "all.json", COMMON)
    assert sizes == [300 - 60] * 3 + [300]  # pool for each C, then all training images incl. validation
    assert (res["draws"], res["labels_per_class"], res["test_error_ci95_pct"]) == (1, None, None)
    assert res["features"] == "imagenet32" and res["stand_in"] is None
    # the chosen C's model, refitted by hand on everything, gives the reported test error
    direct = LinearSVC(C=res["C"], max_iter=1000, random_state=42).fit(Xtr, ytr)
    assert res["test_error_pct"] == pytest.approx(100 * np.mean(direct.predict(Xte) != yte))


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path):
    ytr = np.array([0] * 30 + [1] * 30 + [2] * 5)  # class 2 has 5 images in all
    Xtr, _ = _blobs(len(ytr), 3, 6, seed=7)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, np.arange(9) % 3, Xtr, Xtr[:9])
    out = tmp_path / "out.json"
    cfg = dict(CFG, validation_size=10, cifar10_labels_per_class=8)
    with pytest.raises(ValueError, match=r"cannot draw 8 labels per class .*class 2 \(c2\) has [0-5] images .*lower svm.cifar10_labels_per_class"):
        svm.fit_and_score("svm_cifar10_400pc", ftr, fte, d, cfg, out, COMMON)
    with pytest.raises(ValueError, match="unknown SVM protocol 'svm_mnist'; allowed: svm_svhn_1000"):
        svm.fit_and_score("svm_mnist", ftr, fte, d, cfg, out, COMMON)
    with pytest.raises(ValueError, match="needs dataset 'svhn' but .* holds 'cifar10'"):
        svm.fit_and_score("svm_svhn_1000", ftr, fte, d, cfg, out, COMMON)
    io.save_npy(fte, np.zeros((9, 7), np.float32))
    with pytest.raises(ValueError, match="different models"):
        svm.fit_and_score("svm_cifar10_all", ftr, fte, d, cfg, out, COMMON)
    io.save_npy(ftr, Xtr[:-1])
    with pytest.raises(ValueError, match="has 64 rows but its dataset split has 65"):
        svm.fit_and_score("svm_cifar10_all", ftr, fte, d, cfg, out, COMMON)
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


def test_feature_length_c_grid_and_solver_are_checked_before_fitting(tmp_path, monkeypatch):
    """Feature files of another length than the configured D gives, and unusable svm.c_grid / svm.solver
    values, fail with a message naming the file or setting, before any fit and without writing anything."""
    run = dict(yaml.safe_load((REPO / "config.yaml").read_text())["runs"]["imagenet32"], ndf=4, ngf=4)
    assert svm.model_feature_dim(run, 4) == (4 + 4 + 8 + 8 + 16 + 16) * 16  # 896; 28,672 at ndf=128
    Xtr, ytr = _blobs(120, 3, 6, seed=8)
    Xte, yte = _blobs(30, 3, 6, seed=9)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, yte, Xtr, Xte)
    out = tmp_path / "out.json"
    real_fit = svm.fit_l2svm
    monkeypatch.setattr(svm, "fit_l2svm", lambda *a, **k: pytest.fail("fitted despite bad input"))
    with pytest.raises(ValueError, match=r"feature file .*train.npy has 6 dimensions but the 'imagenet32' "
                       r"discriminator \(runs.imagenet32: .*ndf 4\) with features.pool = 4 gives 896"):
        svm.fit_and_score("svm_cifar10_all", ftr, fte, d, CFG, out, COMMON, feature_model=run, feature_pool=4)
    for grid in ([], [1e-3, 0.0], [1e-3, 1e-2, 1e-3], [float("inf")]):
        with pytest.raises(ValueError, match=r"svm.c_grid = .*: needs one or more distinct positive finite"):
            svm.fit_and_score("svm_cifar10_all", ftr, fte, d, dict(CFG, c_grid=grid), out, COMMON)
    with pytest.raises(ValueError, match="svm.solver must be one of auto, dual_cd, torch, liblinear, got 'sgd'"):
        svm.fit_and_score("svm_cifar10_all", ftr, fte, d, dict(CFG, solver="sgd"), out, COMMON)
    assert not out.exists()
    # features of the right length pass, with either solver
    monkeypatch.setattr(svm, "fit_l2svm", real_fit)
    rng = np.random.default_rng(0)
    io.save_npy(ftr, np.c_[Xtr, rng.normal(0, 1, (len(Xtr), 890))].astype(np.float32))
    io.save_npy(fte, np.c_[Xte, rng.normal(0, 1, (len(Xte), 890))].astype(np.float32))
    for solver in svm.SOLVERS:
        res = svm.fit_and_score("svm_cifar10_all", ftr, fte, d, dict(CFG, solver=solver), out, COMMON,
                                feature_model=run, feature_pool=4)
        used = svm.resolve_solver(solver, len(Xtr))  # auto: dual_cd for this small set
        assert res["feature_dim"] == 896 and res["solver"] == svm.SOLVER_NAMES[used]
        assert used == ("dual_cd" if solver == "auto" else solver)


def test_protocol_registry_matches_the_workflow():
    """svm.PROTOCOLS repeats common.smk's SVM_PROTOCOLS / FEATURE_SETS (the JSON names the D run)."""
    text = (REPO / "workflow" / "rules" / "common.smk").read_text()

    def literal(name: str):
        return ast.literal_eval(re.search(rf"^{name} = (\{{.*?\}})", text, re.S | re.M).group(1))

    protocols, feature_sets = literal("SVM_PROTOCOLS"), literal("FEATURE_SETS")
    other_features = re.search(r"^SVM_FEATURE_DIRS = \{(.*?)\}", text, re.S | re.M).group(1)  # not D's features
    assert set(svm.PROTOCOLS) == set(protocols)
    for name, p in svm.PROTOCOLS.items():
        assert p.dataset == protocols[name]
        assert f'"{name}"' in other_features or p.features_run == feature_sets[p.dataset]
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())["svm"]
    assert all(p.labels_key is None or p.labels_key in cfg for p in svm.PROTOCOLS.values())


def test_raw_pixels_on_real_cifar10_match_linearsvc(shared_data, tmp_path):
    """Real CIFAR-10 images (../shared/data subset), 8x8-averaged pixels: our protocol's test error equals a
    LinearSVC fitted directly with the chosen C on all 4,000 training images, within 0.3 points."""
    npz = np.load(shared_data / "cifar10" / "cifar10_subset.npz")

    def feats(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), 8, 4, 8, 4, 3).mean((2, 4)).reshape(len(x), -1).astype(np.float32) / 255  # (N, 192)

    xtr, xte = feats(npz["x_train"]), feats(npz["x_test"])
    ytr, yte = npz["y_train"].astype(np.int64), npz["y_test"].astype(np.int64)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, yte, xtr, xte)
    cfg = dict(CFG, c_grid=[1e-3, 1e-2], validation_size=1000)
    res = svm.fit_and_score("svm_cifar10_all", ftr, fte, d, cfg, tmp_path / "r.json", COMMON)
    direct = LinearSVC(C=res["C"]).fit(xtr, ytr)
    direct_err = 100 * np.mean(direct.predict(xte) != yte)
    assert abs(res["test_error_pct"] - direct_err) <= 0.3
    assert res["test_error_pct"] < 80  # clearly better than chance (90%)


# --- supervised CNN (Table 2 baseline) ---------------------------------------------------------------------


def test_sample_hparams_in_range_and_seeded():
    cfg = {"lr_range": [1e-4, 1e-2], "dropout_range": [0.0, 0.7], "weight_decay_range": [1e-6, 1e-2]}
    a = [svm.sample_hparams(np.random.default_rng(0), cfg) for _ in range(2)]
    assert a[0] == a[1]
    hs = [svm.sample_hparams(r, cfg) for r in [np.random.default_rng(1)] for _ in range(200)]
    lrs = np.array([h["lr"] for h in hs])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-2 and (np.log10(lrs) < -3).mean() == pytest.approx(0.5, abs=0.1)
    assert all(0 <= h["dropout"] <= 0.7 and 1e-6 <= h["weight_decay"] <= 1e-2 for h in hs)
    with pytest.raises(ValueError, match="supervised_cnn.lr_range"):
        svm.sample_hparams(np.random.default_rng(0), dict(cfg, lr_range=[1e-2, 1e-4]))


def test_supervised_cnn_on_svhn_architecture(tmp_path):
    from dcgan_repro import models

    run = dict(yaml.safe_load((REPO / "config.yaml").read_text())["runs"]["svhn"], ndf=8, ngf=8)
    _, netD = models.build_models(run)
    net = svm.SupervisedCNN(netD, 10, dropout=0.5)
    assert net.head.in_features == 8 * 4 * 4 * 4  # (4*ndf) x 4 x 4, the 1-logit head's input
    assert net(torch.zeros(3, 3, 32, 32)).shape == (3, 10)

    # two learnable classes of 32x32 colour images: bright vs dark, with noise
    rng = np.random.default_rng(0)
    y = np.arange(260) % 2
    x = np.clip(rng.normal(80 + 90 * y[:, None, None, None], 40, (260, 32, 32, 3)), 0, 255).astype(np.uint8)
    d = tmp_path / "svhn"
    io.write_dataset(d, "train", x[:200], y[:200])
    io.write_dataset(d, "test", x[200:], y[200:])
    io.write_json(d / "meta.json", {"name": "svhn", "n_classes": 2, "class_names": None, "stand_in": "toy"})
    cnn = {"trials": 2, "epochs": 3, "seed": 0, "batch_size": 10, "lr_range": [1e-3, 3e-3],
           "dropout_range": [0.0, 0.2], "weight_decay_range": [1e-6, 1e-5]}
    cfg = dict(CFG, validation_size=60, svhn_labels_per_class=15)
    out = tmp_path / "cnn.json"
    res = svm.train_supervised_cnn(d, out, cnn, cfg, run, COMMON)
    assert json.loads(out.read_text())["protocol"] == "supervised_cnn_svhn_1000"
    assert len(res["trials"]) == 2 and res["stand_in"] == "toy"
    assert res["validation_error_pct"] == min(t["validation_error_pct"] for t in res["trials"])
    assert res["validation_error_pct"] < 25 and res["test_error_pct"] < 25  # chance: 50%
    res2 = svm.train_supervised_cnn(d, tmp_path / "cnn2.json", cnn, cfg, run, COMMON)
    assert res2["trials"] == res["trials"]  # seeded: the same search again


def test_auto_hessian_precision_is_the_exact_one_where_bf16_is_not_native(monkeypatch):
    """Where bf16 would be emulated (measured on an AVX2-only CPU: half the fp32 speed), the default Hessian
    products are X's own dtype: the same fit, bit for bit, as hessian_dtype=None."""
    monkeypatch.setattr(svm.runtime, "native_bf16", lambda device: False)
    X, y = _features(600, 40, 3, seed=5)
    auto = svm.fit_l2svm(X, y, 5e-3, n_classes=3)
    exact = svm.fit_l2svm(X, y, 5e-3, n_classes=3, hessian_dtype=None)
    assert all(np.array_equal(a, e) for a, e in zip(auto, exact))
    with pytest.raises(ValueError, match="hessian_dtype"):
        svm.fit_l2svm(X, y, 5e-3, n_classes=3, hessian_dtype="bf16")
