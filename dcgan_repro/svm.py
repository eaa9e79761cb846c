"""L2-SVM protocols on discriminator features (Tables 1 and 2) and the supervised CNN baseline (Table 2).

The classifier is the authors' (``svhn/svhn_semisup_analysis.py``, Newmu/dcgan_code ee12b2d):
``sklearn.svm.LinearSVC(C=c)`` with defaults, i.e. one-vs-rest squared hinge ("L2-SVM"), L2 penalty, an
intercept, no feature scaling. :func:`fit_l2svm` is the one place the solver lives (swap it for a GPU solver
with the same ``(W, b)`` result); everything else scores linear models ``argmax(X W^T + b)`` by streaming
feature rows from memory maps, one pass over a split for many models at once.

Protocols (rule ``fit_svm``, wildcard ``protocol``; REFERENCE.md Sec. 4):

* ``svm_svhn_1000`` (Table 2): SVHN train shuffled with ``svm.seed``; the first ``validation_size`` images are
  the validation set, the rest the labelled pool. C is chosen from ``c_grid`` by the mean validation error over
  ``selection_draws`` random draws of ``svhn_labels_per_class`` labels per class; then ``final_draws`` fresh
  draws with that C are scored on the test set: mean error and 1.96 x std (numpy std, ddof 0, as the code).
  The code drew new labels for every C; here every C sees the same selection draws (a paired comparison, so
  the choice of C is less noisy); the final draws are fresh.
* ``svm_cifar10_400pc`` (Table 1, "400 per class"): the same on CIFAR-10 with ``cifar10_labels_per_class``.
* ``svm_cifar10_all`` (Table 1, "accuracy"): C chosen by fitting on the pool (train minus validation) and
  scoring the validation set; then one fit with that C on *all* training images, validation included (the
  paper's 82.8% uses all 50,000 training images), and one test score (``test_error_ci95_pct`` is null).

The test set is read once, after C is fixed.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits
from torch import nn

from dcgan_repro import features, io, models, runtime

log = logging.getLogger(__name__)

SCORE_BLOCK_ROWS = 2048  # feature rows per streamed block when scoring (2048 x 28,672 float32 = 235 MB)


@dataclass(frozen=True)
class Protocol:
    """One registered evaluation protocol (its name is the rule wildcard and the result file name)."""

    name: str
    dataset: str  # labelled dataset the features describe
    features_run: str  # the training run whose D gives the features (common.smk FEATURE_SETS)
    labels_key: str | None  # svm config key with labels per class; None = all training labels
    paper: str  # what it reproduces


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("svm_svhn_1000", "svhn", "svhn", "svhn_labels_per_class", "Table 2: SVHN, 1000 labels"),
    Protocol("svm_cifar10_400pc", "cifar10", "imagenet32", "cifar10_labels_per_class",
             "Table 1: CIFAR-10, 400 labels per class"),
    Protocol("svm_cifar10_all", "cifar10", "imagenet32", None, "Table 1: CIFAR-10, all training labels"),
    # Table 1's "1 Layer K-means" row, measured: the same protocols on K-means features (dcgan_repro.kmeans)
    Protocol("svm_cifar10_kmeans_400pc", "cifar10", "kmeans", "cifar10_labels_per_class",
             "Table 1: 1 Layer K-means baseline, CIFAR-10, 400 labels per class"),
    Protocol("svm_cifar10_kmeans_all", "cifar10", "kmeans", None,
             "Table 1: 1 Layer K-means baseline, CIFAR-10, all training labels"),
]}

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
SOLVER_NAMES = {  # as recorded in the result JSON
    "dual_cd": "dcgan_repro.svm dual coordinate descent on the Gram matrix (liblinear's LinearSVC(dual=True) "
               "algorithm: squared hinge, one-vs-rest, L2, regularised intercept)",
    "torch": "dcgan_repro.svm Newton-CG with line search, liblinear >= 2.40's primal method, each CG step refined over "
             "the last two steps (LinearSVC's objective: squared hinge, one-vs-rest, L2, regularised intercept)",
    "liblinear": "sklearn.svm.LinearSVC (liblinear; squared hinge, one-vs-rest, L2, intercept)",
}
_TRON_ETA = (1e-4, 0.25, 0.75)  # liblinear tron.cpp: step acceptance / trust-region update thresholds
_TRON_SIGMA = (0.25, 0.5, 4.0)  # liblinear tron.cpp: trust-region shrink / grow factors
_TRON_EPS_CG = 0.1  # liblinear: relative accuracy of each truncated-CG Newton step
_TRON_ALPHA_PCG = 0.01  # liblinear: diagonal preconditioner M = (1 - a) I + a diag(H)
_NEWTON_EPS_CG = 0.5  # liblinear newton.cpp (line-search Newton, its primal solver since 2.40): CG accuracy
_NEWTON_ETA = 0.01  # liblinear linesearch_and_update: Armijo sufficient-decrease constant
_NEWTON_MAX_HALVINGS = 20  # liblinear: max_num_linesearch (step 1, 1/2, 1/4, ...)
NEWTON_METHODS = ("subspace", "line_search", "trust_region")
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


# --- the dual solver (small and medium N) ------------------------------------------------------------
#
# The label-draw protocols fit 1,000-4,000 rows of 7,168-28,672 features ~170 times each (10 selection draws x
# 7 values of C + 100 final draws). There the primal problem is badly conditioned (non-negative, strongly
# correlated features): measured on the benchmark's features at 2,000 x 28,672, C = 1e-3, 1 thread, liblinear's
# own primal TRON (LinearSVC(dual=False)) took 248 s and 102 Newton iterations, our TRON 343 s, while
# liblinear's dual coordinate descent (LinearSVC(dual=True), what the authors' 2015 scikit-learn ran) took
# 36 s. :func:`_dual_cd` is that algorithm on the N x N Gram matrix, computed once per draw and shared by every
# C: each coordinate step then costs O(N K) instead of O(F K).

GRAM_MAX_BYTES = 2 << 30  # largest float64 Gram matrix solver "auto" builds (N <= 16,384 rows)
_DUAL_BLOCK = 64  # rows per block: sequential steps inside, one (N, b) x (b, K) product to apply them


def gram_matrix(X: np.ndarray, device: torch.device | str = "cpu", block_bytes: int = 256 << 20) -> np.ndarray:
    """Q = X_aug X_aug^T (N, N) float64 for the rows of X plus a constant feature 1 (the regularised intercept,
    liblinear's bias = 1), from float32 products on ``device`` in row blocks (X: array, memmap or row view)."""
    N, F = X.shape
    Q = np.empty((N, N))
    rows = max(1, block_bytes // (4 * max(F, 1)))
    device = torch.device(device)
    for i in range(0, N, rows):
        xi = torch.from_numpy(np.array(X[i:i + rows], np.float32)).to(device)  # (b_i, F), a writable copy
        for j in range(0, i + 1, rows):
            xj = xi if j == i else torch.from_numpy(np.array(X[j:j + rows], np.float32)).to(device)
            q = (xi @ xj.T).double().cpu().numpy() + 1.0  # (b_i, b_j)
            Q[i:i + len(xi), j:j + len(xj)] = q
            Q[j:j + len(xj), i:i + len(xi)] = q.T
    return Q


class _GramRows:
    """Row access of :func:`_dual_cd` through the Gram matrix Q (N, N) of the augmented rows: V = Q (A * Y)
    (N, K) holds x_i . w_k for every row, each step costs O(N K) (no feature is read)."""

    def __init__(self, Q: np.ndarray, K: int):
        self.Q, self.V = Q, np.zeros((len(Q), K))
        self.sqnorm = np.diag(Q).copy()  # (N,) ||x_aug_i||^2

    def start(self, AY: np.ndarray) -> None:
        self.V = self.Q @ AY  # (N, K)

    def block(self, blk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.Qb = self.Q[blk]  # (b, N)
        return self.V[blk], self.Qb[:, blk]  # (b, K) x_i . w_k now, (b, b) Gram of the block

    def apply(self, U: np.ndarray) -> None:
        self.V += self.Qb.T @ U  # (N, b) x (b, K): every row's x . w after the block's steps


class _StreamRows:
    """Row access of :func:`_dual_cd` through the primal weights: W (K, F+1) = sum_i a_ik y_ik x_aug_i is kept
    (float64, with a float32 copy for the products) and each block's rows are read from X (a memmap or array,
    never copied whole): O(b F (K + b)) per block, memory O(F K) -- for N too large for a Gram matrix."""

    def __init__(self, X: np.ndarray, K: int, block_bytes: int = 256 << 20):
        self.X = X
        N, F = X.shape
        self.W = np.zeros((K, F + 1))  # (K, F+1) float64; last column: intercept
        self.Wt = np.zeros((F, K), np.float32)  # (F, K) float32 copy of W[:, :F].T
        self.sqnorm = np.empty(N)
        rows = max(1, block_bytes // (4 * max(F, 1)))
        for s in range(0, N, rows):
            xc = np.asarray(X[s:s + rows], np.float32)
            self.sqnorm[s:s + len(xc)] = np.einsum("ij,ij->i", xc, xc, dtype=np.float64) + 1.0

    def start(self, AY: np.ndarray) -> None:
        coef, icpt = _primal_from_dual(self.X, AY)
        self.W[:, :-1], self.W[:, -1] = coef, icpt
        self.Wt[:] = coef.T

    def block(self, blk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        srt = np.argsort(blk)
        xb = np.empty((len(blk), self.X.shape[1]), np.float32)  # (b, F) in blk's order
        xb[srt] = np.asarray(self.X[blk[srt]], np.float32)  # rows read in file order
        self.xb = xb
        return ((xb @ self.Wt).astype(np.float64) + self.W[:, -1],  # (b, K)
                (xb @ xb.T).astype(np.float64) + 1.0)  # (b, b)

    def apply(self, U: np.ndarray) -> None:
        self.W[:, :-1] += (U.T.astype(np.float32) @ self.xb).astype(np.float64)  # (K, F)
        self.W[:, -1] += U.sum(0)
        self.Wt[:] = self.W[:, :-1].T


def _dual_cd(rows: _GramRows | _StreamRows, Y: np.ndarray, C: float, tol: float, max_iter: int, seed: int,
             block: int = _DUAL_BLOCK, start: np.ndarray | None = None) -> dict[str, Any]:
    """liblinear's dual coordinate descent for the L2-loss SVM (``solve_l2r_l1l2_svc``, Hsieh et al. 2008), the
    K one-vs-rest problems at once; ``rows`` gives x_i . w_k and the Gram matrix of each block (:class:`_GramRows`
    or :class:`_StreamRows`: the same steps, in the same order); ``Y`` (N, K) +-1.

    Dual of class k: min 0.5 a^T (Y_k Q Y_k + I / (2C)) a - sum(a), a >= 0; w_k = sum_i a_ik y_ik x_i. Every
    epoch visits the rows in a fresh random order (seeded) and sets each a_ik to its exact coordinate minimum;
    rows are taken ``block`` at a time, sequentially inside a block (the block's Gram sub-matrix carries the
    earlier steps), so the result is that of one-row-at-a-time coordinate descent. A class stops when its
    projected gradients span at most ``tol`` (liblinear's rule with LinearSVC's tol; no shrinking, so every
    variable is checked every epoch). ``start`` (N, K) >= 0: dual variables to start from (a warm start: any
    a >= 0 is feasible, e.g. the solution for a smaller C). Returns the dual variables, epochs, the last gaps
    and convergence.
    """
    # Every product inside is tiny ((N, 64) x (64, K) per block) and runs between sequential steps: BLAS threads
    # only add wake-up and synchronisation costs there. 10 epochs at 4,000 rows with the other core busy (as when
    # Snakemake runs other jobs): 4.33 s with NumPy's OpenBLAS on its default 2 threads, 1.2-1.5 s on 1; on an
    # idle machine no difference (0.5-0.7 s either way).
    with threadpool_limits(limits=1, user_api="blas"):
        return _dual_cd_steps(rows, Y, C, tol, max_iter, seed, block, start)


def _dual_cd_steps(rows: _GramRows | _StreamRows, Y: np.ndarray, C: float, tol: float, max_iter: int, seed: int,
                   block: int, start: np.ndarray | None) -> dict[str, Any]:
    N, K = Y.shape
    Dii = 0.5 / C
    invq = 1.0 / (rows.sqnorm + Dii)  # (N,)
    A = np.zeros((N, K))  # (N, K) dual variables
    if start is not None:
        A[:] = np.maximum(start, 0.0)
        rows.start(A * Y)
    live = np.ones(K)  # (K,) 1 while class k runs
    rng = np.random.default_rng(seed)
    gap = np.full(K, np.inf)
    epoch = 0
    while epoch < max_iter and live.any():
        epoch += 1
        order = rng.permutation(N)
        PGmax, PGmin = np.full(K, -np.inf), np.full(K, np.inf)
        for b0 in range(0, N, block):
            blk = order[b0:b0 + block]
            Vb, Qbb = rows.block(blk)  # (b, K) x . w at the block's start, (b, b)
            Yb, A0, iq = Y[blk], A[blk], invq[blk]
            c = A0 * Dii - 1.0  # (b, K)
            Ab, U, G = A0.copy(), np.zeros((len(blk), K)), np.empty((len(blk), K))
            for j in range(len(blk)):
                G[j] = Yb[j] * (Vb[j] + Qbb[j, :j] @ U[:j]) + c[j]  # (K,) gradient of a_jk
                step = (np.maximum(Ab[j] - G[j] * iq[j], 0.0) - Ab[j]) * live  # (K,) exact coordinate step
                Ab[j] += step
                U[j] = step * Yb[j]
            A[blk] = Ab
            rows.apply(U)
            PG = np.where(A0 > 0, G, np.minimum(G, 0.0))  # (b, K) projected gradients (liblinear: before the step)
            PGmax, PGmin = np.maximum(PGmax, PG.max(0)), np.minimum(PGmin, PG.min(0))
        gap = np.where(live > 0, PGmax - PGmin, gap)
        live[gap <= tol] = 0.0
        log.debug("dual CD epoch %d: largest projected-gradient gap %.2e, %d/%d classes done", epoch,
                  float(gap.max()), int(K - live.sum()), K)
    return {"A": A, "epochs": epoch, "gap": gap, "converged": bool((gap <= tol).all())}


def _primal_from_dual(X: np.ndarray, AY: np.ndarray, block_bytes: int = 256 << 20) -> tuple[np.ndarray, ...]:
    """w_k = sum_i a_ik y_ik x_i and b_k = sum_i a_ik y_ik (augmented feature 1), one streamed pass over X."""
    K, F = AY.shape[1], X.shape[1]
    coef, rows = np.zeros((K, F)), max(1, block_bytes // (4 * max(F, 1)))
    for s in range(0, len(AY), rows):
        coef += (AY[s:s + rows].T.astype(np.float32) @ np.asarray(X[s:s + rows], np.float32)).astype(np.float64)
    return coef, AY.sum(0)


def resolve_solver(solver: str, n_rows: int) -> str:
    """``auto``: the dual solver when the Gram matrix of ``n_rows`` fits ``GRAM_MAX_BYTES``, else Newton-CG."""
    if solver not in SOLVERS:
        raise ValueError(f"svm.solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if solver == "auto":
        return "dual_cd" if n_rows * n_rows * 8 <= GRAM_MAX_BYTES else "torch"
    return solver


def fit_l2svm(X: np.ndarray, y: np.ndarray, C: float, *, n_classes: int, max_iter: int = 1000, seed: int = 0,
              solver: str = "torch", tol: float = SOLVER_TOL, device: torch.device | str = "cpu",
              init: LinearModel | None = None, hessian_dtype: torch.dtype | str | None = "auto",
              hessian_cache_bytes: int = HESSIAN_CACHE_BYTES, newton: str = "subspace",
              gram: np.ndarray | None = None, dual_start: np.ndarray | None = None,
              info: dict | None = None) -> LinearModel:
    """One-vs-rest L2-SVM (squared hinge, L2 penalty, regularised intercept): LinearSVC(C=C)'s objective.

    ``X``: (N, F) features (a read-only memmap is fine: it is read in row chunks, never copied), ``y``: (N,)
    labels in [0, n_classes). Returns ``(W, b)`` with one row per class (W (n_classes, F) float32, b (n_classes,));
    a class absent from ``y`` gets W = 0, b = -inf (never predicted).

    ``solver="dual_cd"``: :func:`_dual_cd` on the Gram matrix ``gram`` of X's rows (:func:`gram_matrix`; computed
    here when not given and it fits ``GRAM_MAX_BYTES``, so a C grid can share one; otherwise the streaming form,
    which keeps w and reads X), LinearSVC(dual=True)'s algorithm and stopping rule (``tol``, ``max_iter``
    epochs); memory O(N^2) with the Gram matrix. ``solver="auto"``: dual_cd while its Gram matrix fits
    ``GRAM_MAX_BYTES``, else torch.
    ``dual_start``: dual variables (N, present classes) to start from, e.g. ``info["dual"]`` of the fit for a
    smaller C on the same rows (warm start along a C grid).
    ``solver="torch"``: Newton-CG as liblinear's primal solver, all classes together, on ``device``;
    ``newton="subspace"`` (default: liblinear >= 2.40's line-search method with each truncated CG step replaced by
    the model minimiser over it and the last two steps, :func:`_newton_ls` with memory; 1.6x faster at 10,000 x
    28,672), ``"line_search"`` (liblinear >= 2.40's method as it is) or ``"trust_region"`` (TRON, the method
    before it, :func:`_tron`): the same optimum and stopping rule, different paths to it. Convergence:
    class k stops when ||grad f_k(w_k)|| <= tol * max(min(#pos_k, #neg_k), 1) / N * ||grad f_k(0)|| (liblinear's
    primal rule with LinearSVC's tol = 1e-4), or after ``max_iter`` Newton iterations (then a warning).
    ``init``: a model to start from (warm start along a C grid, same classes).
    ``hessian_dtype``: precision of the Hessian-vector products inside CG (``auto``: bfloat16 where the device
    has native bf16, :func:`runtime.native_bf16`, else X's own; None = X's own dtype, i.e. exactly liblinear's
    method; measured on an AVX2-only CPU, a 4,096 x 28,672 bf16 product ran at half the fp32 speed); the
    objective and gradient, hence the stopping rule and the solution, are always float32-exact.
    ``hessian_cache_bytes``: largest compact copy of the margin rows kept for them (bigger: products stream X).
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
        if gram is None and len(X) ** 2 * 8 <= GRAM_MAX_BYTES:
            gram = gram_matrix(X, device)
        if gram is not None and gram.shape != (len(X), len(X)):
            raise ValueError(f"gram has shape {gram.shape}, expected ({len(X)}, {len(X)}) for X's rows")
        Y = np.where(y[:, None] == classes[None, :], 1.0, -1.0)  # (N, K)
        rows = _GramRows(gram, len(classes)) if gram is not None else _StreamRows(X, len(classes))
        if dual_start is not None and dual_start.shape != Y.shape:
            raise ValueError(f"dual_start has shape {dual_start.shape}, expected {Y.shape} (rows x present classes)")
        res = _dual_cd(rows, Y, C, tol, max_iter, seed, start=dual_start)
        coef, icpt = _primal_from_dual(X, res["A"] * Y)  # w from the dual variables (also ends W's drift)
        if not res["converged"]:
            log.warning("L2-SVM dual CD (C=%g, N=%d, F=%d) stopped after svm.max_iter = %d epochs before its "
                        "stopping rule (projected-gradient gap %.2e > tol %g)", C, *X.shape, max_iter,
                        float(res["gap"].max()), tol)
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
        tol_k = tol * torch.clamp(torch.minimum(n_pos, len(y) - n_pos), min=1).double() / len(y)
        if newton not in NEWTON_METHODS:
            raise ValueError(f"newton must be one of {', '.join(NEWTON_METHODS)}, got {newton!r}")
        if newton == "trust_region":
            res = _tron(obj, W0, tol_k, max_iter)
        else:
            res = _newton_ls(obj, W0, tol_k, max_iter, memory=_NEWTON_MEMORY if newton == "subspace" else 0)
        if not bool(res["converged"].all()):
            why = (f"svm.max_iter = {max_iter} Newton iterations" if res["iterations"] >= max_iter else
                   f"no further progress at float32 precision after {res['iterations']} Newton iterations")
            log.warning("L2-SVM (C=%g, N=%d, F=%d) stopped before its stopping rule (tol %g): %s; the worst "
                        "class's gradient is %.1fx its target", C, *X.shape, tol, why,
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
    """Class predictions argmax(X W^T + b) for an in-memory (N, F) block."""
    W, b = model
    return np.argmax(X @ W.T + b, axis=1)  # (N, K) -> (N,)


def error_pct(X: np.ndarray, y: np.ndarray, models: Sequence[LinearModel],
              block_rows: int = SCORE_BLOCK_ROWS) -> np.ndarray:
    """Error (%) of each linear model on (X, y), in one streamed pass over the rows of X (a memmap is fine)."""
    W = np.concatenate([m[0] for m in models])  # (M*K, F)
    b = np.concatenate([m[1] for m in models])  # (M*K,)
    n_models, n_classes = len(models), len(models[0][1])
    wrong = np.zeros(n_models, np.int64)
    for start in range(0, len(X), block_rows):
        xb = np.asarray(X[start:start + block_rows], np.float32)  # (B, F)
        scores = (xb @ W.T + b).reshape(len(xb), n_models, n_classes)  # (B, M, K)
        wrong += (scores.argmax(2) != np.asarray(y[start:start + block_rows])[:, None]).sum(0)  # (M,)
    return 100.0 * wrong / len(X)


# --- splits and label draws -------------------------------------------------------------------------


def split_train_validation(n_train: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the training indices with ``seed``; first ``validation_size`` = validation, rest = labelled pool.

    Returns (validation indices sorted, pool indices sorted) (SVHN code: seed-42 shuffle, first 10,000).
    """
    if not 0 < validation_size < n_train:
        raise ValueError(f"svm.validation_size = {validation_size} must be between 1 and the number of training "
                         f"images minus one ({n_train - 1})")
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[:validation_size]), np.sort(perm[validation_size:])


def class_pools(y: np.ndarray, pool: np.ndarray, n_classes: int, labels_per_class: int,
                class_names: Sequence[str] | None = None, where: str = "the labelled pool",
                setting: str = "labels per class") -> list[np.ndarray]:
    """Indices of each class within ``pool``; an error naming every class with fewer than ``labels_per_class``
    (and the config ``setting`` that asked for them)."""
    pools = [pool[y[pool] == k] for k in range(n_classes)]
    short = [(k, len(p)) for k, p in enumerate(pools) if len(p) < labels_per_class]
    if short:
        names = [f"class {k}" + (f" ({class_names[k]})" if class_names else "") + f" has {n}"
                 for k, n in short]
        raise ValueError(f"cannot draw {labels_per_class} labels per class from {where}: "
                         f"{'; '.join(names)} images (lower {setting} or svm.validation_size)")
    return pools


def draw_labelled(pools: Sequence[np.ndarray], labels_per_class: int, rng: np.random.Generator) -> np.ndarray:
    """One draw of ``labels_per_class`` distinct indices from every class pool, returned sorted."""
    return np.sort(np.concatenate([rng.choice(p, labels_per_class, replace=False) for p in pools]))


# --- protocols --------------------------------------------------------------------------------------


def _open_features(path: io.PathLike, n_rows: int) -> np.ndarray:
    """Memory-mapped float32 (N, F) feature file whose rows must be the split's images."""
    x = io.load_npy(path)
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"feature file {path}: expected float32 N x F, got {x.dtype} {x.shape}")
    if len(x) != n_rows:
        raise ValueError(f"feature file {path} has {len(x)} rows but its dataset split has {n_rows} labelled "
                         "images; re-run extract_features")
    return x


ROWS_IN_MEMORY_BYTES = 1 << 30  # label draws up to this size are copied into memory; bigger ones are row views


class _RowSubset:
    """Rows ``idx`` (sorted) of a memory-mapped (N, F) array, read chunk by chunk on slicing (never copied whole).

    Supports what the solver and the scorer use: ``len``, ``shape``, ``dtype``, ``ndim`` and ``[start:stop]``.
    """

    def __init__(self, X: np.ndarray, idx: np.ndarray):
        self.X, self.idx = X, np.sort(idx)
        self.shape, self.dtype, self.ndim = (len(self.idx), X.shape[1]), X.dtype, 2

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("_RowSubset supports slices only")
        return np.asarray(self.X[self.idx[key]])  # (n, F): this chunk's rows, in file order

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # liblinear needs the rows in memory anyway
        return np.asarray(self.X[self.idx], dtype)


def _rows(X: np.ndarray, idx: np.ndarray) -> np.ndarray | _RowSubset:
    """Rows ``idx`` of the feature memmap: all of it as is, a small draw copied (sorted: read in file order),
    a big one as a chunk-reading view (the 45,000-image pool of CIFAR-10 would be 5 GB)."""
    if len(idx) == len(X) and np.array_equal(np.sort(idx), np.arange(len(X))):
        return X
    if len(idx) * X.shape[1] * 4 <= ROWS_IN_MEMORY_BYTES:
        return np.asarray(X[np.sort(idx)], np.float32)
    return _RowSubset(X, idx)


def _fit_draws(Xtr: np.ndarray, ytr: np.ndarray, draws: Sequence[np.ndarray], cs: Sequence[float], n_classes: int,
               cfg: dict, device: torch.device | str = "cpu") -> list[list[LinearModel]]:
    """models[i][j]: C = cs[i] fitted on draw j. The C values are fitted in increasing order; with the torch and
    dual_cd solvers each starts from the previous solution (warm start), and dual_cd computes one Gram matrix per
    draw for all of them."""
    models: list[list[LinearModel] | None] = [[None] * len(draws) for _ in cs]
    order = np.argsort(cs, kind="stable")  # increasing C
    for j, idx in enumerate(draws):
        idx = np.sort(idx)
        X, y = _rows(Xtr, idx), ytr[idx]
        solver = resolve_solver(cfg.get("solver", "auto"), len(idx))
        fits_gram = len(idx) ** 2 * 8 <= GRAM_MAX_BYTES
        gram = gram_matrix(X, device) if solver == "dual_cd" and fits_gram else None  # one per draw, every C
        prev: LinearModel | None = None
        info: dict = {}
        t0 = time.time()
        for i in order:  # each C starts from the previous (smaller) C's solution
            dual = info.get("dual")
            info = {}
            prev = models[i][j] = fit_l2svm(X, y, cs[i], n_classes=n_classes, max_iter=cfg["max_iter"],
                                            seed=cfg["seed"], solver=solver, device=device,
                                            init=prev if solver == "torch" else None, gram=gram,
                                            dual_start=dual, info=info)
            if "passes" in info:
                log.debug("C=%g: %d Newton iterations, %.0f passes over X, %.1f s", cs[i], info["iterations"],
                          info["passes"], info["seconds"])
            elif "dual" in info:
                log.debug("C=%g: %d dual CD epochs, %.1f s", cs[i], info["iterations"], info["seconds"])
        log.info("draw %d/%d fitted (%d labels, %d values of C, %s) in %.1f s", j + 1, len(draws), len(idx),
                 len(cs), solver, time.time() - t0)
    return models


def check_c_grid(c_grid: Sequence[float]) -> list[float]:
    """The C values of config ``svm.c_grid`` as floats; an error naming the setting unless they are distinct,
    positive and finite (at least one)."""
    cs = [float(c) for c in c_grid]
    bad = [c for c in cs if not (c > 0 and math.isfinite(c))]
    if not cs or bad or len(set(cs)) != len(cs):
        raise ValueError(f"svm.c_grid = {list(c_grid)}: needs one or more distinct positive finite values of C "
                         f"(the authors' grid: 1e-4 ... 1e-2)" + (f"; not allowed: {bad}" if bad else ""))
    return cs


def model_feature_dim(run: dict, pool: int = 4) -> int:
    """Length of the Sec. 5.1 feature vector of the discriminator that run config ``run`` builds (no weights
    needed): 28,672 for the ImageNet D at ndf=128, 7,168 for the SVHN D at ndf=64."""
    _, netD = models.build_models(run)
    return features.feature_dim(netD, pool)


def _labels(data_dir: io.PathLike, split: str) -> np.ndarray:
    y = io.read_dataset(data_dir, split)[1]
    if len(y) and y.min() < 0:
        raise ValueError(f"dataset {data_dir} split {split} has unlabelled images (label -1); the SVM needs labels")
    return y


def fit_and_score(protocol: str, train_feats_path: io.PathLike, test_feats_path: io.PathLike,
                  data_dir: io.PathLike, svm_cfg: dict, out_path: io.PathLike, common: dict,
                  feature_model: dict | None = None, feature_pool: int = 4) -> dict[str, Any]:
    """Rule ``fit_svm``: run one protocol of :data:`PROTOCOLS`, write its JSON (docs/CONTRACTS.md) and return it.

    ``svm_cfg`` is config ``svm``; ``data_dir`` the labelled dataset whose train/test splits the feature files'
    rows describe (labels and ``stand_in`` are read from it). ``feature_model``: the run config of the D the
    features should come from (with ``feature_pool``, config ``features.pool``): feature files of another length are
    refused before anything is fitted. The solver (config ``svm.solver``) runs on ``common["device"]``.
    """
    t0 = time.time()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown SVM protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[protocol]
    meta = io.read_meta(data_dir)
    if meta.get("name", proto.dataset) != proto.dataset:
        raise ValueError(f"protocol {protocol} needs dataset {proto.dataset!r} but {data_dir} holds "
                         f"{meta.get('name')!r}")
    ytr, yte = _labels(data_dir, "train"), _labels(data_dir, "test")
    n_classes = int(meta.get("n_classes") or int(max(ytr.max(), yte.max())) + 1)
    class_names = meta.get("class_names")
    cs = check_c_grid(svm_cfg["c_grid"])
    solver = svm_cfg.get("solver", "auto")
    resolve_solver(solver, 0)  # an unknown solver fails here, before anything is read
    device = runtime.resolve_device(common.get("device", "cpu")) if solver != "liblinear" else torch.device("cpu")
    Xtr = _open_features(train_feats_path, len(ytr))
    dim = Xtr.shape[1]
    if feature_model is not None:
        want = model_feature_dim(feature_model, feature_pool)
        if dim != want:
            raise ValueError(f"feature file {train_feats_path} has {dim} dimensions but the {proto.features_run!r} "
                             f"discriminator (runs.{proto.features_run}: model {feature_model.get('model')!r}, "
                             f"ndf {feature_model.get('ndf')}) with features.pool = {feature_pool} gives {want}: "
                             "it was extracted with another model or pool size; re-run extract_features")
    val, pool = split_train_validation(len(ytr), svm_cfg["validation_size"], svm_cfg["seed"])
    Xva = _rows(Xtr, val)  # (n_val, F): held in memory, scored for every model
    select_rng, final_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(svm_cfg["seed"]).spawn(2))
    lpc = svm_cfg[proto.labels_key] if proto.labels_key else None
    log.info("%s: %d train (%d validation, %d pool), %d test, %d features, %d classes, C grid %s", protocol,
             len(ytr), len(val), len(pool), len(yte), dim, n_classes, cs)

    # 1. choose C on the validation split (the test set is not opened yet)
    if lpc is not None:
        pools = class_pools(ytr, pool, n_classes, lpc, class_names, f"the {len(pool)}-image labelled pool of "
                            f"{data_dir} (train minus svm.validation_size)", f"svm.{proto.labels_key}")
        sel = [draw_labelled(pools, lpc, select_rng) for _ in range(svm_cfg["selection_draws"])]
    else:
        sel = [pool]
    models = _fit_draws(Xtr, ytr, sel, cs, n_classes, svm_cfg, device)
    val_err = error_pct(Xva, ytr[val], [m for per_c in models for m in per_c]).reshape(len(cs), len(sel))
    mean_val = val_err.mean(1)
    best = int(np.argmin(mean_val))  # ties: the smaller C (grid order)
    C = cs[best]
    for c, e in zip(cs, val_err):
        log.info("C=%g: validation error %.2f%% +- %.2f", c, e.mean(), 1.96 * e.std())
    log.info("chosen C = %g", C)
    if len(cs) > 1 and best in (0, len(cs) - 1):
        log.warning("chosen C = %g is at the edge of svm.c_grid %s: the best C may lie beyond it", C, cs)
    del Xva, models

    # 2. final fits with that C, then the only read of the test set
    if lpc is not None:
        final = [draw_labelled(pools, lpc, final_rng) for _ in range(svm_cfg["final_draws"])]
    else:
        final = [np.arange(len(ytr))]  # all training images, validation included (paper: all 50,000)
    final_models = _fit_draws(Xtr, ytr, final, [C], n_classes, svm_cfg, device)[0]
    Xte = _open_features(test_feats_path, len(yte))
    if Xte.shape[1] != dim:
        raise ValueError(f"feature files {train_feats_path} ({dim} dims) and {test_feats_path} ({Xte.shape[1]} "
                         "dims) come from different models; re-run extract_features")
    test_err = error_pct(Xte, yte, final_models)
    log.info("test error %.2f%% +- %.2f over %d fits", test_err.mean(), 1.96 * test_err.std(), len(test_err))

    result = {
        "protocol": protocol,
        "dataset": proto.dataset,
        "features": proto.features_run,
        "feature_dim": dim,
        "labels_per_class": lpc,
        "C": C,
        "validation_error_pct": {f"{c:g}": float(e) for c, e in zip(cs, mean_val)},
        "test_error_pct": float(test_err.mean()),
        "test_error_ci95_pct": float(1.96 * test_err.std()) if lpc is not None else None,
        "test_accuracy_pct": float(100.0 - test_err.mean()),
        "draws": len(test_err),
        "stand_in": meta.get("stand_in"),
        "paper": proto.paper,
        "solver": SOLVER_NAMES[resolve_solver(solver, len(final[0]))],
        "n_validation": len(val),
        "n_labelled_pool": len(pool),
        "n_test": len(yte),
        "final_fit": "fresh label draws" if lpc is not None else "all training images, validation included",
        "provenance": io.provenance(config={"protocol": protocol, "svm": svm_cfg, **common}, seed=svm_cfg["seed"],
                                    inputs={"train_features": train_feats_path, "test_features": test_feats_path,
                                            "data": data_dir}, started=t0),
    }
    io.write_json(out_path, result)
    return result


# --- Table 2 baseline: the SVHN D architecture trained supervised -----------------------------------


class SupervisedCNN(nn.Module):
    """D's convolutional trunk with a ``n_classes``-way linear head in place of its 1-logit head (Table 2).

    ``forward``: x (N, C, H, W) -> netD.features(x)[-1] (N, C_L, H_L, W_L) -> flatten -> dropout -> Linear
    -> logits (N, n_classes). The trunk's own 1-logit head is left unused.
    """

    def __init__(self, netD: nn.Module, n_classes: int, dropout: float):
        super().__init__()
        self.trunk = netD
        c, h, w = netD.image_shape
        with torch.no_grad():
            was = netD.training
            netD.eval()
            flat = netD.features(torch.zeros(2, c, h, w, device=next(netD.parameters()).device))[-1][0].numel()
            netD.train(was)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(flat, n_classes)  # (C_L*H_L*W_L) -> n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk.features(x)[-1].flatten(1)  # (N, C_L*H_L*W_L); (N, 4096) for svhn32 at ndf=64
        return self.head(self.drop(h))  # (N, n_classes)


def sample_hparams(rng: np.random.Generator, cfg: dict) -> dict[str, float]:
    """One random-search point: lr and weight decay log-uniform, dropout uniform (ranges from config)."""
    for key in ("lr_range", "dropout_range", "weight_decay_range"):
        if cfg[key][0] > cfg[key][1]:
            raise ValueError(f"config key 'supervised_cnn.{key}': {cfg[key]} must be [low, high] with low <= high")

    def log_uniform(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    return {"lr": log_uniform(*cfg["lr_range"]), "dropout": float(rng.uniform(*cfg["dropout_range"])),
            "weight_decay": log_uniform(*cfg["weight_decay_range"])}


def _cnn_error_pct(net: nn.Module, images: np.ndarray, labels: np.ndarray, output_range: str,
                   device: torch.device, batch: int = 1000) -> float:
    net.eval()
    wrong = 0
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = models.to_model_input(np.asarray(images[s:s + batch]), output_range).to(device)  # (B, C, H, W)
            wrong += int((net(x).argmax(1).cpu().numpy() != labels[s:s + batch]).sum())
    return 100.0 * wrong / len(images)


def train_cnn_trial(run: dict, hparams: dict[str, float], x: np.ndarray, y: np.ndarray, *, n_classes: int,
                    epochs: int, batch_size: int, seed: int, device: torch.device,
                    precision: str = "fp32") -> nn.Module:
    """Train one :class:`SupervisedCNN` (built by ``models.build_models(run)``) with Adam(lr, beta1 of the run,
    weight decay added to the gradient) and cross-entropy, minibatches in a seeded order; returns it in eval mode.
    """
    runtime.seed_everything(seed)
    _, netD = models.build_models(run)
    net = SupervisedCNN(netD.to(device), n_classes, hparams["dropout"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=hparams["lr"], betas=(run["beta1"], 0.999),
                           weight_decay=hparams["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    xs = models.to_model_input(x, netD.output_range).to(device)  # (N, C, H, W): the labelled draw fits in memory
    ys = torch.as_tensor(y, dtype=torch.long, device=device)  # (N,)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xs), generator=gen).split(batch_size):
            if len(idx) < 2:  # BN needs two samples
                continue
            idx = idx.to(device)
            with runtime.autocast(device, precision):
                loss = F.cross_entropy(net(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def train_supervised_cnn(data_dir: io.PathLike, out_path: io.PathLike, cnn_cfg: dict, svm_cfg: dict, run: dict,
                         common: dict) -> dict[str, Any]:
    """Rule ``train_supervised_cnn`` (Table 2: "supervised CNN with the same architecture", 28.87%).

    The split is the SVM's (``svm.seed`` shuffle, first ``svm.validation_size`` = validation); one draw of
    ``svm.svhn_labels_per_class`` labels per class from the pool (seeded by ``supervised_cnn.seed``) is the
    training set. ``supervised_cnn.trials`` random hyperparameter sets (:func:`sample_hparams`) are each trained
    ``epochs`` epochs and scored on validation; the best trial is then scored once on the test set.
    """
    t0 = time.time()
    device = runtime.resolve_device(common["device"])
    precision = runtime.job_precision(common, device)
    meta = io.read_meta(data_dir)
    xtr, ytr = io.read_dataset(data_dir, "train")
    xte, yte = io.read_dataset(data_dir, "test")
    n_classes = int(meta.get("n_classes") or int(ytr.max()) + 1)
    lpc = svm_cfg["svhn_labels_per_class"]
    val, pool = split_train_validation(len(ytr), svm_cfg["validation_size"], svm_cfg["seed"])
    seeds = np.random.SeedSequence(cnn_cfg["seed"]).spawn(3)
    pools = class_pools(ytr, pool, n_classes, lpc, meta.get("class_names"), f"the labelled pool of {data_dir}",
                        "svm.svhn_labels_per_class")
    lab = draw_labelled(pools, lpc, np.random.default_rng(seeds[0]))
    x_lab, y_lab = np.asarray(xtr[lab]), ytr[lab]
    x_val, y_val = np.asarray(xtr[val]), ytr[val]
    hp_rng = np.random.default_rng(seeds[1])
    trial_seeds = seeds[2].generate_state(cnn_cfg["trials"])
    log.info("supervised CNN: %d labelled, %d validation, %d trials x %d epochs on %s", len(lab), len(val),
             cnn_cfg["trials"], cnn_cfg["epochs"], device)
    trials, best, best_state = [], None, None
    for t in range(cnn_cfg["trials"]):
        hp = sample_hparams(hp_rng, cnn_cfg)
        net = train_cnn_trial(run, hp, x_lab, y_lab, n_classes=n_classes, epochs=cnn_cfg["epochs"],
                              batch_size=cnn_cfg["batch_size"], seed=int(trial_seeds[t]), device=device,
                              precision=precision)
        err = _cnn_error_pct(net, x_val, y_val, net.trunk.output_range, device)
        trials.append({"hparams": hp, "validation_error_pct": err, "seed": int(trial_seeds[t])})
        log.info("trial %d/%d %s: validation error %.2f%%", t + 1, cnn_cfg["trials"], hp, err)
        if best is None or err < trials[best]["validation_error_pct"]:
            best, best_state = t, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)  # same architecture for every trial (dropout has no parameters)
    test_err = _cnn_error_pct(net, xte, yte, net.trunk.output_range, device)  # the only use of the test set
    log.info("best trial %d: validation %.2f%%, test %.2f%%", best + 1, trials[best]["validation_error_pct"],
             test_err)
    result = {
        "protocol": "supervised_cnn_svhn_1000",
        "validation_error_pct": trials[best]["validation_error_pct"],
        "test_error_pct": test_err,
        "best_trial": best,
        "labels_per_class": lpc,
        "n_validation": len(val),
        "trials": trials,
        "stand_in": meta.get("stand_in"),
        "provenance": io.provenance(config={"supervised_cnn": cnn_cfg, "svm": svm_cfg, "model": run, **common},
                                    seed=cnn_cfg["seed"], inputs={"data": data_dir}, started=t0),
    }
    io.write_json(out_path, result)
    return result
