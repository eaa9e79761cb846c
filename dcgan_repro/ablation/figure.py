"""``fig_ablations``: each metric per variant with every seed shown, and a row of samples per variant from one fixed z.

Top: one panel per metric (1-NN test error and Frechet distance for MNIST, FID for 64x64 runs, and the oscillation
of D(G(z))); per variant a dot per seed (a red cross at the top edge for a seed the training health check stopped,
which has no value) and a bar at the mean. Bottom: per variant, samples of its first seed's scored generator (the
epoch Table 4 scores) from the same z (config ``ablation.sample_seed``); for MNIST the digits 0-9 in order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from dcgan_repro import io, models
from dcgan_repro.ablation.table import METRICS

log = logging.getLogger(__name__)
N_SAMPLES = 10           # samples per variant row (MNIST: one per digit)


def sample_row(model_path: str | None, run: dict[str, Any] | None, seed: int, image_shape: tuple[int, int, int],
               device: str | torch.device = "cpu") -> np.ndarray:
    """(H, N_SAMPLES * W, C) uint8 samples from ``seed``'s z; grey where the run has no generator."""
    c, h, w = image_shape
    if model_path is None:
        return np.full((h, N_SAMPLES * w, c), 128, np.uint8)
    netG, _, ckpt = models.load_checkpoint(model_path, device, run=run)
    labels = np.arange(N_SAMPLES) % netG.n_classes if netG.n_classes else None
    imgs = models.generate(netG, N_SAMPLES, z_dist=models.z_dist(ckpt["run"]), seed=seed, labels=labels,
                           batch_size=N_SAMPLES, device=device)                 # (N, H, W, C)
    return np.concatenate(list(imgs), axis=1)                                    # (H, N*W, C)


def fig_ablations(scores: Sequence[dict[str, Any]], *, order: Sequence[str], baseline: str, runs: dict[str, Any],
                  sample_seed: int, png: io.PathLike, pdf: io.PathLike | None, preset: str) -> None:
    """Draw the figure from the score records (rule ``ablation_score``); ``runs``: variant -> its run settings."""
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in scores:
        by_variant.setdefault(r["variant"], []).append(r)
    variants = [v for v in order if v in by_variant]
    kinds = {r["kind"] for r in scores}
    keys = [k for k in ("nn_test_error_pct", "fd", "fid", "osc_d_fake")
            if METRICS[k][2] is None or METRICS[k][2] in kinds]
    rows = []
    for v in variants:
        first = min(by_variant[v], key=lambda r: r["seed"])
        shape = (1, 28, 28) if first["kind"] == "mnist" else (3, 64, 64)
        rows.append(sample_row(first.get("selected_model"), runs[v], sample_seed, shape))
    sheet = np.concatenate([np.pad(r, ((2, 2), (0, 0), (0, 0)), constant_values=255) for r in rows], axis=0)
    fig = plt.figure(figsize=(3.2 * len(keys), 3.0 + 0.45 * len(variants)))
    gs = fig.add_gridspec(2, len(keys), height_ratios=[3.0, 0.45 * len(variants)])
    x = np.arange(len(variants))
    for i, key in enumerate(keys):
        ax = fig.add_subplot(gs[0, i])
        label, unit, _ = METRICS[key]
        for j, v in enumerate(variants):
            vals = [(r["stability"][key] if key in r["stability"] else r.get(key)) for r in by_variant[v]]
            ok = [float(y) for y in vals if y is not None and math.isfinite(float(y))]
            jitter = np.linspace(-0.15, 0.15, max(len(vals), 1))
            for dx, y in zip(jitter, vals):
                if y is not None and math.isfinite(float(y)):
                    ax.plot(j + dx, float(y), "o", color="C0" if v != baseline else "C2", ms=4)
            if ok:
                ax.hlines(np.mean(ok), j - 0.3, j + 0.3, color="k", lw=1.5)
            n_bad = sum(r["status"] != "finished" for r in by_variant[v])
            if n_bad:
                ax.annotate(f"{n_bad}x", (j, 1.0), xycoords=("data", "axes fraction"), ha="center", va="top",
                            color="C3", fontsize=8)
        ax.set_xticks(x, variants, rotation=60, ha="right", fontsize=7)
        ax.set_title(label + (" (%)" if unit == "%" else ""), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    ax = fig.add_subplot(gs[1, :])
    ax.imshow(sheet[..., 0] if sheet.shape[2] == 1 else sheet,
              cmap="gray", vmin=0, vmax=255, interpolation="nearest", aspect="equal")
    h = sheet.shape[0] / len(variants)
    ax.set_yticks([h * (k + 0.5) for k in range(len(variants))], variants, fontsize=7)
    ax.set_xticks([])
    ax.set_title(f"samples from one fixed z (seed {sample_seed}), first seed of each variant; red Nx: seeds stopped "
                 f"(collapsed or diverged). Preset {preset}", fontsize=8)
    fig.tight_layout()
    with io.atomic_path(png) as tmp:
        fig.savefig(tmp, dpi=130, format="png")
    if pdf is not None:
        with io.atomic_path(pdf) as tmp:
            fig.savefig(tmp, format="pdf")
    plt.close(fig)
    log.info("wrote %s (%d variants, %d metrics)", png, len(variants), len(keys))
