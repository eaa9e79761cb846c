"""L2-SVM solvers: LinearSVC's objective on discriminator features (Tables 1 and 2), fitted without copying X.

The classifier is the authors' (``svhn/svhn_semisup_analysis.py``, Newmu/dcgan_code ee12b2d):
``sklearn.svm.LinearSVC(C=c)`` with defaults, i.e. one-vs-rest squared hinge ("L2-SVM"), L2 penalty, an
intercept, no feature scaling. :func:`fit_l2svm` is the one place the solver lives (swap it for a GPU solver
with the same ``(W, b)`` result); the protocols (:mod:`dcgan_repro.svm.protocols`) score what it returns.

Solvers (config ``svm.solver``, :data:`SOLVERS`, :func:`resolve_solver`), all for the same objective:

* ``dual_cd``: liblinear's dual coordinate descent (LinearSVC(dual=True)) on the Gram matrix of the rows, or
  streaming X when it does not fit: :mod:`dcgan_repro.svm.dual_cd` (:func:`~dcgan_repro.svm.dual_cd.fit_dual_cd`).
* ``torch``: liblinear's primal Newton-CG, all one-vs-rest problems together on the configured device
  (:class:`_SquaredHingeOvR`; :func:`_newton_ls` with subspace or line-search steps, :func:`_tron`).
* ``liblinear``: ``sklearn.svm.LinearSVC`` itself, the reference (:func:`_fit_liblinear`).
* ``auto``: ``dual_cd`` while its Gram matrix fits :data:`dual_cd.GRAM_MAX_BYTES`, else ``torch``.

:func:`l2svm_objective` evaluates LinearSVC's primal objective (the parity check of tests and
benchmarks/bench_svm.py); :func:`predict` gives a model's class predictions.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from dcgan_repro import runtime
from dcgan_repro.svm import dual_cd

log = logging.getLogger(__name__)

SCORE_BLOCK_ROWS = 2048  # feature rows per streamed block when scoring (2048 x 28,672 float32 = 235 MB)

LinearModel = tuple[np.ndarray, np.ndarray]  # (W (K, F) float32, b (K,) float32); predict argmax(X W^T + b)


# --- the solver ------------------------------------------------------------------------------------
#
# Why a hand-written solver: liblinear (LinearSVC) copies X to float64 and again into its own sparse rows
# (~24 bytes per feature value): 50,000 x 28,672 needs ~32 GiB, more than a 24 GB machine has. The solver
# below minimises exactly LinearSVC's objective (so LinearSVC stays the reference, svm.solver: liblinear) but
# only ever reads row chunks of X (a memory map is never copied), solves all one-vs-rest problems in the same
# pass over X and runs on a GPU when one is configured. benchmarks/bench_svm.py measures memory, time, parity.

SOLVER_TOL = 1e-4  # LinearSVC / liblinear default ``tol``; see fit_l2svm for the criterion it sets
SOLVERS = ("auto", "dual_cd", "torch", "liblinear")
SOLVER_NAMES = {  # as recorded in the result JSON (torch: with its Newton method, solver_name)
    "dual_cd": "dcgan_repro.svm dual coordinate descent on the Gram matrix (liblinear's LinearSVC(dual=True) "
               "algorithm: squared hinge, one-vs-rest, L2, regularised intercept)",
    "torch": "dcgan_repro.svm Newton-CG in torch (LinearSVC's objective: squared hinge, one-vs-rest, L2, regularised "
             "intercept)",
    "liblinear": "sklearn.svm.LinearSVC (liblinear; squared hinge, one-vs-rest, L2, intercept)",
}
_TRON_ETA = (1e-4, 0.25, 0.75)  # liblinear tron.cpp: step acceptance / trust-region update thresholds
_TRON_SIGMA = (0.25, 0.5, 4.0)  # liblinear tron.cpp: trust-region shrink / grow factors
_TRON_EPS_CG = 0.1  # liblinear: relative accuracy of each truncated-CG Newton step
_TRON_ALPHA_PCG = 0.01  # liblinear: diagonal preconditioner M = (1 - a) I + a diag(H)
_NEWTON_EPS_CG = 0.5  # liblinear newton.cpp (line-search Newton, its primal solver since 2.40): CG accuracy
_NEWTON_ETA = 0.01  # liblinear linesearch_and_update: Armijo sufficient-decrease constant
_NEWTON_MAX_HALVINGS = 20  # liblinear: max_num_linesearch (step 1, 1/2, 1/4, ...)
NEWTON_METHODS = ("subspace", "line_search", "trust_region")  # config svm.newton; the first is the default
NEWTON_NAMES = {  # as recorded in the result JSON; the same optimum and stopping rule, different paths to it
    "subspace": "line search, liblinear >= 2.40's primal method, each CG step refined over the last two steps",
    "line_search": "line search, liblinear >= 2.40's primal method as it is",
    "trust_region": "trust region (TRON), liblinear's primal method before 2.40",
}
_NEWTON_MEMORY = 2  # method "subspace": previous steps in the subspace of each Newton step (2 and 5 measured alike)
_F32_OBJECTIVE_NOISE = 1e-6  # relative size of objective differences lost to float32 products of X
HESSIAN_CACHE_BYTES = 4 << 30  # largest compact copy of the margin rows (bf16 50,000 x 28,672 = 2.9 GB fits)


def _chunk_rows(n_features: int, device: torch.device) -> int:
    """Rows per streamed chunk: ~16 MB of float32 on CPU (stays in cache for the two matmuls of a
    Hessian-vector product), ~1 GB on GPU."""
    target = (1 << 30) if device.type == "cuda" else (16 << 20)
    return max(16, target // (4 * max(n_features, 1)))


class _SquaredHingeOvR:
    """Objectives of K one-vs-rest L2-SVMs sharing one X, evaluated in row chunks of X.

    For class k (labels y_ik = +1 if y_i = k else -1) and the augmented weights w_k = [v_k, b_k] (intercept =
    weight of a constant feature 1, regularised like the others: liblinear with intercept_scaling = 1):
        f_k(w_k) = 0.5 ||w_k||^2 + C sum_i max(0, 1 - y_ik (x_i . v_k + b_k))^2.
    All K problems are the rows of one (K, F+1) float64 matrix. The objective and gradient read X in its own
    dtype (float32 features: float32 products, each chunk's partial sums added up in float64): they decide
    convergence and every step's acceptance, so they are exact to float32 rounding.

    Hessian-vector products (the CG inner loop, most of the passes) only involve the rows inside some class's
    margin. At every accepted point those rows are copied into a compact cache in ``hess_dtype`` (bfloat16 by
    default where the device has it natively: half the memory traffic of float32 and ~2.5x faster matmuls on CPUs
    with AVX512-BF16; a Newton step is only solved to 10% anyway), during the pass that computes the gradient
    there, when they fit in ``hess_cache_bytes``; otherwise the products stream X like the gradient does.
    """

    def __init__(self, X: np.ndarray | torch.Tensor, y: np.ndarray, classes: np.ndarray, C: float,
                 device: torch.device, hess_dtype: torch.dtype | None, hess_cache_bytes: int):
        self.X, self.C, self.device = X, float(C), device
        self.N, self.F = X.shape
        self.dtype = torch.float64 if X.dtype in (np.float64, torch.float64) else torch.float32
        self.hess_dtype = hess_dtype or self.dtype
        self.hess_cache_bytes = hess_cache_bytes
        yt = torch.as_tensor(np.asarray(y), device=device)
        ct = torch.as_tensor(np.asarray(classes), device=device)
        self.Y = torch.where(yt[:, None] == ct[None, :], 1.0, -1.0).to(torch.float64)  # (N, K) +-1
        self.rows = _chunk_rows(self.F, device)
        self.cache_rows = max(self.rows, (64 << 20) // (2 * max(self.F, 1)))  # in-memory cache: bigger blocks
        self.g0: torch.Tensor | None = None  # gradient norms at w = 0 (K,), from the first pass
        self.z: torch.Tensor | None = None  # (N, K) float64 decision values X_aug W^T of the last fun_grad
        self.passes = 0.0  # reads of X so far, in units of full passes (the cost measure)
        if device.type == "cuda" and not isinstance(X, torch.Tensor):
            # a GPU with room for X keeps it (5.7 GB at paper scale on a 40-80 GB card): one host transfer
            free, _ = torch.cuda.mem_get_info(device)
            if X.shape[0] * X.shape[1] * (8 if self.dtype == torch.float64 else 4) < 0.5 * free:
                resident = torch.empty(X.shape, dtype=self.dtype, device=device)
                for start, xc in self.chunks():  # still reading the host array
                    resident[start:start + len(xc)] = xc
                self.X, self.passes = resident, 0.0
        self.cache: torch.Tensor | None = None  # (n_active, F) hess_dtype: rows active in some class
        self.cache_active: torch.Tensor | None = None  # (n_active, K) bool, or (N, K) when streaming
        self.M: torch.Tensor | None = None  # (K, F+1) preconditioner of the Hessian last fixed
        # Storage allocated once and refilled at every new active set (a fresh multi-GB cache per Newton step cost
        # seconds of page faults at 50,000 rows; untouched pages cost no memory): the cache, for as many rows as
        # ``hess_cache_bytes`` allows, its rows' activity, and scratch rows for the selection and the squares.
        self._capacity = min(self.N, hess_cache_bytes // (max(self.F, 1) * self.hess_dtype.itemsize))
        self._cache_buf = torch.empty(self._capacity, self.F, dtype=self.hess_dtype, device=device)
        self._active_buf = torch.empty(self.N, self.Y.shape[1], dtype=torch.bool, device=device)
        self._scratch = torch.empty(2, min(self.rows, self.N), self.F, dtype=self.dtype, device=device)

    def chunks(self):
        """Yield (start, x_c) with x_c a (n_c, F) tensor on the device; a CPU memmap is viewed, never copied."""
        self.passes += 1
        for start in range(0, self.N, self.rows):
            xc = self.X[start:start + self.rows]
            if not isinstance(xc, torch.Tensor):
                with warnings.catch_warnings():  # read-only memmap: torch warns, we never write to it
                    warnings.simplefilter("ignore", UserWarning)
                    xc = torch.from_numpy(np.ascontiguousarray(xc))
            yield start, xc.to(self.device, self.dtype, non_blocking=True)

    def fun_grad(self, W: torch.Tensor, hessian: bool = False) -> tuple[torch.Tensor, ...]:
        """One pass: objective f (K,), gradient (K, F+1), active set (N, K) bool (rows inside the margin) and
        the gradient norm at w = 0 (K,) (liblinear's reference for the stopping rule). ``hessian=True``: the same
        pass also fixes the Hessian at W, as :meth:`set_active` would with a pass of its own (``self.M``)."""
        C, K = self.C, W.shape[0]
        v, b = W[:, :-1].to(self.dtype), W[:, -1]  # (K, F), (K,)
        f = 0.5 * (W * W).sum(1)  # (K,)
        first = self.g0 is None  # the first pass also gets X_aug^T Y (the gradient at w = 0)
        g = torch.zeros((2 if first else 1) * K, self.F + 1, dtype=torch.float64, device=self.device)
        active = torch.empty(self.N, K, dtype=torch.bool, device=self.device)
        self.z = torch.empty(self.N, K, dtype=torch.float64, device=self.device)  # decision values at W
        if hessian:
            self._hessian_begin(K)
        for start, xc in self.chunks():
            yc = self.Y[start:start + len(xc)]  # (n, K)
            z = (xc @ v.T).double() + b  # (n, K) decision values
            self.z[start:start + len(xc)] = z
            act = yc * z < 1  # (n, K) rows inside the margin
            r = torch.where(act, z - yc, 0.0)  # (n, K) = d loss / d z / (2C)
            f += C * r.square().sum(0)  # (1 - y z)^2 = (z - y)^2 since y^2 = 1
            rt = (torch.cat([r, -yc], 1) if first else r).T  # (K or 2K, n)
            g[:, :-1] += (rt.to(self.dtype) @ xc).double()  # (K or 2K, F)
            g[:, -1] += rt.sum(1)
            active[start:start + len(xc)] = act
            if hessian:
                self._hessian_add(xc, act)
        if first:
            self.g0 = 2 * C * g[K:].norm(dim=1)
        if hessian:
            self._hessian_end(active)
        return f, W + 2 * C * g[:K], active, self.g0

    def set_active(self, active: torch.Tensor) -> torch.Tensor:
        """Fix the active set of the Hessian (the accepted point's) in a pass of its own; cache its rows; return
        liblinear's diagonal preconditioner (1 - a) + a diag(H) (K, F+1), also kept as ``self.M``."""
        self._hessian_begin(active.shape[1])
        for start, xc in self.chunks():
            self._hessian_add(xc, active[start:start + len(xc)])
        return self._hessian_end(active)

    def _hessian_begin(self, K: int) -> None:
        self._diag = torch.zeros(K, self.F + 1, dtype=torch.float64, device=self.device)
        self._cached, self._overflow = 0, not self._capacity

    def _hessian_add(self, xc: torch.Tensor, act: torch.Tensor) -> None:
        """Add one chunk of X (its rows' activity ``act`` (n, K)) to diag(H) and, while it fits, to the cache."""
        # Every temporary lives in the preallocated scratch: fresh ones per chunk, with the small tensors kept
        # between them, fragmented the heap by GBs over a 50,000-row pass (peak RSS of the full fit: 13.4 vs 9.8 GiB).
        rows = act.any(1).nonzero().squeeze(1)  # rows active in some class
        n = len(rows)
        if not n:
            return
        if n < len(xc):
            xc = torch.index_select(xc, 0, rows, out=self._scratch[0, :n])
            act = act[rows]
        sq = torch.mul(xc, xc, out=self._scratch[1, :n])
        self._diag[:, :-1] += (act.T.to(xc.dtype) @ sq).double()  # (K, F), in X's precision
        self._diag[:, -1] += act.sum(0).double()
        if not self._overflow:
            if self._cached + n > self._capacity:
                self._overflow = True
            else:
                self._cache_buf[self._cached:self._cached + n].copy_(xc)
                self._active_buf[self._cached:self._cached + n] = act
                self._cached += n

    def _hessian_end(self, active: torch.Tensor) -> torch.Tensor:
        if self._overflow:  # the margin rows do not fit: products stream X
            self.cache, self.cache_active = None, active
        else:
            self.cache, self.cache_active = self._cache_buf[:self._cached], self._active_buf[:self._cached]
        self.M = (1 - _TRON_ALPHA_PCG) + _TRON_ALPHA_PCG * (1 + 2 * self.C * self._diag)
        return self.M

    def hess_vec(self, V: torch.Tensor) -> torch.Tensor:
        """(Generalised) Hessian times V for every class: V + 2C (active * (V X_aug^T)) X_aug, on the active rows.
        V is (K, F+1), or (B, K, F+1) for B vectors per class in the same pass (a pass costs about the same for
        10 and 64 columns: it is bound by reading the rows)."""
        shape, K = V.shape, self.Y.shape[1]
        V = V.reshape(-1, self.F + 1)  # (B K, F+1), row b K + k
        reps = len(V) // K
        out = torch.zeros_like(V)
        if self.cache is not None:
            u, c = V[:, :-1].to(self.hess_dtype), V[:, -1]  # (B K, F), (B K,)
            self.passes += len(self.cache) / max(self.N, 1)
            source = ((s, self.cache[s:s + self.cache_rows]) for s in range(0, len(self.cache), self.cache_rows))
        else:
            u, c = V[:, :-1].to(self.dtype), V[:, -1]
            source = self.chunks()
        # bf16 products are rounded to bf16 anyway: their sum is kept in float32 (measured 0.29 vs 0.37 s per
        # product at 40,000 cached rows, with a contiguous left factor); float32/64 products are summed in float64
        acc = torch.zeros(len(V), self.F, device=self.device,
                          dtype=torch.float32 if u.dtype == torch.bfloat16 else torch.float64)
        for start, xc in source:
            act = self.cache_active[start:start + len(xc)]
            act = act.repeat(1, reps) if reps > 1 else act
            t = torch.where(act, (xc @ u.T).double() + c, 0.0)  # (n, B K)
            acc += t.T.to(xc.dtype).contiguous() @ xc  # (B K, F)
            out[:, -1] += t.sum(0)
        out[:, :-1] = acc
        return (V + 2 * self.C * out).view(shape)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(1, keepdim=True)  # row-wise: (K, P) x (K, P) -> (K, 1)


def _trpcg(obj: _SquaredHingeOvR, delta: torch.Tensor, g: torch.Tensor, M: torch.Tensor, run: torch.Tensor,
           eps_cg: float = _TRON_EPS_CG, extra: torch.Tensor | None = None) -> tuple[Any, ...]:
    """liblinear's preconditioned truncated CG for the trust-region step, for the classes in ``run`` at once.

    Solves H s = -g within ||s||_M <= delta (inf: no trust region, as in the line-search Newton method); stops a
    class on the boundary, on negative curvature, or when the quadratic model stops improving (liblinear's
    Q-based rule with relative accuracy ``eps_cg``). Vectors are (K, P), scalars (K, 1). ``extra`` (B, K, P):
    vectors multiplied by the same Hessian in the first pass (free: a pass is bound by reading the rows). Returns
    (s, r = -g - H s, reached boundary, CG iterations = Hessian-vector passes, H extra or None)."""
    run = run.clone()
    s, r = torch.zeros_like(g), -g
    z = r / M
    d = z.clone()
    zTr = _dot(z, r)
    cgtol = torch.clamp(zTr.sqrt().sqrt(), max=eps_cg)
    Q = torch.zeros_like(zTr)
    boundary = torch.zeros_like(run)
    it, H_extra = 0, None
    if extra is not None:
        H_all = obj.hess_vec(torch.cat([d[None], extra]))
        Hd_first, H_extra = H_all[0], H_all[1:]
    while bool(run.any()) and it < max(g.shape[1], 5):
        it += 1
        Hd = Hd_first if it == 1 and extra is not None else obj.hess_vec(d)
        dHd = _dot(d, Hd)
        run &= dHd > 1e-16
        alpha = torch.where(run, zTr / dHd.clamp(min=1e-300), 0.0)
        s_new, r_new = s + alpha * d, r - alpha * Hd
        hit = run & (_dot(s_new * M, s_new).sqrt() > delta)
        if bool(hit.any()):  # step to the boundary along d from the previous s: ||s + tau d||_M = delta
            sMd, sMs, dMd = _dot(s * M, d), _dot(s * M, s), _dot(d * M, d)
            rad = (sMd.square() + dMd * (delta.square() - sMs)).clamp(min=0).sqrt()
            tau = torch.where(sMd >= 0, (delta.square() - sMs) / (sMd + rad).clamp(min=1e-300),
                              (rad - sMd) / dMd.clamp(min=1e-300))
            s_new = torch.where(hit, s + tau * d, s_new)
            r_new = torch.where(hit, r - tau * Hd, r_new)
        s, r = torch.where(run, s_new, s), torch.where(run, r_new, r)
        boundary |= hit
        run &= ~hit
        newQ = -0.5 * (_dot(s, r) - _dot(s, g))
        Qdiff = newQ - Q
        improving = (newQ <= 0) & (Qdiff <= 0)
        run &= improving & (it * Qdiff < cgtol * newQ)
        Q = torch.where(run, newQ, Q)
        z = r / M
        znew = _dot(z, r)
        d = torch.where(run, z + (znew / zTr.clamp(min=1e-300)) * d, d)
        zTr = torch.where(run, znew, zTr)
    return s, r, boundary, it, H_extra


def _tron(obj: _SquaredHingeOvR, W: torch.Tensor, tol_k: torch.Tensor, max_iter: int) -> dict[str, Any]:
    """liblinear's trust-region Newton method (TRON, Lin, Weng & Keerthi 2008), all classes in lock-step.

    ``W`` (K, F+1). Each class keeps its own trust region and stops when ||grad_k|| <= tol_k ||grad_k(0)||.
    Returns the weights and a summary (iterations, passes over X, gradient ratios, convergence)."""
    eta0, eta1, eta2 = _TRON_ETA
    sigma1, sigma2, sigma3 = _TRON_SIGMA
    tol_k = tol_k.view(-1, 1)
    f, g, active, g0 = obj.fun_grad(W)
    f, g0 = f.view(-1, 1), g0.view(-1, 1)
    M = obj.set_active(active)
    gnorm = g.norm(dim=1, keepdim=True)
    done = gnorm <= tol_k * g0
    converged = done.clone()
    delta = _dot(g * M, g).sqrt()
    it = cg_total = 0
    first = True
    while not bool(done.all()) and it < max_iter:
        it += 1
        s, r, boundary, cg_it, _ = _trpcg(obj, delta, g, M, ~done)
        cg_total += cg_it
        W_new = W + s
        gs = _dot(g, s)
        prered = -0.5 * (gs - _dot(s, r))
        f_new, g_new, active_new, _ = obj.fun_grad(W_new)
        f_new = f_new.view(-1, 1)
        actred = f - f_new
        sMnorm = _dot(s * M, s).sqrt()
        if first:
            delta, first = torch.minimum(delta, sMnorm), False
        curv = f_new - f - gs
        alpha = torch.where(curv <= 0, sigma3, torch.clamp(-0.5 * gs / curv.clamp(min=1e-300), min=sigma1))
        grow = torch.where(boundary, sigma3 * delta,
                           torch.maximum(delta, torch.minimum(alpha * sMnorm, sigma3 * delta)))
        delta_new = torch.where(
            actred < eta0 * prered, torch.minimum(alpha * sMnorm, sigma2 * delta),
            torch.where(actred < eta1 * prered,
                        torch.maximum(sigma1 * delta, torch.minimum(alpha * sMnorm, sigma2 * delta)),
                        torch.where(actred < eta2 * prered,
                                    torch.maximum(sigma1 * delta, torch.minimum(alpha * sMnorm, sigma3 * delta)),
                                    grow)))
        # Near the optimum the decrease falls below the rounding of a float32 objective (~1e-7 f) while the
        # gradient is still measurable: a step whose predicted decrease is at that level is accepted when it
        # lowers the gradient norm (liblinear, in float64, never meets this), keeping the trust region.
        at_noise = ~(actred > eta0 * prered) & (prered.abs() <= _F32_OBJECTIVE_NOISE * f.abs()) & (
            g_new.norm(dim=1, keepdim=True) < g.norm(dim=1, keepdim=True))
        delta = torch.where(done | at_noise, delta, delta_new)
        accept = ~done & ((actred > eta0 * prered) | at_noise)
        W = torch.where(accept, W_new, W)
        f, g = torch.where(accept, f_new, f), torch.where(accept, g_new, g)
        active = torch.where(accept.view(1, -1), active_new, active)
        gnorm = g.norm(dim=1, keepdim=True)
        newly = accept & (gnorm <= tol_k * g0)
        converged |= newly
        # liblinear's other exits: no predicted decrease, or changes at rounding level
        stalled = ~done & ((prered <= 0) | ((actred.abs() <= 1e-12 * f.abs()) & (prered.abs() <= 1e-12 * f.abs())))
        done |= newly | stalled
        if bool(accept.any()) and not bool(done.all()):
            M = obj.set_active(active)
        log.debug("TRON it %d: %d CG steps, |g|/|g0| max %.2e, %d/%d classes done", it, cg_it,
                  float((gnorm / g0).max()), int(done.sum()), len(done))
    return {"W": W, "iterations": it, "cg_steps": cg_total, "passes": obj.passes, "f": f.view(-1),
            "grad_ratio": (gnorm / g0).view(-1), "tol": tol_k.view(-1), "converged": converged.view(-1)}


def _line_search(obj: _SquaredHingeOvR, W: torch.Tensor, S: torch.Tensor, g: torch.Tensor, d: torch.Tensor,
                 run: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
    """liblinear's backtracking line search (``linesearch_and_update``) for every class at once: the largest of
    1, 1/2, 1/4, ... (``_NEWTON_MAX_HALVINGS`` tries) with f(w + a s) - f(w) <= eta a g.s; 0 where none is or
    the class is not in ``run``. ``d`` = X_aug S^T (N, K): each try costs O(N K), no pass over X. The decrease
    is computed as a difference from the stored decision values, so it is exact to float64 rounding of itself
    (not lost in the rounding of f). ``z``: the decision values at W (default: those of the last
    :meth:`_SquaredHingeOvR.fun_grad`). Returns the step sizes (K, 1)."""
    Y, C = obj.Y, obj.C
    z = obj.z if z is None else z  # (N, K)
    gs, ws, ss = _dot(g, S), _dot(W, S), _dot(S, S)  # (K, 1)
    loss0 = torch.where(Y * z < 1, (z - Y).square(), 0.0).sum(0).view(-1, 1)  # (K, 1)
    alpha = torch.ones_like(gs)
    ok = torch.zeros_like(run)
    for _ in range(_NEWTON_MAX_HALVINGS):
        zt = z + alpha.T * d  # (N, K)
        loss = torch.where(Y * zt < 1, (zt - Y).square(), 0.0).sum(0).view(-1, 1)
        decrease = alpha * ws + 0.5 * alpha.square() * ss + C * (loss - loss0)  # f(w + a s) - f(w)
        ok |= run & (decrease <= _NEWTON_ETA * alpha * gs)
        if bool((ok | ~run).all()):
            break
        alpha = torch.where(ok, alpha, 0.5 * alpha)
    return torch.where(ok, alpha, 0.0)


def _subspace_step(g: torch.Tensor, s: torch.Tensor, Hs: torch.Tensor, S_old: torch.Tensor,
                   HS_old: torch.Tensor) -> torch.Tensor:
    """The minimiser of the quadratic model q(x) = g.x + 0.5 x.Hx over span{s, previous steps} for each class
    (an (1 + B)-dimensional solve from the products already made); ``s`` where that does not lower q."""
    basis, Hb = torch.cat([s[None], S_old]), torch.cat([Hs[None], HS_old])  # (1 + B, K, P)
    G = torch.einsum("ikp,jkp->kij", basis, Hb)  # (K, 1 + B, 1 + B) projected Hessian
    G = 0.5 * (G + G.transpose(1, 2))
    b = torch.einsum("ikp,kp->ki", basis, g)  # (K, 1 + B)
    # tiny systems, solved on the CPU: CUDA's lstsq has no rank-revealing driver (an old step may be 0)
    c = -torch.linalg.lstsq(G.cpu(), b.unsqueeze(2).cpu(), rcond=1e-10, driver="gelsd").solution.squeeze(2)
    c = c.to(G.device)  # (K, 1 + B)
    q_new = (c * b).sum(1) + 0.5 * (c.unsqueeze(1) @ G @ c.unsqueeze(2)).view(-1)
    q_cg = b[:, 0] + 0.5 * G[:, 0, 0]
    better = (torch.isfinite(q_new) & (q_new < q_cg)).view(-1, 1)
    return torch.where(better, torch.einsum("ki,ikp->kp", c, basis), s)


def _newton_ls(obj: _SquaredHingeOvR, W: torch.Tensor, tol_k: torch.Tensor, max_iter: int,
               memory: int = 0) -> dict[str, Any]:
    """liblinear's line-search Newton method (newton.cpp, its primal solver since version 2.40; Galli & Lin
    2021), all classes in lock-step: the diagonal-preconditioned CG step of :func:`_trpcg` with no trust region
    and ``_NEWTON_EPS_CG``, then :func:`_line_search` along it. No step is ever rejected, where the trust region
    rejects steps and shrinks after each wrong guess of its radius. Stopping rule and result as :func:`_tron`.

    ``memory`` > 0 (method ``subspace``): the CG step is replaced by the minimiser of the same quadratic model
    over it and the last ``memory`` steps (:func:`_subspace_step`; their Hessian products ride along in CG's first
    pass). The truncated CG steps zigzag across the badly conditioned directions; the old steps carry them.

    Passes per iteration: the CG passes over the margin rows, then one pass over X at the full step that gives
    the objective, gradient and next Hessian at once. The line search needs X s: it is the difference of the
    decision values at both points. Only when some class takes a shorter step is there a second pass."""
    tol_k = tol_k.view(-1, 1)
    f, g, active, g0 = obj.fun_grad(W, hessian=True)
    f, g0 = f.view(-1, 1), g0.view(-1, 1)
    gnorm = g.norm(dim=1, keepdim=True)
    done = gnorm <= tol_k * g0
    converged = done.clone()
    unbounded = torch.full_like(f, float("inf"))
    steps: list[torch.Tensor] = []  # the last `memory` steps taken (K, F+1), newest first
    it = cg_total = 0
    while not bool(done.all()) and it < max_iter:
        it += 1
        extra = torch.stack(steps) if steps else None
        s, r, _, cg_it, H_extra = _trpcg(obj, unbounded, g, obj.M, ~done, eps_cg=_NEWTON_EPS_CG, extra=extra)
        cg_total += cg_it
        if extra is not None:
            s = _subspace_step(g, s, -g - r, extra, H_extra)
        s = torch.where(done, 0.0, s)
        z = obj.z  # decision values at W
        f_full, g_full, active_full, _ = obj.fun_grad(W + s, hessian=True)  # the full step, taken when it passes
        alpha = _line_search(obj, W, s, g, obj.z - z, ~done, z=z)
        W = W + alpha * s
        if bool(((alpha == 1) | done).all()):
            f_new, g, active = f_full, g_full, active_full
        else:  # some class backtracked (or found no step): classes with alpha = 0 keep W, so their f, g too
            f_new, g, active, _ = obj.fun_grad(W, hessian=True)
        if memory:
            steps = [alpha * s, *steps][:memory]
        f_new = f_new.view(-1, 1)
        actred = f - f_new
        f = f_new
        gnorm = g.norm(dim=1, keepdim=True)
        newly = ~done & (alpha > 0) & (gnorm <= tol_k * g0)
        converged |= newly
        # liblinear's other exits: the line search failed, or the decrease is at rounding level
        stalled = ~done & ((alpha == 0) | (actred.abs() <= 1e-12 * f.abs()))
        done |= newly | stalled
        log.debug("Newton it %d: %d CG steps, step sizes %.3g-%.3g, |g|/|g0| max %.2e, %d/%d classes done", it,
                  cg_it, float(alpha.min()), float(alpha.max()), float((gnorm / g0).max()), int(done.sum()),
                  len(done))
    return {"W": W, "iterations": it, "cg_steps": cg_total, "passes": obj.passes, "f": f.view(-1),
            "grad_ratio": (gnorm / g0).view(-1), "tol": tol_k.view(-1), "converged": converged.view(-1)}


def resolve_solver(solver: str, n_rows: int) -> str:
    """``auto``: the dual solver when the Gram matrix of ``n_rows`` fits ``dual_cd.GRAM_MAX_BYTES``, else Newton-CG."""
    if solver not in SOLVERS:
        raise ValueError(f"svm.solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if solver == "auto":
        return "dual_cd" if n_rows * n_rows * 8 <= dual_cd.GRAM_MAX_BYTES else "torch"
    return solver


def check_newton(newton: str) -> str:
    """``newton`` if it names one of :data:`NEWTON_METHODS`, else an error naming config ``svm.newton``."""
    if newton not in NEWTON_METHODS:
        raise ValueError(f"svm.newton must be one of {', '.join(NEWTON_METHODS)}, got {newton!r}")
    return newton


def solver_name(solver: str, newton: str = NEWTON_METHODS[0]) -> str:
    """What the result JSON records for a resolved ``solver``: :data:`SOLVER_NAMES`, the torch solver with its
    Newton method (:data:`NEWTON_NAMES`)."""
    if solver == "torch":
        return f"{SOLVER_NAMES[solver]}: {NEWTON_NAMES[check_newton(newton)]}"
    return SOLVER_NAMES[solver]


def fit_l2svm(X: np.ndarray, y: np.ndarray, C: float, *, n_classes: int, max_iter: int = 1000, seed: int = 0,
              solver: str = "torch", device: torch.device | str = "cpu",
              init: LinearModel | None = None, hessian_dtype: torch.dtype | str | None = "auto",
              hessian_cache_bytes: int = HESSIAN_CACHE_BYTES, newton: str = "subspace",
              gram: np.ndarray | None = None, dual_start: np.ndarray | None = None,
              info: dict | None = None) -> LinearModel:
    """One-vs-rest L2-SVM (squared hinge, L2 penalty, regularised intercept): LinearSVC(C=C)'s objective.

    ``X``: (N, F) features (a read-only memmap is fine: it is read in row chunks, never copied), ``y``: (N,)
    labels in [0, n_classes). Returns ``(W, b)`` with one row per class (W (n_classes, F) float32, b (n_classes,));
    a class absent from ``y`` gets W = 0, b = -inf (never predicted).

    ``solver="dual_cd"``: :func:`dual_cd.fit_dual_cd` on the Gram matrix ``gram`` of X's rows
    (:func:`dual_cd.gram_matrix`; computed when not given and it fits ``dual_cd.GRAM_MAX_BYTES``, so a C grid
    can share one; otherwise the streaming form, which keeps w and reads X), LinearSVC(dual=True)'s algorithm and
    stopping rule (:data:`SOLVER_TOL`, ``max_iter`` epochs); memory O(N^2) with the Gram matrix.
    ``solver="auto"``: dual_cd while its Gram matrix fits ``dual_cd.GRAM_MAX_BYTES``, else torch.
    ``dual_start``: dual variables (N, present classes) to start from, e.g. ``info["dual"]`` of the fit for a
    smaller C on the same rows (warm start along a C grid).
    ``solver="torch"``: Newton-CG as liblinear's primal solver, all classes together, on ``device``;
    ``newton`` (config ``svm.newton``, :data:`NEWTON_METHODS`; the other solvers ignore it): ``"subspace"``
    (default: liblinear >= 2.40's line-search method with each truncated CG step replaced by the model minimiser
    over it and the last two steps, :func:`_newton_ls` with memory; 1.6x faster at 10,000 x 28,672),
    ``"line_search"`` (liblinear >= 2.40's method as it is) or ``"trust_region"`` (TRON, the method before it,
    :func:`_tron`): the same optimum and stopping rule, different paths to it. Convergence:
    class k stops when ||grad f_k(w_k)|| <= tol * max(min(#pos_k, #neg_k), 1) / N * ||grad f_k(0)|| (liblinear's
    primal rule with LinearSVC's tol = 1e-4), or after ``max_iter`` Newton iterations (then a warning).
    ``init``: a model to start from (warm start along a C grid, same classes).
    ``hessian_dtype``: precision of the Hessian-vector products inside CG (``auto``: bfloat16 where the device
    has native bf16, :func:`runtime.native_bf16`, else X's own; None = X's own dtype, i.e. exactly liblinear's
    method; measured on an AVX2-only CPU, a 4,096 x 28,672 bf16 product ran at half the fp32 speed); the
    objective and gradient, hence the stopping rule and the solution, are always float32-exact.
    ``hessian_cache_bytes``: largest compact copy of the margin rows kept for them (bigger: products stream X).
    These two have no config key: the workflow runs the defaults (both other paths are still taken: X's dtype on
    a device without native bf16, streaming when the margin rows do not fit); tests set them to compare the paths.
    ``tol`` is :data:`SOLVER_TOL`, LinearSVC's default, which the authors' code kept (no setting changes it).
    Memory: X is never copied; the cache, plus O(N K + F K) float64.
    ``info`` (a dict) receives iterations, passes over X, objective values and wall time.
    ``solver="liblinear"``: ``sklearn.svm.LinearSVC(C=C, max_iter=max_iter, random_state=seed)``, the
    reference; it copies X (~24 bytes per value) and is refused when that cannot fit in memory.
    ``seed`` sets dual_cd's row order and liblinear's (the torch solver is deterministic).
    """
    solver = resolve_solver(solver, len(X))
    if not (C > 0 and math.isfinite(C)):
        raise ValueError(f"C must be a positive finite number, got {C!r}")
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"expected X (N, F) and y (N,), got {X.shape} and {np.shape(y)}")
    y = np.asarray(y)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError(f"the SVM needs labels of at least two classes, got only {classes.tolist()}")
    if classes[0] < 0 or classes[-1] >= n_classes:
        raise ValueError(f"labels must lie in [0, {n_classes}), got {classes.min()}..{classes.max()}")
    t0 = time.time()
    if solver == "liblinear":
        coef, icpt = _fit_liblinear(X, y, C, max_iter, seed)
    elif solver == "dual_cd":
        coef, icpt, res = dual_cd.fit_dual_cd(X, y, classes, C, tol=SOLVER_TOL, max_iter=max_iter, seed=seed,
                                              device=device, gram=gram, dual_start=dual_start)
        if info is not None:
            info.update(iterations=res["epochs"], converged=res["converged"], dual=res["A"])
    else:
        device = torch.device(device)
        if isinstance(hessian_dtype, str):
            if hessian_dtype != "auto":
                raise ValueError(f"hessian_dtype must be a torch dtype, None or 'auto', got {hessian_dtype!r}")
            hessian_dtype = torch.bfloat16 if runtime.native_bf16(device) else None
        W0 = torch.zeros(len(classes), X.shape[1] + 1, dtype=torch.float64, device=device)  # (K, F+1)
        if init is not None:
            W0[:, :-1] = torch.as_tensor(np.asarray(init[0], np.float64)[classes], device=device)
            W0[:, -1] = torch.as_tensor(np.nan_to_num(np.asarray(init[1], np.float64)[classes], neginf=0.0),
                                        device=device)
        obj = _SquaredHingeOvR(X, y, classes, C, device, hessian_dtype, hessian_cache_bytes)
        n_pos = torch.as_tensor(np.bincount(np.searchsorted(classes, y), minlength=len(classes)), device=device)
        tol_k = SOLVER_TOL * torch.clamp(torch.minimum(n_pos, len(y) - n_pos), min=1).double() / len(y)
        if check_newton(newton) == "trust_region":
            res = _tron(obj, W0, tol_k, max_iter)
        else:
            res = _newton_ls(obj, W0, tol_k, max_iter, memory=_NEWTON_MEMORY if newton == "subspace" else 0)
        if not bool(res["converged"].all()):
            why = (f"svm.max_iter = {max_iter} Newton iterations" if res["iterations"] >= max_iter else
                   f"no further progress at float32 precision after {res['iterations']} Newton iterations")
            log.warning("L2-SVM (C=%g, N=%d, F=%d) stopped before its stopping rule (tol %g): %s; the worst "
                        "class's gradient is %.1fx its target", C, *X.shape, SOLVER_TOL, why,
                        float((res["grad_ratio"] / res["tol"]).max()))
        Wk = res["W"].cpu().numpy()  # (K, F+1)
        coef, icpt = Wk[:, :-1], Wk[:, -1]
        if info is not None:
            info.update(iterations=res["iterations"], cg_steps=res["cg_steps"], passes=res["passes"],
                        objective=res["f"].cpu().numpy(), converged=bool(res["converged"].all()))
    W = np.zeros((n_classes, X.shape[1]), np.float32)  # (K, F)
    b = np.full(n_classes, -np.inf, np.float32)  # (K,)
    W[classes], b[classes] = coef, icpt
    if info is not None:
        info["seconds"] = time.time() - t0
    log.debug("L2-SVM %s C=%g on %d x %d: %.2f s", solver, C, *X.shape, time.time() - t0)
    return W, b


def _fit_liblinear(X: np.ndarray, y: np.ndarray, C: float, max_iter: int, seed: int) -> tuple[np.ndarray, ...]:
    """The reference: LinearSVC(C) as the authors' code; (coef (K', F), intercept (K',)) for the classes of y."""
    _check_liblinear_memory(X)
    clf = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("LinearSVC(C=%g) did not converge in svm.max_iter = %d iterations (N=%d, F=%d)", C,
                    max_iter, *X.shape)
    coef, icpt = clf.coef_, clf.intercept_  # (K', F), (K',); K' = 1 for two classes
    if len(clf.classes_) == 2:
        coef, icpt = np.concatenate([-coef, coef]), np.concatenate([-icpt, icpt])  # (2, F), (2,)
    return coef, icpt


def l2svm_objective(X: np.ndarray, y: np.ndarray, C: float, model: LinearModel) -> np.ndarray:
    """LinearSVC's primal objective of each present class's one-vs-rest problem (float64, (K_present,)):
    0.5 (||w_k||^2 + b_k^2) + C sum_i max(0, 1 - y_ik (x_i . w_k + b_k))^2."""
    W, b = model
    y = np.asarray(y)
    classes = np.unique(y)
    W, b = np.asarray(W, np.float64)[classes], np.asarray(b, np.float64)[classes]  # (K, F), (K,)
    loss = np.zeros(len(classes))
    for start in range(0, len(y), SCORE_BLOCK_ROWS):  # streamed: X may be a memmap
        Y = np.where(y[start:start + SCORE_BLOCK_ROWS, None] == classes[None, :], 1.0, -1.0)  # (B, K)
        xb = np.asarray(X[start:start + SCORE_BLOCK_ROWS], np.float64)  # (B, F)
        loss += (np.maximum(0.0, 1 - Y * (xb @ W.T + b)) ** 2).sum(0)
    return 0.5 * ((W * W).sum(1) + b * b) + C * loss


def _check_liblinear_memory(X: np.ndarray) -> None:
    """Refuse, with the numbers, a fit that cannot fit in memory (instead of being killed by the OOM killer)."""
    need = X.shape[0] * X.shape[1] * (8 + 16)  # float64 copy + liblinear feature_node (int index + double)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return
    if need > avail:
        raise MemoryError(f"LinearSVC on {X.shape[0]} x {X.shape[1]} features needs about {need / 2**30:.1f} GiB "
                          f"(float64 copy plus liblinear's own copy) but {avail / 2**30:.1f} GiB are available; "
                          "use fewer labels, or a machine with more memory")


def predict(X: np.ndarray, model: LinearModel) -> np.ndarray:
    """Class predictions argmax(X W^T + b) for an in-memory (N, F) block (the tests' check against LinearSVC's
    predictions; the protocols score models with :func:`dcgan_repro.svm.protocols.error_pct`, streamed)."""
    W, b = model
    return np.argmax(X @ W.T + b, axis=1)  # (N, K) -> (N,)
