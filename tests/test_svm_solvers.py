"""L2-SVM solvers: parity with LinearSVC, dual coordinate descent, the Newton-CG internals, memory refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.svm import LinearSVC

from conftest import assert_close_f32, blobs, gamma_f32, pooled_features
from dcgan_repro.svm import dual_cd, protocols, solvers

torch.set_num_threads(1)


def test_solver_beats_chance_and_matches_linearsvc():
    X, y = blobs(300, 4, 20, seed=0, spread=1.5)
    Xt, yt = blobs(400, 4, 20, seed=1, spread=1.5)
    W, b = solvers.fit_l2svm(X, y, 0.01, n_classes=4, max_iter=2000)
    assert W.shape == (4, 20) and b.shape == (4,)
    err = protocols.error_pct(Xt, yt, [(W, b)], block_rows=37)[0]
    assert err < 15.0  # chance is 75% error
    ref = LinearSVC(C=0.01, max_iter=2000).fit(X, y)
    np.testing.assert_array_equal(solvers.predict(Xt, (W, b)), ref.predict(Xt))
    # two classes: sklearn keeps one weight row; ours must predict the same
    m2 = y < 2
    W2, b2 = solvers.fit_l2svm(X[m2], y[m2], 0.01, n_classes=2)
    np.testing.assert_array_equal(solvers.predict(Xt, (W2, b2)), LinearSVC(C=0.01).fit(X[m2], y[m2]).predict(Xt))
    # a class missing from the labels is never predicted
    W3, b3 = solvers.fit_l2svm(X[y != 2], y[y != 2], 0.01, n_classes=4)
    assert 2 not in set(solvers.predict(Xt, (W3, b3)))


def _linearsvc(X, y, C, **kw) -> solvers.LinearModel:
    ref = LinearSVC(C=C, **kw).fit(X, y)
    if len(ref.classes_) == 2:
        return np.r_[-ref.coef_, ref.coef_], np.r_[-ref.intercept_, ref.intercept_]
    return ref.coef_, ref.intercept_


def _f32_objective_tol(X: np.ndarray, y: np.ndarray, C: float, model: solvers.LinearModel) -> np.ndarray:
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
    tol = C * loss + 2.0**-24 * ((W * W).sum(1) + b * b) + 1e-12 * solvers.l2svm_objective(X, y, C, model)
    return tol[np.unique(y)]


@pytest.mark.parametrize("solver", ["torch", "dual_cd"])
@pytest.mark.parametrize("n, f, k, C", [(3000, 300, 10, 1e-3), (3000, 300, 10, 1e-2), (2000, 200, 2, 1e-2)])
def test_our_solvers_agree_with_linearsvc(n, f, k, C, solver):
    """Parity with the reference: the same objective values (to 1e-5) and test accuracy within 0.3 points."""
    X, y = pooled_features(n, f, k, seed=0)
    Xt, yt = pooled_features(2000, f, k, seed=1)
    info: dict = {}
    ours = solvers.fit_l2svm(X, y, C, n_classes=k, solver=solver, info=info)
    ref = _linearsvc(X, y, C)
    assert info["converged"]
    np.testing.assert_allclose(solvers.l2svm_objective(X, y, C, ours), solvers.l2svm_objective(X, y, C, ref), rtol=1e-5)
    if solver == "torch":  # the solver's own objective: the same point, float32 products of X (k = f + 1)
        diff = np.abs(info["objective"] - solvers.l2svm_objective(X, y, C, ours))
        assert np.all(diff <= _f32_objective_tol(X, y, C, ours)), (diff, _f32_objective_tol(X, y, C, ours))
    acc_ours, acc_ref = (100 - protocols.error_pct(Xt, yt, [m])[0] for m in (ours, ref))
    assert abs(acc_ours - acc_ref) <= 0.3
    assert acc_ours > 100 / k + 30  # a real classifier, not chance


def test_dual_cd_blocks_are_exact_coordinate_descent_and_the_gram_is_shared():
    """Blocked steps equal one-row-at-a-time coordinate descent (same seeded order); a Gram matrix passed in
    (one per draw, shared by the C grid) gives the fit computed from X; the epochs end by the stopping rule."""
    X, y = pooled_features(600, 80, 5, seed=4)
    Y = np.where(y[:, None] == np.arange(5), 1.0, -1.0)
    Q = dual_cd.gram_matrix(X)
    Xa = np.c_[X.astype(np.float64), np.ones(len(X))]
    # float32 products of length 80 (+1: the float64 intercept column and reference), against float64 (Higham 3.5)
    assert_close_f32(Q, Xa @ Xa.T, k=81, scale=np.abs(Xa) @ np.abs(Xa).T, evaluations=1, msg="gram")
    one = dual_cd._dual_cd(dual_cd._GramRows(Q, 5), Y, 1e-2, 1e-4, 500, seed=7, block=1)
    blocked = dual_cd._dual_cd(dual_cd._GramRows(Q, 5), Y, 1e-2, 1e-4, 500, seed=7, block=64)
    streamed = dual_cd._dual_cd(dual_cd._StreamRows(X, 5), Y, 1e-2, 1e-4, 500, seed=7, block=64)
    assert one["converged"] and blocked["converged"] and one["epochs"] == blocked["epochs"]
    np.testing.assert_allclose(blocked["A"], one["A"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(streamed["A"], one["A"], atol=1e-3 * one["A"].max())  # same steps, float32 W
    other_order = dual_cd._dual_cd(dual_cd._GramRows(Q, 5), Y, 1e-2, 1e-4, 500, seed=8, block=64)
    assert not np.array_equal(other_order["A"], blocked["A"])  # the seed sets the order (the optimum is shared)
    info: dict = {}
    shared = solvers.fit_l2svm(X, y, 1e-2, n_classes=5, solver="dual_cd", gram=Q, seed=7, info=info)
    own = solvers.fit_l2svm(X, y, 1e-2, n_classes=5, solver="dual_cd", seed=7)
    np.testing.assert_array_equal(shared[0], own[0])
    assert info["converged"] and info["iterations"] == blocked["epochs"]
    with pytest.raises(ValueError, match="gram has shape"):
        solvers.fit_l2svm(X[:100], y[:100], 1e-2, n_classes=5, solver="dual_cd", gram=Q)
    assert solvers.resolve_solver("auto", 16_384) == "dual_cd" and solvers.resolve_solver("auto", 16_385) == "torch"
    # warm start along the C grid (what _fit_draws does): the same optimum in fewer epochs, Gram or streamed
    small: dict = {}
    solvers.fit_l2svm(X, y, 5e-3, n_classes=5, solver="dual_cd", gram=Q, seed=7, info=small)  # the grid step below
    for gram in (Q, None):
        warm: dict = {}
        dual_cd.GRAM_MAX_BYTES, saved = (dual_cd.GRAM_MAX_BYTES if gram is not None else 0), dual_cd.GRAM_MAX_BYTES
        try:
            W_warm = solvers.fit_l2svm(X, y, 1e-2, n_classes=5, solver="dual_cd", gram=gram, seed=7,
                                   dual_start=small["dual"], info=warm)
        finally:
            dual_cd.GRAM_MAX_BYTES = saved
        assert warm["converged"] and warm["iterations"] < info["iterations"]
        np.testing.assert_allclose(solvers.l2svm_objective(X, y, 1e-2, W_warm),
                                   solvers.l2svm_objective(X, y, 1e-2, own), rtol=1e-6)


def test_dual_cd_runs_its_small_products_on_one_blas_thread():
    """The sequential steps' tiny products run with BLAS limited to one thread (several threads made the epochs
    ~3-6x slower on a shared 2-core machine); the limit ends with the solve."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]

    seen: list[list[int]] = []

    class Recording(dual_cd._GramRows):
        def apply(self, U: np.ndarray) -> None:
            seen.append(blas_threads())
            super().apply(U)

    X, y = pooled_features(200, 40, 3, seed=5)
    Y = np.where(y[:, None] == np.arange(3), 1.0, -1.0)
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-thread job starts with
        before = blas_threads()
        dual_cd._dual_cd(Recording(dual_cd.gram_matrix(X), 3), Y, 1e-2, 1e-4, 5, seed=0)
        assert seen and all(t == [1] * len(before) for t in seen)
        assert blas_threads() == before and max(before) == 2  # restored; some BLAS was at 2 (else vacuous)


