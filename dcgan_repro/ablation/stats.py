"""Per-variant summaries over seeds and the difference from the baseline with a confidence interval.

The interval is Welch's t-interval for the difference of two means (unequal variances, Welch-Satterthwaite degrees
of freedom) over the seeds of the variant and of the baseline: seeds are the replicates, and each variant's seed s
shares only the data order and noise draws with the baseline's seed s, not its weights, so the seeds are treated
as independent samples rather than pairs. With 3 seeds per arm the intervals are wide: a difference whose
interval excludes 0 is a clear effect; one that includes 0 is not shown, not shown absent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as st


def finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def summary(values: Sequence[float | None]) -> dict[str, float | int]:
    """mean, sample std (ddof 1; NaN for one value) and n of the finite values."""
    v = finite(values)
    return {"mean": float(v.mean()) if len(v) else float("nan"),
            "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"), "n": len(v)}


def welch_interval(a: Sequence[float | None], b: Sequence[float | None], level: float = 0.95) -> dict[str, float]:
    """mean(a) - mean(b) and Welch's t-interval at ``level`` (NaN bounds when either arm has < 2 finite values).

    With both sample variances 0 the interval is the point difference."""
    x, y = finite(a), finite(b)
    out = {"difference": float(x.mean() - y.mean()) if len(x) and len(y) else float("nan"),
           "low": float("nan"), "high": float("nan"), "df": float("nan"), "level": level}
    if len(x) < 2 or len(y) < 2:
        return out
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    se = math.sqrt(vx + vy)
    if se == 0:
        out.update(low=out["difference"], high=out["difference"], df=float("inf"))
        return out
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    out.update(low=out["difference"] - half, high=out["difference"] + half, df=float(df))
    return out
