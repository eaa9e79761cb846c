"""Exact streamed 1-nearest-neighbour search: every query's nearest reference, its distance and its label.

A fixed query set is scored against references that arrive in chunks: neither the reference set nor a full
distance matrix is ever held, and each query keeps a running (distance, index) minimum, so the reference set can
be far larger than memory (tens of millions of images). The search is Euclidean on float images (flattened to D
values) and knows nothing of where queries or references come from.

Exactness. A fast matmul pass (fp32, or bf16 with fp32 accumulation) scores every (query, reference) pair;
its rounding error is bounded a priori, so it only nominates the references that could be nearest given that
bound, and those are re-scored exactly as ``sum((q - x)^2)`` in float64 with ties going to the lowest reference
index: the decision equals a brute-force float64 argmin whichever precision ranked the candidates (a float64
reference that sums in another order can differ only where two distances agree to ~15 significant digits).
The bound, the margin argument and the streaming threshold are in :class:`StreamingNN`.

Search ``int8`` (:class:`GreyLevelNN`) is exact with no re-check, for 8-bit images only (pixels k/255, k =
0..255, as float32 ``k / 255``; anything else is refused): squared distances of grey levels k/255 are integers in
units of 1/255^2, computed exactly with ``torch._int_mm`` (int8 x int8 -> int32). Its distances are those of the
grey levels k/255 themselves; the float paths' are those of their fp32 roundings fp32(k/255), which differ by at
most ~7e-6 sqrt(d) in a squared distance d. The two can therefore disagree only where two references' integer
distances are within a few units of 1/255^2 of each other, exact integer ties included (int8 gives those to the
lowest index; the float paths to whichever fp32 rounding happens to be smaller).

Search choice: :func:`resolve_search` turns ``auto`` into the fastest exact search the device has. Errors about
the choice name ``setting`` (default ``argument 'search'``), so a caller can say which config key set it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from dcgan_repro import runtime

U32 = 2.0**-24  # unit roundoff of float32 (24 significant bits)
U64 = 2.0**-53  # unit roundoff of float64
UBF16 = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits)
SAFETY = 1.25  # widens the proven margin: a wider margin only re-checks more candidates, never changes a decision
FLOAT_SEARCH = ("fp32", "bf16")  # candidate pass + float64 re-check (:class:`StreamingNN`), any float data
SEARCH_PRECISIONS = FLOAT_SEARCH + ("int8",)  # int8: exact integer search of 8-bit images (:class:`GreyLevelNN`)
SETTING = "argument 'search'"  # what errors about the search choice name, unless the caller names its config key
BF16_SCALE = 255.0  # bf16 pass works on 255 * x: pixels k/255 become the integers k, exact in bf16


def _gamma(n: int, u: float = U32) -> float:
    """gamma_n = n u / (1 - n u): relative error bound of an n-term sum in any order (Higham, Sec. 3.1)."""
    return n * u / (1.0 - n * u)


@contextlib.contextmanager
def _ieee_fp32_matmul() -> Iterator[None]:
    """Force true fp32 matmuls (no TF32 / implicit bf16) while the fp32 bound is relied on; restore after."""
    knobs = [getattr(torch.backends.cuda, "matmul", None), getattr(torch.backends.mkldnn, "matmul", None)]
    knobs = [k for k in knobs if k is not None and hasattr(k, "fp32_precision")]
    saved = [k.fp32_precision for k in knobs]
    try:
        for k in knobs:
            k.fp32_precision = "ieee"
        yield
    finally:
        for k, v in zip(knobs, saved):
            k.fp32_precision = v


# --- the streaming exact 1-NN ----------------------------------------------------------------------------


@dataclass
class NNResult:
    """Exact 1-NN of every query over the whole streamed reference set."""

    index: np.ndarray  # (Q,) int64: global index of the nearest reference (lowest index among exact ties)
    sqdist: np.ndarray  # (Q,) float64: its squared Euclidean distance, sum((q - x)^2) in float64
    label: np.ndarray  # (Q,) int64: its label
    stats: dict[str, Any] = field(default_factory=dict)  # references seen, pairs re-checked, worst error/bound

    @property
    def dist(self) -> np.ndarray:
        """(Q,) float64 Euclidean distance to the nearest reference."""
        return np.sqrt(self.sqdist)


class StreamingNN:
    """Exact 1-NN of a fixed query set against references that arrive in chunks.

    ``update(X_chunk, y_chunk)`` consumes one chunk (n, ...) of float images (flattened to D); ``result()``
    returns the :class:`NNResult`. Memory: the queries, one reference chunk and one (query tile x reference
    tile) block of ``tile_elems`` scores, whatever the total number of references.

    Fast pass. With scale s (1 for fp32, 255 for bf16, so pixels k/255 become integers, exact in bf16) one
    matmul of augmented operands ``[s q, 1, 1, 1, v_q split in 3] . [s x, -s^2||x||^2/2 split in 3, 1, 1, 1]``
    gives, per pair, the score ``t = c_q - s^2 d / 2`` with ``v_q = c_q - s^2 ||q||^2 / 2`` (each value split into
    high, middle and low parts of the fast dtype; D + 6 columns zero-padded to a multiple of 32). Larger is
    nearer, and no extra pass over the score block is needed. ``c_q = s^2 d_ref / 2`` is a per-query offset:
    ``d_ref`` is the running exact best (first tile: a probe pass's estimate), so the candidates' scores are near 0
    and the rounding of the result (bf16 output on CPU) is relative to ``|d - d_ref|``, not to ``d``.

    Error bound. With P = s^2 ||q|| max||x|| >= s^2 sum|q_i x_i| (Cauchy-Schwarz) and A = s^2 max||x||^2, the value
    before output rounding is within E_f of t, where E_f (per query, :meth:`_bounds`) adds the input rounding
    (u_b P per operand in bf16, 0 where the operand is exact, which is checked), the fp32 scaling (2.01 u P),
    fp32 accumulation gamma_{D+6} (sum of |terms|), the 3-part splits and the fp32 norms of x; output rounding
    to a unit roundoff u_o then gives, for every pair, ``|t~ - t| <= B(t~) = E_f + u' |t~|``, u' = u_o / (1 - u_o)
    (all times SAFETY). B uses only the computed value, and ``g(v) = v + B(v)`` is increasing.

    Margin argument. Let a be the fast-pass argmax and j* a true nearest neighbour, so t_j* >= t_a. Then
    ``g(t~_j*) >= t_j* >= t_a >= t~_a - B(t~_a) =: L``. Across tiles, j can only beat the exact best b if
    ``t_j >= c_q - s^2 b / 2``. So every reference that can be (or tie) the nearest satisfies
    ``t~_j >= g^-1(max(L, c_q - s^2 b / 2) - slack)``, slack covering float64 rounding of the exact re-check,
    the threshold is rounded down when cast, and exactly those references are re-scored in float64.
    """

    def __init__(self, query: np.ndarray | torch.Tensor, device: str | torch.device = "cpu", *,
                 search: str = "fp32", tile_elems: int | None = None, max_pairs: int = 1 << 20,
                 pair_batch: int = 4096) -> None:
        if search not in FLOAT_SEARCH:
            hint = " (int8 is GreyLevelNN: use make_nn or nn_search_stream)" if search == "int8" else ""
            raise ValueError(f"search precision must be one of {', '.join(FLOAT_SEARCH)}, got {search!r}{hint}")
        self.device = runtime.resolve_device(device) if isinstance(device, str) else torch.device(device)
        q = _as_float_matrix(query, "query")
        if len(q) == 0:
            raise ValueError("query set is empty")
        self.search = search
        self.d = q.shape[1]
        self.q = q.to(self.device, torch.float32).contiguous()  # (Q, D) fp32, for the exact re-check
        if not math.isfinite(float(self.q.sum(dtype=torch.float64))):
            raise ValueError("query images contain NaN or inf")
        self.fast_dtype = torch.bfloat16 if search == "bf16" else torch.float32
        self.u_fast = UBF16 if search == "bf16" else U32
        self.scale = BF16_SCALE if search == "bf16" else 1.0
        self.s2 = self.scale**2
        self.k_aug = -(-(self.d + 6) // 32) * 32  # D + 6 augmented columns, zero-padded to a multiple of 32
        q64 = self.q.double()  # (Q, D)
        self.q_sqnorm = (q64 * q64).sum(1)  # (Q,) float64 ||q||^2
        del q64
        self.q_fast, self.q_input_u = self._pixels(self.q)  # (Q, K) fast operand, pixel block filled
        self.q_fast[:, self.d:self.d + 3] = 1.0
        n_q = len(self.q)
        self.c = torch.zeros(n_q, dtype=torch.float64, device=self.device)  # (Q,) offsets c_q = s^2 d_ref / 2
        self.has_ref = torch.zeros(n_q, dtype=torch.bool, device=self.device)  # (Q,) d_ref known
        self._set_offsets(torch.arange(n_q, device=self.device))
        self.q_norm_s = (self.q_sqnorm * self.s2).sqrt() * (1 + 2 * _gamma(self.d, U64))  # (Q,) >= s ||q||
        self.gamma = _gamma(self.k_aug)
        self.rho = 2.0 * self.u_fast**3  # 3-part split of a value
        self.u_out = U32
        if search == "bf16":
            self.u_out = U32 if self._mm_fp32_out_supported() else UBF16
        if tile_elems is None:
            tile_elems = (1 << 28) if self.device.type == "cuda" else (1 << 24)  # scores per block
        self.q_tile = min(n_q, 4096 if self.device.type == "cpu" else 32768)
        self.r_tile = max(256, tile_elems // self.q_tile)
        self.max_pairs = max_pairs  # candidate pairs gathered at once (bounds memory in near-duplicate floods)
        self.pair_batch = pair_batch  # pairs re-scored in float64 at once
        self.best_d = torch.full((n_q,), math.inf, dtype=torch.float64, device=self.device)  # (Q,)
        self.best_i = torch.full((n_q,), -1, dtype=torch.int64, device=self.device)  # (Q,)
        self.best_y = torch.full((n_q,), -1, dtype=torch.int64, device=self.device)  # (Q,)
        self.n_ref = 0
        self.n_pairs = 0
        self.worst_err_ratio = 0.0

    # fast-pass operands ------------------------------------------------------------------------------------

    def _pixels(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(n, D) fp32 -> (n, K) zero operand with the pixel block s x; and the block's relative input rounding
        (0 when s x is exactly representable in the fast dtype, as 255 * (k/255) is in bf16)."""
        xs = x * self.scale if self.scale != 1.0 else x  # (n, D) fp32
        out = torch.zeros((len(x), self.k_aug), dtype=self.fast_dtype, device=x.device)  # (n, K)
        out[:, :self.d] = xs
        exact = self.fast_dtype == torch.float32 or bool((out[:, :self.d].float() == xs).all())
        return out, (0.0 if exact else UBF16)

    def _split3(self, v: torch.Tensor) -> torch.Tensor:
        """(n,) float64 -> (n, 3) fast dtype whose sum is v within 2 u^3 |v| (differences exact in float64)."""
        parts = []
        for _ in range(3):
            p = v.to(self.fast_dtype)  # (n,)
            parts.append(p)
            v = v - p.double()
        return torch.stack(parts, 1)  # (n, 3)

    def _set_offsets(self, rows: torch.Tensor) -> None:
        """Write v_q = c_q - s^2 ||q||^2 / 2 of ``rows`` into the query operand."""
        v = self.c[rows] - 0.5 * self.s2 * self.q_sqnorm[rows]  # (r,) float64
        self.q_fast[rows, self.d + 3:self.d + 6] = self._split3(v)

    def _mm_fp32_out_supported(self) -> bool:
        """CUDA can return a bf16 x bf16 product in fp32 (no output rounding); CPU returns bf16."""
        if self.device.type != "cuda":
            return False
        a = torch.ones((2, 32), dtype=torch.bfloat16, device=self.device)
        try:
            return torch.mm(a, a.T, out_dtype=torch.float32).dtype == torch.float32
        except (RuntimeError, TypeError):
            return False

    def _mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.search == "bf16" and self.u_out == U32:
            return torch.mm(a, b.T, out_dtype=torch.float32)  # (Qt, n_t)
        return a @ b.T  # (Qt, n_t)

    # streaming ---------------------------------------------------------------------------------------------

    def update(self, x_chunk: np.ndarray | torch.Tensor, y_chunk: np.ndarray | torch.Tensor) -> None:
        """Consume one chunk of references: images (n, ...) float, labels (n,) int."""
        x, y = _reference_chunk(x_chunk, y_chunk, self.d)
        x = x.to(self.device, torch.float32)  # (n, D)
        y = y.to(self.device, torch.int64)  # (n,)
        if not math.isfinite(float(x.sum(dtype=torch.float64))):  # one cheap pass; NaN/inf propagate
            raise ValueError(f"reference chunk starting at index {self.n_ref} contains NaN or inf")
        ctx = _ieee_fp32_matmul() if self.search == "fp32" else contextlib.nullcontext()
        with ctx, torch.no_grad():
            for r0 in range(0, len(x), self.r_tile):
                self._update_tile(x[r0:r0 + self.r_tile], y[r0:r0 + self.r_tile], self.n_ref + r0)
        self.n_ref += len(x)

    def _bounds(self, q0: int, q1: int, a_s: float, x_input_u: float) -> tuple[torch.Tensor, float]:
        """(E_f (Qt,) float64, u') for queries q0:q1 against a tile with s^2 max||x||^2 <= a_s (with SAFETY)."""
        p = self.q_norm_s[q0:q1] * math.sqrt(a_s)  # (Qt,) >= s^2 sum|q_i x_i|
        v_q = (self.c[q0:q1] - 0.5 * self.s2 * self.q_sqnorm[q0:q1]).abs()  # (Qt,) |query-side constant|
        u_in = self.q_input_u + x_input_u + self.q_input_u * x_input_u
        scale_err = 2.01 * U32 * p if self.scale != 1.0 else 0.0
        terms = (1 + u_in) * 1.01 * p + 0.51 * a_s + 1.01 * v_q  # (Qt,) >= sum of |products| in the matmul
        norm_err = 1.01 * _gamma(self.d + 2) * 0.5 * a_s  # fp32 ||x||^2 (scaling, squares, sum)
        e_f = u_in * p + scale_err + self.gamma * terms + self.rho * (0.51 * a_s + v_q) + norm_err
        u_o = self.u_out / (1 - self.u_out)
        return SAFETY * e_f, SAFETY * u_o

    def _update_tile(self, xt: torch.Tensor, yt: torch.Tensor, offset: int) -> None:
        x_fast, x_input_u = self._pixels(xt)  # (n_t, K)
        xs = xt * self.scale if self.scale != 1.0 else xt  # (n_t, D)
        x_half = -0.5 * (xs * xs).sum(1)  # (n_t,) fp32 -s^2 ||x||^2 / 2
        x_fast[:, self.d:self.d + 3] = self._split3(x_half.double())
        x_fast[:, self.d + 3:self.d + 6] = 1.0
        a_s = float(-2.0 * x_half.min()) * (1 + 2 * _gamma(self.d + 2))  # >= s^2 max ||x||^2
        del xs
        for q0 in range(0, len(self.q), self.q_tile):
            q1 = min(q0 + self.q_tile, len(self.q))
            new = ~self.has_ref[q0:q1]  # (Qt,) rows meeting their first references: probe for an offset
            if bool(new.any()):
                probe = self._mm(self.q_fast[q0:q1], x_fast).amax(1).double()  # (Qt,) ~ -s^2 d_a / 2 (c = 0)
                rows = q0 + new.nonzero().squeeze(1)
                self.c[rows] = (-probe[rows - q0]).clamp_min(0.0)
                self.has_ref[rows] = True
                self._set_offsets(rows)
            t = self._mm(self.q_fast[q0:q1], x_fast)  # (Qt, n_t) scores c_q - s^2 d / 2 (bf16 or fp32)
            e_f, u_o = self._bounds(q0, q1, a_s, x_input_u)  # (Qt,), float
            t_max = t.amax(1).double()  # (Qt,) fast-pass best t~_a
            low_a = t_max - e_f - u_o * t_max.abs()  # (Qt,) L = t~_a - B(t~_a) <= t_a
            t_best = self.c[q0:q1] - 0.5 * self.s2 * self.best_d[q0:q1]  # (Qt,) -inf before any reference
            slack = 2e-12 * self.s2 * (self.q_sqnorm[q0:q1] + a_s / self.s2)  # (Qt,) float64 re-check rounding
            target = torch.maximum(low_a, t_best) - slack - e_f  # (Qt,)
            thr = torch.where(target >= 0, target / (1 + u_o), target / (1 - u_o))  # (Qt,) g^-1
            active = (t_max >= thr).nonzero().squeeze(1)  # (Qa,) rows with at least one candidate
            if len(active) == 0:
                continue
            thr_c = thr[active].to(t.dtype)  # (Qa,) threshold in the score dtype, rounded down below:
            thr_c = torch.where(thr_c.double() > thr[active],
                                torch.nextafter(thr_c, torch.full_like(thr_c, -math.inf)), thr_c)
            t_act = t if len(active) == len(t) else t[active]  # (Qa, n_t)
            mask = t_act >= thr_c[:, None]  # (Qa, n_t) candidates
            self._recheck(mask, t_act, active, xt, yt, offset, q0, e_f, u_o)

    def _recheck(self, mask: torch.Tensor, t: torch.Tensor, active: torch.Tensor, xt: torch.Tensor,
                 yt: torch.Tensor, offset: int, q0: int, e_f: torch.Tensor, u_o: float) -> None:
        """Re-score every candidate pair exactly in float64 and update the running best.

        ``mask``/``t`` (Qa, n_t) cover the active rows ``active`` (Qa,) of query tile q0 (indices within it).
        """
        total = int(torch.count_nonzero(mask))
        if total == 0:
            return
        self.n_pairs += total
        groups = [(0, len(mask))]
        if total > self.max_pairs:  # near-duplicate flood: rows in groups of at most max_pairs candidates
            csum = mask.sum(1).cumsum(0).cpu().numpy()
            bounds = [0]
            while bounds[-1] < len(csum):
                base = csum[bounds[-1] - 1] if bounds[-1] else 0
                nxt = int(np.searchsorted(csum, base + self.max_pairs, side="right"))
                bounds.append(max(nxt, bounds[-1] + 1))
            groups = list(zip(bounds[:-1], bounds[1:]))
        for g0, g1 in groups:
            rows, cols = mask[g0:g1].nonzero(as_tuple=True)  # (P,), (P,) row-major
            t_pairs = t[rows + g0, cols]  # (P,) fast-pass scores of the pairs
            rows = active[rows + g0]  # (P,) row within the query tile, still sorted
            d = torch.empty(len(rows), dtype=torch.float64, device=t.device)  # (P,)
            for p0 in range(0, len(rows), self.pair_batch):
                r, c = rows[p0:p0 + self.pair_batch], cols[p0:p0 + self.pair_batch]
                diff = self.q[q0 + r].double() - xt[c].double()  # (p, D) exact float64 differences of fp32
                d[p0:p0 + len(r)] = (diff * diff).sum(1)
            self._check_premise(t_pairs, d, rows, q0, e_f, u_o)
            self._reduce(rows, cols, d, yt, offset, q0)

    def _check_premise(self, t_pairs: torch.Tensor, d: torch.Tensor, rows: torch.Tensor, q0: int,
                       e_f: torch.Tensor, u_o: float) -> None:
        """Verify |t~ - t| <= B(t~) on the re-checked pairs (the margin argument's premise)."""
        t_exact = self.c[q0 + rows] - 0.5 * self.s2 * d  # (P,)
        t_fast = t_pairs.double()  # (P,)
        bound = e_f[rows] + u_o * t_fast.abs()  # (P,) with SAFETY
        err = (t_fast - t_exact).abs()  # (P,)
        ratio = float((err / (bound / SAFETY).clamp_min(1e-300)).max())
        self.worst_err_ratio = max(self.worst_err_ratio, ratio)
        if ratio > SAFETY:
            raise RuntimeError(f"1-NN fast pass ({self.search}) exceeded its proven error bound ({ratio:.2f} x); "
                               "the matmul backend does not round as assumed: use search precision fp32")

    def _reduce(self, rows: torch.Tensor, cols: torch.Tensor, d: torch.Tensor, yt: torch.Tensor, offset: int,
                q0: int) -> None:
        """Per query: smallest float64 distance among its pairs, lowest index among ties; merge into the best."""
        uq, inv = torch.unique_consecutive(rows, return_inverse=True)  # rows are sorted (row-major nonzero)
        dmin = torch.full((len(uq),), math.inf, dtype=torch.float64, device=d.device)
        dmin.scatter_reduce_(0, inv, d, reduce="amin")  # (U,)
        at_min = d == dmin[inv]  # (P,)
        big = torch.iinfo(torch.int64).max
        cmin = torch.full((len(uq),), big, dtype=torch.int64, device=d.device)
        cmin.scatter_reduce_(0, inv[at_min], cols[at_min], reduce="amin")  # (U,) lowest column at the minimum
        qi = q0 + uq  # (U,) query indices
        gi = cmin + offset  # (U,) global reference indices
        old_d, old_i = self.best_d[qi], self.best_i[qi]
        better = (dmin < old_d) | ((dmin == old_d) & (gi < old_i))  # (U,)
        qi, dmin, gi, c = qi[better], dmin[better], gi[better], cmin[better]
        self.best_d[qi] = dmin
        self.best_i[qi] = gi
        self.best_y[qi] = yt[c]
        self.c[qi] = 0.5 * self.s2 * dmin  # the offset follows the exact best
        self._set_offsets(qi)

    def result(self) -> NNResult:
        if self.n_ref == 0:
            raise ValueError("no reference images were streamed: the 1-NN reference set is empty")
        return NNResult(index=self.best_i.cpu().numpy(), sqdist=self.best_d.cpu().numpy(),
                        label=self.best_y.cpu().numpy(),
                        stats={"n_reference": self.n_ref, "n_query": len(self.q), "search": self.search,
                               "pairs_rechecked": self.n_pairs,
                               "pairs_per_query": round(self.n_pairs / len(self.q), 3),
                               "worst_error_over_bound": round(self.worst_err_ratio, 4)})


GREY_MAX = 255  # 8-bit images: pixel values k / 255, k = 0..255
INT8_SHIFT = 128  # int8 operands hold k - 128 in [-128, 127]


def _grey_levels(x: torch.Tensor, what: str, setting: str = SETTING) -> torch.Tensor:
    """(n, D) fp32 -> (n, D) int8 ``k - 128`` where every value is exactly fp32(k / 255) with integer k in 0..255.

    Anything else (another scaling, interpolated or noisy values, NaN, inf) is refused: the integer search would
    not be exact for it."""
    k = (x * float(GREY_MAX)).round_()  # (n, D) fp32, the integers k where x is on the grid
    on_grid = bool((k.div(float(GREY_MAX)) == x).all()) and (len(x) == 0 or (float(k.min()) >= 0
                                                                             and float(k.max()) <= GREY_MAX))
    if not on_grid:
        raise ValueError(f"{what} is not 8-bit images (values other than k/255, k = 0..255, or NaN/inf): search "
                         f"precision int8 is exact only for 8-bit images; use search fp32 ({setting}) for other data")
    return k.sub_(INT8_SHIFT).to(torch.int8)  # (n, D)


class GreyLevelNN:
    """Exact 1-NN of 8-bit images in integer arithmetic (search precision ``int8``); same interface and result as
    :class:`StreamingNN`.

    With grey levels a, b in 0..255 (pixels a/255, b/255) and shifted values a' = a - 128, b' = b - 128 in int8,
    ``255^2 d = ||a - b||^2 = ||a'||^2 + ||b'||^2 - 2 a'.b'`` (a shift of both vectors leaves the difference
    alone; the unshifted form is ``a.b = a'.b' + 128 sum(a') + 128 sum(b') + 128^2 D``, same result). a'.b' comes
    from ``torch._int_mm`` (int8 x int8 -> int32): |a'.b'| <= 128^2 D and ``||b'||^2 - 2 a'.b'`` <= 3 * 128^2 D,
    below 2^31 for D < 43,690 (28 x 28 images: D = 784), so every value is an exact integer and the argmin needs no
    re-check. Per query tile: the int32 block ``s = ||b'||^2 - 2 a'.b'`` (one pass), its row minimum (a second,
    vectorised pass), and only for the rows whose minimum beats the running best, the first (lowest) index at that
    minimum; earlier tiles keep ties (strict improvement only), so ties go to the lowest reference index as in
    :class:`StreamingNN`. ``sqdist`` is the integer distance / 255^2 in float64 (correctly rounded).

    Shapes: the operands are zero-padded (zeros of the shifted values, outputs ignored) to K a multiple of 8,
    query tiles of a multiple of 32 rows and reference tiles of a multiple of 8 columns, which ``_int_mm`` needs
    on CUDA (M > 16, K and N multiples of 8); on CPU it takes any shape. Only the CPU path is measured.
    """

    search = "int8"

    def __init__(self, query: np.ndarray | torch.Tensor, device: str | torch.device = "cpu", *,
                 tile_elems: int | None = None, setting: str = SETTING) -> None:
        self.device = runtime.resolve_device(device) if isinstance(device, str) else torch.device(device)
        q = _as_float_matrix(query, "query")
        if len(q) == 0:
            raise ValueError("query set is empty")
        self.setting = setting  # named when data is not 8-bit
        n_q, self.d = q.shape
        if 3 * INT8_SHIFT**2 * self.d >= 2**31:
            raise ValueError(f"search precision int8: {self.d} values per image could overflow int32 "
                             f"(at most {(2**31 - 1) // (3 * INT8_SHIFT**2)}); use search fp32")
        self.n_q = n_q
        self.k_pad = -(-self.d // 8) * 8  # K, a multiple of 8
        if tile_elems is None:
            tile_elems = (1 << 26) if self.device.type == "cuda" else (1 << 20)  # int32 scores per block
        self.q_tile = -(-min(n_q, 1024 if self.device.type == "cpu" else 32768) // 32) * 32  # multiple of 32
        self.r_tile = max(8, (tile_elems // self.q_tile) // 8 * 8)  # multiple of 8
        q_rows = -(-n_q // 32) * 32  # every query tile then has a multiple of 32 rows
        q8 = _grey_levels(q.to(self.device, torch.float32), "query", setting)  # (Q, D) int8 a'
        self.q8 = torch.zeros((q_rows, self.k_pad), dtype=torch.int8, device=self.device)  # (Qp, K)
        self.q8[:n_q, :self.d] = q8
        self.alpha = (q8.int() ** 2).sum(1, dtype=torch.int32)  # (Q,) ||a'||^2
        del q8
        self.best_d = torch.full((n_q,), torch.iinfo(torch.int32).max, dtype=torch.int32, device=self.device)
        self.best_i = torch.full((n_q,), -1, dtype=torch.int64, device=self.device)  # (Q,)
        self.best_y = torch.full((n_q,), -1, dtype=torch.int64, device=self.device)  # (Q,)
        self._buf = torch.empty((self.q_tile, self.r_tile), dtype=torch.int32, device=self.device)  # one block
        self.n_ref = 0

    def update(self, x_chunk: np.ndarray | torch.Tensor, y_chunk: np.ndarray | torch.Tensor) -> None:
        """Consume one chunk of references: 8-bit images as floats k/255 (n, ...), labels (n,) int."""
        x, y = _reference_chunk(x_chunk, y_chunk, self.d)
        n = len(x)
        x8 = _grey_levels(x.to(self.device, torch.float32), f"reference chunk starting at index {self.n_ref}",
                          self.setting)
        y = y.to(self.device, torch.int64)  # (n,)
        n_pad = -(-n // 8) * 8
        if n_pad != n or self.k_pad != self.d:
            xp = torch.zeros((n_pad, self.k_pad), dtype=torch.int8, device=self.device)  # (n_pad, K)
            xp[:n, :self.d] = x8
            x8 = xp
        beta = (x8[:n].int() ** 2).sum(1, dtype=torch.int32)  # (n,) ||b'||^2
        with torch.no_grad():
            for r0 in range(0, n_pad, self.r_tile):
                r1 = min(r0 + self.r_tile, n_pad)
                self._update_tile(x8[r0:r1], beta[r0:r1], y[r0:r1], self.n_ref + r0)
        self.n_ref += n

    def _update_tile(self, xt: torch.Tensor, beta: torch.Tensor, yt: torch.Tensor, offset: int) -> None:
        """xt (n_t, K) int8 (zero rows past ``len(beta)``), beta (v,) ||b'||^2 of the v valid rows."""
        v = len(beta)
        xt_t = xt.T  # (K, n_t), column-major as cuBLASLt wants
        for q0 in range(0, len(self.q8), self.q_tile):
            q1 = min(q0 + self.q_tile, len(self.q8))
            block = self._buf[:q1 - q0, :len(xt)]
            if not block.is_contiguous():
                block = torch.empty((q1 - q0, len(xt)), dtype=torch.int32, device=self.device)
            torch._int_mm(self.q8[q0:q1], xt_t, out=block)  # (Qt, n_t) exact a'.b'
            s = block[:, :v]  # (Qt, v) valid columns
            torch.sub(beta, s, alpha=2, out=s)  # s = ||b'||^2 - 2 a'.b', exact int32
            qv = min(q1, self.n_q) - q0  # valid query rows
            s = s[:qv]
            d = s.amin(1).add_(self.alpha[q0:q0 + qv])  # (qv,) exact integer squared distance of the tile's best
            rows = (d < self.best_d[q0:q0 + qv]).nonzero().squeeze(1)  # strict: an equal earlier one keeps it
            if len(rows) == 0:
                continue
            col = s[rows].argmin(1)  # (r,) first (lowest) column at the minimum
            qi = q0 + rows
            self.best_d[qi] = d[rows]
            self.best_i[qi] = offset + col
            self.best_y[qi] = yt[col]

    def result(self) -> NNResult:
        if self.n_ref == 0:
            raise ValueError("no reference images were streamed: the 1-NN reference set is empty")
        sqdist = self.best_d.cpu().numpy().astype(np.float64) / float(GREY_MAX**2)  # (Q,) exact int / 255^2
        return NNResult(index=self.best_i.cpu().numpy(), sqdist=sqdist, label=self.best_y.cpu().numpy(),
                        stats={"n_reference": self.n_ref, "n_query": self.n_q, "search": self.search,
                               "pairs_rechecked": 0, "pairs_per_query": 0.0, "worst_error_over_bound": 0.0})


def make_nn(query: np.ndarray | torch.Tensor, device: str | torch.device = "cpu", *, search: str = "fp32",
            tile_elems: int | None = None, setting: str = SETTING) -> StreamingNN | GreyLevelNN:
    """The streaming exact 1-NN for ``search``: :class:`GreyLevelNN` for int8, else :class:`StreamingNN`.

    ``setting`` is what an error about the search choice names (e.g. the caller's config key)."""
    if search == "int8":
        return GreyLevelNN(query, device, tile_elems=tile_elems, setting=setting)
    if search not in FLOAT_SEARCH:
        raise ValueError(f"search precision must be one of {', '.join(SEARCH_PRECISIONS)}, got {search!r}")
    return StreamingNN(query, device, search=search, tile_elems=tile_elems)


def _reference_chunk(x_chunk: np.ndarray | torch.Tensor, y_chunk: np.ndarray | torch.Tensor,
                     d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A chunk of references as an (n, d) float matrix and (n,) labels; an error when either shape is wrong."""
    x = _as_float_matrix(x_chunk, "reference chunk")
    y = torch.as_tensor(np.asarray(y_chunk) if not isinstance(y_chunk, torch.Tensor) else y_chunk)
    if x.shape[1] != d:
        raise ValueError(f"reference chunk has {x.shape[1]} values per image, the queries have {d}")
    if y.shape != (len(x),):
        raise ValueError(f"reference chunk: {len(x)} images but labels of shape {tuple(y.shape)}")
    return x, y


def _as_float_matrix(x: np.ndarray | torch.Tensor, what: str) -> torch.Tensor:
    """(n, ...) float array -> (n, D) tensor; integer images are refused (scale them to [0, 1] first)."""
    t = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(x))
    if not t.is_floating_point():
        raise TypeError(f"{what} must be float images in [0, 1], got {t.dtype} (divide uint8 images by 255)")
    if t.ndim < 2:
        raise ValueError(f"{what} must be (n, D) or (n, H, W[, C]), got shape {tuple(t.shape)}")
    return t.reshape(len(t), -1)  # (n, D)


def nn_search_stream(query: np.ndarray | torch.Tensor, reference_chunks: Iterable[tuple[Any, Any]],
                     device: str | torch.device = "cpu", *, search: str = "fp32",
                     tile_elems: int | None = None, setting: str = SETTING) -> NNResult:
    """Exact streamed 1-NN: nearest reference index, float64 squared distance and label for every query
    (``setting``: see :func:`make_nn`)."""
    nn = make_nn(query, device, search=search, tile_elems=tile_elems, setting=setting)
    for x_chunk, y_chunk in reference_chunks:
        if len(x_chunk):
            nn.update(x_chunk, y_chunk)
    return nn.result()


def nn_classify_stream(query: np.ndarray | torch.Tensor, reference_chunks: Iterable[tuple[Any, Any]],
                       device: str | torch.device = "cpu", *, search: str = "fp32",
                       tile_elems: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact 1-NN classification (authors' ``nnc_score`` / ``nnd_score``, Euclidean on [0, 1] pixels).

    ``query`` (Q, D) float32 in [0, 1]; ``reference_chunks`` yields ``(X_chunk (n, D), y_chunk (n,))``.
    Returns ``(pred_labels (Q,) int64, nn_dist (Q,) float64 Euclidean distance)``; equal to a brute-force
    float64 argmin with ties broken by the lowest reference index, whichever ``search`` precision ranks the
    candidates.
    """
    res = nn_search_stream(query, reference_chunks, device, search=search, tile_elems=tile_elems)
    return res.label, res.dist


def resolve_search(search: str, device: torch.device, *, setting: str = SETTING) -> str:
    """``auto`` -> int8 on a CPU with int8 dot-product instructions (VNNI or AMX), else fp32; bf16 on a CUDA GPU
    with native bf16, else fp32. An unknown name is refused with an error naming ``setting``.

    For 8-bit images every choice gives exact decisions; int8 is exact on the grey levels themselves with no
    re-check (:class:`GreyLevelNN`; refused for other data), fp32 and bf16 on their fp32 roundings (see the module
    docstring). Speed, 10k queries x 32,768 references of 784 8-bit values, benchmarks/bench_nn_eval.py: on 1
    Xeon core with AVX512-VNNI/BF16 (no AMX), the other core busy, int8 search 45-48 us per reference against
    172-179 for fp32 in the same runs (3.6-4.0x), and fp32 beat bf16 (a bf16 matmul ran at ~75 GFLOP/s against
    ~140). On an AVX2-only AMD EPYC (no VNNI, 2 threads) ``torch._int_mm`` falls back to a slow path: int8 4,251 us
    per reference against 330 for fp32 (13x slower). On CUDA int8 is not measured, so bf16 stays the default there.
    """
    if search in SEARCH_PRECISIONS:
        return search
    if search != "auto":
        raise ValueError(f"{setting}: {search!r} is not allowed; allowed values: "
                         f"auto, {', '.join(SEARCH_PRECISIONS)}")
    if device.type == "cuda":
        return "bf16" if runtime.native_bf16(device) else "fp32"
    return "int8" if runtime.native_int8(device) else "fp32"