def test_torch_solver_reaches_the_optimum_by_its_documented_rule():
    """Independently of liblinear: the float64 gradient of LinearSVC's objective at our solution meets the
    documented stopping rule, for the bf16 Hessian (the default where bf16 is native), the exact (fp32) Hessian and
    the streaming path."""
    X, y = pooled_features(1500, 120, 4, seed=2)
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
        W, b = fits[name] = solvers.fit_l2svm(X, y, C, n_classes=k, **kw)
        Wa = np.c_[W, b].astype(np.float64).T  # (F+1, K)
        z = Xa @ Wa
        grad = Wa + 2 * C * Xa.T @ np.where(Y * z < 1, z - Y, 0.0)
        assert np.all(np.linalg.norm(grad, axis=0) <= 2 * tol * g0), name  # 2x: float32 rounding of X products
    objective = {n: solvers.l2svm_objective(X, y, C, m) for n, m in fits.items()}
    np.testing.assert_allclose(objective["bf16"], objective["fp32"], rtol=1e-6)
    np.testing.assert_allclose(objective["stream"], objective["fp32"], rtol=1e-6)
    np.testing.assert_allclose(objective["line_search"], objective["fp32"], rtol=1e-6)
    np.testing.assert_allclose(objective["trust_region"], objective["fp32"], rtol=1e-6)
    with pytest.raises(ValueError, match="newton must be one of subspace, line_search, trust_region"):
        solvers.fit_l2svm(X, y, C, n_classes=k, newton="bfgs")


