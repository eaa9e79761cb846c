"""Figs. 2, 3, 10, 11 (rule ``figures_sample_sheet``) and the authors' SVHN samples (rule
``figures_authors_svhn_samples``): grids of samples drawn with ``models.generate`` (batch statistics, the authors'
sampling) from ``figures.seed``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from torch import nn

from dcgan_repro import io, models, paper, runtime
from dcgan_repro.figures.layout import Layout, Panel, figure_title, footer_text, render_figure
from dcgan_repro.figures.runs import load_run, run_device
from dcgan_repro.images import image_grid

log = logging.getLogger(__name__)
PathLike = io.PathLike


def sample_sheet(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *, run: str,
                 epoch: int | None, figure: str, figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Figs. 2, 3, 10, 11: ``grid_rows x grid_cols`` samples of a run's G (a snapshot when ``epoch`` is set),
    drawn with ``models.generate`` (batch statistics, the authors' sampling) from ``figures.seed``."""
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev, epoch)
    if ckpt["name"] != run:
        log.warning("%s holds run %r, the rule asked for %r", model, ckpt["name"], run)
    n = figures["grid_rows"] * figures["grid_cols"]
    labels = np.arange(n) % netG.n_classes if netG.n_classes else None
    imgs = models.generate(netG, max(n, 2), z_dist=models.z_dist(ckpt["run"]), seed=figures["seed"], labels=labels,
                           device=dev, precision=runtime.job_precision(common, dev))[:n]  # (n, H, W, C)
    grid = image_grid(imgs, figures["grid_cols"])
    key = figure[:5]
    suffix = f"this run: epoch {ckpt['epoch']}" if key in ("fig02", "fig03") else ""
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"],
                       notes=[f"{n} samples, z ~ {models.z_dist(ckpt['run'])}, one batch per 512 (batch-statistics "
                              f"batch norm, as the authors sample)."])
    return render_figure([[Panel(grid)]], title=figure_title(key, suffix), footer=foot, png=png, pdf=pdf)


def authors_svhn_samples(netG: nn.Module, source: PathLike, png: PathLike, pdf: PathLike, *,
                         figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Rule ``figures_authors_svhn_samples``: a ``grid_rows x grid_cols`` sheet drawn by the authors' released SVHN G,
    ``netG``: their weights (``source``, the ``200_gen_params.jl``) loaded by ``theano_weights.load_generator``
    into our :class:`~dcgan_repro.models.ProjectedGenerator`.

    It shows that the loader's conventions (kernel flip, Linear transpose, parameter order) are right: with them
    the released G draws house numbers. z ~ N(0, 1) (the released run's name says ``gaussian``), drawn from
    ``figures.seed``, one batch (batch-statistics batch norm, as the authors sample).
    """
    device = run_device(common)
    netG = netG.to(device)
    n = figures["grid_rows"] * figures["grid_cols"]
    imgs = models.generate(netG, max(n, 2), z_dist="normal", seed=figures["seed"], device=device)[:n]
    grid = image_grid(imgs, figures["grid_cols"])
    footer = "\n".join([
        "Model: the authors' released SVHN DCGAN (Newmu/dcgan_code ee12b2d, "
        "svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb, epoch 200), Theano weights loaded into our "
        f"svhn32 generator (kernels flipped, Linear transposed) from {source}.",
        f"Data: none read here (the model was trained by the authors on SVHN). {n} samples, z ~ N(0, 1), one batch "
        "(batch-statistics batch norm, as the authors sample).",
        f"Preset: {common.get('preset')}. Figure seed {figures['seed']}. Code {io.code_version()}. {paper.PAPER}.",
    ])
    return render_figure([[Panel(grid)]], title="Samples of the authors' released SVHN DCGAN "
                         "(their weights, our generator)", footer=footer, png=png, pdf=pdf)
