"""Fig. 4 (Sec. 6.1, rule ``figures_fig04_interpolation``): walking in the latent space, linear paths through
random z."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from dcgan_repro import io, models
from dcgan_repro.figures.layout import Layout, Panel, figure_title, footer_text, render_figure
from dcgan_repro.figures.runs import load_run, render, run_device, z_generator
from dcgan_repro.images import image_grid

PathLike = io.PathLike


def interpolate_z(points: Tensor, steps: int) -> Tensor:
    """Linear path through ``points`` (P, nz): ``steps`` images per segment (t = 0, 1/steps, ...) plus the last
    point, i.e. ((P-1)*steps + 1, nz); row k*steps is exactly points[k] (Fig. 4)."""
    if points.ndim != 2 or len(points) < 2 or steps < 1:
        raise ValueError(f"need (P >= 2, nz) points and steps >= 1, got {tuple(points.shape)} and {steps}")
    t = torch.arange(steps, dtype=points.dtype) / steps                       # (steps,)
    a, b = points[:-1], points[1:]                                            # (P-1, nz) each
    seg = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]              # (P-1, steps, nz)
    return torch.cat([seg.reshape(-1, points.shape[1]), points[-1:]])         # ((P-1)*steps + 1, nz)


def fig04_interpolation(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                        figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 4 (Sec. 6.1): each row walks linearly through ``interp_points`` random points in Z with
    ``interp_steps`` images per segment (:func:`interpolate_z`)."""
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    dist, nz = models.z_dist(ckpt["run"]), netG.nz
    g = z_generator(figures["seed"])
    rows, pts, steps = figures["interp_rows"], figures["interp_points"], figures["interp_steps"]
    anchors = models.sample_z(rows * pts, nz, dist, generator=g).view(rows, pts, nz)  # (rows, P, nz)
    ref = models.sample_z(figures["bn_reference"], nz, dist, generator=g)              # (M, nz)
    path = torch.stack([interpolate_z(a, steps) for a in anchors])                     # (rows, L, nz)
    length = path.shape[1]
    imgs = render(netG, path.reshape(-1, nz), ref)                                     # (rows*L, H, W, C)
    grid = image_grid(imgs, length)
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Each of {rows} rows: {pts} random points in Z (z ~ {dist}), {steps} images per segment, linear "
        f"interpolation, {length} images. Rendered beside {figures['bn_reference']} reference z (batch-norm "
        f"statistics of a large random batch)."])
    return render_figure([[Panel(grid, f"{pts} random points, {steps} steps between consecutive points")]],
                         title=figure_title("fig04"), footer=foot, png=png, pdf=pdf)