def test_line_search_takes_the_largest_halving_with_sufficient_decrease():
    """liblinear's backtracking rule, checked against the objective computed from scratch: the step taken meets
    f(w + a s) - f(w) <= 0.01 a g.s and twice the step does not (or it is 1); a non-descent direction gets 0."""
    X, y = pooled_features(800, 40, 3, seed=5)
    C = 1e-2
    obj = solvers._SquaredHingeOvR(X.astype(np.float64), y, np.arange(3), C, torch.device("cpu"), None, 1 << 30)
    gen = torch.Generator().manual_seed(1)
    W = 0.01 * torch.randn(3, 41, generator=gen, dtype=torch.float64)
    f, g, _, _ = obj.fun_grad(W)
    f = f.view(-1, 1)
    S = -g * torch.tensor([[1.0], [40.0], [-1.0]], dtype=torch.float64)  # descent, far too long, ascent
    XS = torch.as_tensor(np.c_[X, np.ones(len(X))].astype(np.float64)) @ S.T  # (N, 3) X_aug S^T
    alpha = solvers._line_search(obj, W, S, g, XS, torch.ones(3, 1, dtype=torch.bool))
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
    X, y = pooled_features(600, 30, 3, seed=4)
    W = torch.as_tensor(np.c_[solvers.fit_l2svm(X, y, 1e-2, n_classes=3)], dtype=torch.float64)  # (3, 31) the optimum
    V = torch.randn(2, 3, 31, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # H V = V + 2C (act * (X_aug V32^T))^T X_aug in float32 (V32: V's weights rounded to float32, as hess_vec does):
    # products of inner length 30 + 1, rounded to float32, then of length <= 600 rows; each evaluation is within
    # gamma_k |2C| (act * |X_aug||V32|^T)^T |X_aug| of the exact value, k = 30 + 1 + 600 (Higham Sec. 3.5)
    Xa = torch.as_tensor(np.c_[X, np.ones(len(X))], dtype=torch.float64)  # (600, 31)
    V32 = torch.cat([V[..., :-1].float().double(), V[..., -1:]], -1).abs()  # (2, 3, 31)
    k = 30 + 1 + 600
    products = {}
    for cache_bytes in (1 << 20, 200 * 30 * 4):  # all margin rows cached / they overflow: products stream X
        fused = solvers._SquaredHingeOvR(X, y, np.arange(3), 1e-2, torch.device("cpu"), None, cache_bytes)
        plain = solvers._SquaredHingeOvR(X, y, np.arange(3), 1e-2, torch.device("cpu"), None, cache_bytes)
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
    step = solvers._subspace_step(g, s, hv(s[None])[0], old, hv(old))
    torch.testing.assert_close(step, newton, rtol=1e-8, atol=1e-10)

    def q(x):
        return (g * x).sum(1) + 0.5 * (x * hv(x[None])[0]).sum(1)

    useless = torch.zeros(1, K, P, dtype=torch.float64)  # span{s}: the model's minimiser along s
    Hs = hv(s[None])[0]
    along = -(g * s).sum(1, keepdim=True) / (s * Hs).sum(1, keepdim=True) * s
    torch.testing.assert_close(solvers._subspace_step(g, s, Hs, useless, hv(useless)), along)
    other = torch.randn(1, K, P, generator=gen, dtype=torch.float64)
    assert bool((q(solvers._subspace_step(g, s, hv(s[None])[0], other, hv(other))) <= q(s) + 1e-12).all())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU: the CUDA path of the solver is not exercised")
def test_torch_solver_on_gpu_matches_cpu():
    X, y = pooled_features(3000, 300, 10, seed=4)
    cpu = solvers.fit_l2svm(X, y, 1e-3, n_classes=10)
    gpu = solvers.fit_l2svm(X, y, 1e-3, n_classes=10, device="cuda")
    np.testing.assert_allclose(solvers.l2svm_objective(X, y, 1e-3, gpu), solvers.l2svm_objective(X, y, 1e-3, cpu),
                               rtol=1e-5)


def test_solver_refuses_a_fit_that_cannot_fit_in_memory(monkeypatch):
    X, y = blobs(50, 2, 8, seed=0)
    monkeypatch.setattr(solvers.os, "sysconf", lambda name: {"SC_AVPHYS_PAGES": 1, "SC_PAGE_SIZE": 4096}[name])
    with pytest.raises(MemoryError, match=r"LinearSVC on 50 x 8 features needs about .* GiB"):
        solvers.fit_l2svm(X, y, 0.01, n_classes=2, solver="liblinear")


def test_auto_hessian_precision_is_the_exact_one_where_bf16_is_not_native(monkeypatch):
    """Where bf16 would be emulated (measured on an AVX2-only CPU: half the fp32 speed), the default Hessian
    products are X's own dtype: the same fit, bit for bit, as hessian_dtype=None."""
    monkeypatch.setattr(solvers.runtime, "native_bf16", lambda device: False)
    X, y = pooled_features(600, 40, 3, seed=5)
    auto = solvers.fit_l2svm(X, y, 5e-3, n_classes=3)
    exact = solvers.fit_l2svm(X, y, 5e-3, n_classes=3, hessian_dtype=None)
    assert all(np.array_equal(a, e) for a, e in zip(auto, exact))
    with pytest.raises(ValueError, match="hessian_dtype"):
        solvers.fit_l2svm(X, y, 5e-3, n_classes=3, hessian_dtype="bf16")
