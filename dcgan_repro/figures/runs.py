"""A run's model for a figure (final or a snapshot) and its generator's images.

Sampling and batch norm. G's batch norm always normalises with the statistics of the batch being generated
(the authors' code; ``models.py``). ``models.generate`` is used for sample sheets (Figs. 2, 3, 9, 10, 11).
Figures that compare individual samples (Figs. 4, 6, 7, 8) render their few z **in the company of a reference
batch** of ``figures.bn_reference`` random z (:func:`render`): the batch statistics are then those of a large
random batch, so a z draws (almost exactly) the same image whatever else is rendered with it. D (Fig. 5) uses
fixed statistics averaged over real training images, exactly as the Sec. 5.1 feature extractor
(``features.fixed_bn_statistics``), so each image's guided backpropagation is independent of the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import io, models, runtime

PathLike = io.PathLike


def run_device(common: dict[str, Any]) -> torch.device:
    """The device a figure job runs on: ``common.device`` (default ``auto``)."""
    return runtime.resolve_device(common.get("device", "auto"))


def snapshot_path(model_path: PathLike, ckpt: dict[str, Any], epoch: int) -> Path:
    """The file of the snapshot kept after ``epoch`` (CONTRACTS: ckpt["snapshots"][epoch]).

    Paths are stored relative to the workflow directory; a snapshot beside ``model.pt`` is found too (a results
    folder that was moved). The final model itself serves when ``epoch`` is its own epoch.
    """
    snaps = {int(k): v for k, v in ckpt["snapshots"].items()}
    if epoch in snaps:
        p = Path(snaps[epoch])
        for cand in (p, Path(model_path).parent / p.name):
            if cand.is_file():
                return cand
        raise FileNotFoundError(f"{model_path} lists snapshot {p} for epoch {epoch}, but neither {p} nor "
                                f"{Path(model_path).parent / p.name} exists")
    if int(ckpt["epoch"]) == epoch:
        return Path(model_path)
    raise ValueError(f"{model_path} (run {ckpt['name']!r}) has no snapshot of epoch {epoch}; kept: "
                     f"{sorted(snaps)} (set config runs.{ckpt['name']}.snapshot_every so it keeps epoch {epoch})")


def load_run(model_path: PathLike, device: torch.device, epoch: int | None = None
             ) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """``(netG, netD, ckpt)`` of a run's final model (``epoch=None``) or of its snapshot after ``epoch``."""
    netG, netD, ckpt = models.load_checkpoint(model_path, device)
    if epoch is not None and int(ckpt["epoch"]) != int(epoch):
        netG, netD, ckpt = models.load_checkpoint(snapshot_path(model_path, ckpt, int(epoch)), device)
    return netG, netD, ckpt


def render(netG: nn.Module, z: Tensor, reference: Tensor | None = None, *, chunk: int = 256) -> np.ndarray:
    """uint8 (N, H, W, C) images of ``z`` (N, nz), in chunks of ``chunk``, each generated in one batch with
    ``reference`` (M, nz) so G's batch-statistics batch norm sees a large random batch (module docstring).
    Without ``reference`` all of ``z`` is generated as one batch (the authors' sampling; needs N >= 2)."""
    dev = next(netG.parameters()).device
    out = []
    with torch.no_grad():
        if reference is None:
            return models.to_uint8(netG(z.to(dev)), netG.output_range)
        ref = reference.to(dev)
        for s in range(0, len(z), chunk):
            zz = torch.cat([ref, z[s:s + chunk].to(dev)])                    # (M + n, nz)
            out.append(models.to_uint8(netG(zz)[len(ref):], netG.output_range))  # (n, H, W, C)
    return np.concatenate(out)


def z_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``: z streams that are the same on every device."""
    return torch.Generator().manual_seed(int(seed))
