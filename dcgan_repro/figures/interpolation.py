"""Fig. 4 (Sec. 6.1, rule ``figures_fig04_interpolation``): walking in the latent space, linear paths through
random z.

Layout as the paper's figure: many rows of about ten images, each row one smooth transition. A walk visits
``figures.interp_points`` random points (paper: 9); each of its ``interp_points - 1`` segments is one row of
``interp_steps + 1`` images (t = 0, 1/steps, ..., 1: a row's last image is the next row's first). ``interp_rows``
rows are shown, walk after walk (paper: at least 10 rows of about 10 images: 16 = two walks through 9 points).
"""

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


def walk_rows(points: Tensor, steps: int) -> Tensor:
    """The rows of one walk through ``points`` (P, nz): (P-1, steps+1, nz), row k going from points[k] (first
    image) to points[k+1] (last image) in ``steps`` equal steps; consecutive rows share their end point."""
    path = interpolate_z(points, steps)                                       # ((P-1)*steps + 1, nz)
    return torch.stack([path[k * steps: k * steps + steps + 1] for k in range(len(points) - 1)])


def fig04_interpolation(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                        figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 4 (Sec. 6.1): ``interp_rows`` rows, each a linear path of ``interp_steps`` steps between two
    consecutive points of a walk through ``interp_points`` random points in Z (:func:`walk_rows`; module
    docstring). One panel per walk; the footer records every interpolation setting."""
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    dist, nz = models.z_dist(ckpt["run"]), netG.nz
    g = z_generator(figures["seed"])
    n_rows, pts, steps = figures["interp_rows"], figures["interp_points"], figures["interp_steps"]
    per_walk = pts - 1
    walks = -(-n_rows // per_walk)
    anchors = models.sample_z(walks * pts, nz, dist, generator=g).view(walks, pts, nz)  # (walks, P, nz)
    ref = models.sample_z(figures["bn_reference"], nz, dist, generator=g)               # (M, nz)
    rows = torch.cat([walk_rows(a, steps) for a in anchors])[:n_rows]                   # (rows, steps+1, nz)
    imgs = render(netG, rows.reshape(-1, nz), ref)                                      # (rows*(steps+1), H, W, C)
    cols = steps + 1
    panels = []
    for w in range(walks):
        r0, r1 = w * per_walk, min(n_rows, (w + 1) * per_walk)
        label = (f"walk {w + 1} of {walks}: {r1 - r0} rows = segments 1-{r1 - r0} of a walk through {pts} random "
                 f"points (row k: point k -> point k+1)")
        panels.append([Panel(image_grid(imgs[r0 * cols: r1 * cols], cols), label)])
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Interpolation settings: {n_rows} rows (figures.interp_rows) of {cols} images; each row is one segment "
        f"of a linear walk through {pts} random points in Z (figures.interp_points; z ~ {dist}, nz {nz}), "
        f"{steps} steps per segment (figures.interp_steps: t = 0, 1/{steps}, ..., 1, so a row's last image is the "
        f"next row's first); {walks} walk(s) of {per_walk} rows. Rendered beside {figures['bn_reference']} "
        f"reference z (figures.bn_reference: batch-norm statistics of a large random batch)."])
    return render_figure(panels, title=figure_title("fig04"), footer=foot, png=png, pdf=pdf)
