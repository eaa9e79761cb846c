"""Training stability from a run's ``stats.jsonl`` (one line per ``log_every`` steps, written by ``train.train_gan``).

Definitions (docs/ABLATIONS.md "Stability"):

- **diverged**: a logged loss is not finite (the training health check stops such a run: ``train._check_health``);
- **collapsed**: the health check stopped the run because D's loss stayed below ``train.D_LOSS_FLOOR`` for
  ``train.COLLAPSE_STEPS`` steps, or, for runs shorter than that, D's loss is below the floor in every logged window
  of the tail (the same criterion, scaled to the run);
- **oscillation** of a logged series s (D(G(z)), D's loss, G's loss) over the tail, the last ``tail`` fraction of
  the logged windows: the root mean square of successive differences divided by sqrt(2),
  ``sqrt(mean((s[t+1] - s[t])^2) / 2)``. For independent noise of standard deviation sigma around a constant or
  a slow trend it is about sigma (a trend adds little); a swing of amplitude a between consecutive windows adds
  about a. Each window is already a mean over ``log_every`` steps, so the measure sees swings slower than that.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dcgan_repro import io, train

SERIES = {"d_fake": "D(G(z))", "loss_d": "D loss", "loss_g": "G loss"}


def read_stats(path: io.PathLike) -> list[dict[str, Any]]:
    """The logged windows of a run, in order (a torn last line, from a kill mid-append, is skipped)."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for ln in p.read_text().splitlines():
        try:
            rows.append(json.loads(ln))
        except ValueError:
            continue
    return rows


def oscillation(values: Sequence[float]) -> float:
    """``sqrt(mean(diff(v)^2) / 2)`` of a series (NaN with fewer than 2 finite values); see the module doc."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if len(v) < 2:
        return float("nan")
    return float(np.sqrt(np.mean(np.diff(v) ** 2) / 2.0))


def tail_of(rows: list[dict[str, Any]], tail: float) -> list[dict[str, Any]]:
    """The last ``tail`` fraction of the windows (at least 2 where there are 2)."""
    if not 0 < tail <= 1:
        raise ValueError(f"tail must be in (0, 1], got {tail} (config key 'ablation.tail')")
    n = max(min(2, len(rows)), math.ceil(len(rows) * tail))
    return rows[len(rows) - n:]


def measure(rows: list[dict[str, Any]], tail: float, *, stopped: bool = False) -> dict[str, Any]:
    """Stability of one run from its logged windows. ``stopped``: the training health check stopped it."""
    nonfinite = any(r.get(k) is not None and not math.isfinite(r[k]) for r in rows for k in ("loss_d", "loss_g"))
    end = tail_of(rows, tail) if rows else []
    d_losses = [r["loss_d"] for r in end if r.get("loss_d") is not None]
    low_d = bool(d_losses) and all(math.isfinite(v) and v < train.D_LOSS_FLOOR for v in d_losses)
    diverged = nonfinite
    collapsed = not diverged and (stopped or low_d)
    out: dict[str, Any] = {
        "diverged": diverged, "collapsed": collapsed, "unstable": diverged or collapsed,
        "tail": tail, "tail_windows": len(end), "tail_steps": [end[0]["step"], end[-1]["step"]] if end else None,
        "d_loss_floor": train.D_LOSS_FLOOR,
    }
    for k in SERIES:
        out[f"osc_{k}"] = oscillation([r.get(k) for r in end])
        vals = [r[k] for r in end if r.get(k) is not None and math.isfinite(r[k])]
        out[f"mean_{k}"] = float(np.mean(vals)) if vals else float("nan")
    return out
