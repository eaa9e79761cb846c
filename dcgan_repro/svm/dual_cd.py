"""The L2-SVM's dual solver for small and medium N (config ``svm.solver: dual_cd``, what ``auto`` picks while the
Gram matrix fits :data:`GRAM_MAX_BYTES`): liblinear's dual coordinate descent (LinearSVC(dual=True)) on the N x N
Gram matrix of the rows (:func:`gram_matrix`, :class:`_GramRows`), or streaming X when it does not fit
(:class:`_StreamRows`). :func:`dcgan_repro.svm.solvers.fit_l2svm` dispatches to :func:`fit_dual_cd`.

The label-draw protocols fit 1,000-4,000 rows of 7,168-28,672 features ~170 times each (10 selection draws x
7 values of C + 100 final draws). There the primal problem is badly conditioned (non-negative, strongly
correlated features), and liblinear's dual coordinate descent (LinearSVC(dual=True), what the authors' 2015
scikit-learn ran) beats the primal Newton methods there by about 7x (benchmarks/README.md, "Dual coordinate
descent vs primal solvers"). :func:`_dual_cd` is that algorithm on the N x N Gram matrix, computed once per draw
and shared by every C: each coordinate step then costs O(N K) instead of O(F K).

Imports go one way: :mod:`dcgan_repro.svm.solvers` uses this module, never the reverse.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

log = logging.getLogger(__name__)

GRAM_MAX_BYTES = 2 << 30  # largest float64 Gram matrix solver "auto" builds (N <= 16,384 rows)
_DUAL_BLOCK = 64  # rows per block: sequential steps inside, one (N, b) x (b, K) product to apply them
_BLOCK_BYTES = 256 << 20  # float32 rows of X per streamed block (Gram matrix, primal weights, row norms)


def gram_matrix(X: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Q = X_aug X_aug^T (N, N) float64 for the rows of X plus a constant feature 1 (the regularised intercept,
    liblinear's bias = 1), from float32 products on ``device`` in row blocks (X: array, memmap or row view)."""
    N, F = X.shape
    Q = np.empty((N, N))
    rows = max(1, _BLOCK_BYTES // (4 * max(F, 1)))
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

    def __init__(self, X: np.ndarray, K: int):
        self.X = X
        N, F = X.shape
        self.W = np.zeros((K, F + 1))  # (K, F+1) float64; last column: intercept
        self.Wt = np.zeros((F, K), np.float32)  # (F, K) float32 copy of W[:, :F].T
        self.sqnorm = np.empty(N)
        rows = max(1, _BLOCK_BYTES // (4 * max(F, 1)))
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
    earlier steps), so the result is that of one-row-at-a-time coordinate descent (``block=1``, which only the
    tests set, to check exactly that). A class stops when its
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


def _primal_from_dual(X: np.ndarray, AY: np.ndarray) -> tuple[np.ndarray, ...]:
    """w_k = sum_i a_ik y_ik x_i and b_k = sum_i a_ik y_ik (augmented feature 1), one streamed pass over X."""
    K, F = AY.shape[1], X.shape[1]
    coef, rows = np.zeros((K, F)), max(1, _BLOCK_BYTES // (4 * max(F, 1)))
    for s in range(0, len(AY), rows):
        coef += (AY[s:s + rows].T.astype(np.float32) @ np.asarray(X[s:s + rows], np.float32)).astype(np.float64)
    return coef, AY.sum(0)


def fit_dual_cd(X: np.ndarray, y: np.ndarray, classes: np.ndarray, C: float, *, tol: float, max_iter: int, seed: int,
                device: torch.device | str = "cpu", gram: np.ndarray | None = None,
                dual_start: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``solver="dual_cd"`` of :func:`dcgan_repro.svm.solvers.fit_l2svm` for the present ``classes`` of ``y``:
    :func:`_dual_cd` on the Gram matrix ``gram`` (computed here when not given and it fits
    :data:`GRAM_MAX_BYTES`), else the streaming form. Returns (coef (K', F), intercept (K',), :func:`_dual_cd`'s
    result)."""
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
    return coef, icpt, res
