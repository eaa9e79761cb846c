"""Rule ``ablation_train``: one variant x seed trained by ``train.train_gan``; its outcome and stability recorded.

A run that the training health checks stop (``train.TrainingDiverged``: a non-finite loss, or D winning outright
for ``train.COLLAPSE_STEPS`` steps) is a result of the study, not a failed job: the outcome file says so
(``status`` diverged / collapsed), no model is scored, and the stability measures still come from its stats.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from dcgan_repro import io, train
from dcgan_repro.ablation import plan, stability

log = logging.getLogger(__name__)


def train_variant(*, run: dict[str, Any], name: str, variant: str, seed: int, change: dict[str, Any],
                  data_dir: io.PathLike, out_json: io.PathLike, checkpoint_dir: io.PathLike, common: dict[str, Any],
                  holdout: dict[str, Any] | None, tail: float) -> dict[str, Any]:
    """Train, then write ``out_json`` (next to model.pt, stats.jsonl and samples/ in the same folder)."""
    t0 = time.time()
    out_dir = Path(out_json).parent
    model, summary = out_dir / "model.pt", out_dir / "train_summary.json"
    model.unlink(missing_ok=True)                 # a stopped run must not leave an older model to be scored
    status, message, summ = "finished", None, None
    try:
        summ = train.train_gan(run, name, data_dir, model, summary, checkpoint_dir, common, holdout)
    except train.TrainingDiverged as e:
        status, message = "stopped", str(e)
        log.warning("variant %s seed %d stopped by the training health check: %s", variant, seed, e)
    stab = stability.measure(stability.read_stats(out_dir / "stats.jsonl"), tail, stopped=status == "stopped")
    if status == "stopped":
        status = "diverged" if stab["diverged"] else "collapsed"
    out = {"variant": variant, "seed": int(seed), "run_name": name, "change": change,
           "change_text": plan.describe(change), "claim": plan.claim(change), "status": status, "message": message,
           "model": str(model) if status == "finished" else None, "summary": str(summary) if summ else None,
           "stats": str(out_dir / "stats.jsonl"), "stability": stab,
           "train_time_s": summ.get("train_time_s") if summ else None,
           "steps": summ.get("steps") if summ else None,
           "epochs_completed": summ.get("epochs_completed") if summ else None,
           "provenance": io.provenance(config={"run": run, "common": common, "holdout": holdout, "tail": tail},
                                       seed=int(seed), inputs={"data": data_dir}, started=t0,
                                       extra={"variant": variant, "change": change})}
    io.write_json(out_json, out)
    log.info("variant %s seed %d: %s; oscillation of D(G(z)) %.4f over the last %.0f%% of training", variant, seed,
             status, stab["osc_d_fake"], 100 * tail)
    return out
