"""Figures 2-11 of Radford, Metz & Chintala (2015): sample sheets and the Sec. 6 visualisations.

One function per rule (``sample_sheet``, ``fig04_interpolation`` ... ``fig09_mnist_samples``) plus the pieces they
are made of, each usable and tested on its own. Every figure is written as PNG and PDF through
:func:`render_figure`: sample pixels are pasted into the canvas by integer (nearest-neighbour) upscaling and
drawn with ``figimage``, so the PNG shows the generated pixels exactly (no resampling), and the pixel size of a
figure follows from its content (:func:`layout`). Each figure has a title naming the paper figure and a footer
naming the dataset (and any stand-in), the model run, preset, epoch, seed and code version, plus every proxy or
fallback that was used. Figures are deterministic from ``figures.seed`` (PNG/PDF carry no timestamps).

Sampling and batch norm. G's batch norm always normalises with the statistics of the batch being generated
(the authors' code; ``models.py``). ``models.generate`` is used for sample sheets (Figs. 2, 3, 9, 10, 11).
Figures that compare individual samples (Figs. 4, 6, 7, 8) render their few z **in the company of a reference
batch** of ``figures.bn_reference`` random z (:func:`render`): the batch statistics are then those of a large
random batch, so a z draws (almost exactly) the same image whatever else is rendered with it. D (Fig. 5) uses
fixed statistics averaged over real training images, exactly as the Sec. 5.1 feature extractor
(``features.fixed_bn_statistics``), so each image's guided backpropagation is independent of the others.

What the paper does not specify (REFERENCE.md Sec. 6: no code exists for Figs. 5-8) is chosen here and
documented at each function: guided backpropagation (Springenberg et al. 2014) from the maximal spatial response
of each of the first 6 channels of D's last conv layer; the window classifier's features and negatives; the
automatic exemplar choice of Figs. 7 and 8 (OpenCV cascades, with documented fallbacks).

Fig. 6 window boxes (``figures.window_boxes``): a JSON file ::

    {"samples": {"z_seed": 0, "n": 150},
     "boxes": [{"sample": 3, "x0": 10, "y0": 4, "x1": 30, "y1": 28}, ...]}

``samples`` says how the boxed images are drawn: ``n`` z from ``models.sample_z`` with a CPU generator seeded
with ``z_seed``, generated as one batch (so the images match those shown by the template). Each box gives a
sample index in ``[0, n)`` and a rectangle in that sample's output pixels (``0 <= x0 < x1 <= W``,
``0 <= y0 < y1 <= H``; x to the right, y down, x1/y1 exclusive). Optional keys: ``model``, ``image_size``, ``note``.
Make an empty one with its sample sheet and the individual samples to draw on::

    python -m dcgan_repro.plots make-box-template --model results/models/lsun/model.pt --out boxes/

(the paper drew 52 boxes on 150 samples). Without a box file, :func:`proxy_window_boxes` places one box on the
brightest 16x16 region of the 52 of 150 samples where it stands out most (windows are usually the brightest
part of a bedroom) and the figure and its JSON say that a proxy was used.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import math
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import features, io, models, paper, runtime

log = logging.getLogger(__name__)
PathLike = io.PathLike

# --- figure layout (output pixels at DPI) ---------------------------------------------------------------
DPI = 100
MIN_WIDTH_PX = 720     # small sheets are upscaled (by an integer factor) until about this wide
MAX_SCALE = 4          # ... but never more than 4x
MARGIN_PX = 10         # left/right/bottom margin
GAP_PX = 12            # between panels and between rows of panels
TITLE_PX = 30          # title band at the top
LABEL_PX = 18          # label band above each row of labelled panels
LINE_PX = 13           # one footer line (8-pt text)
FOOTER_PAD_PX = 6      # space between the last panel row and the footer
CHAR_PX = 6.5          # width budget of one 8-pt DejaVu Sans character at 100 dpi (wrapping, label slots)
GRID_PAD = 2           # white pixels between and around samples in a grid (torchvision make_grid padding)


@dataclass
class Panel:
    """One image block of a figure: uint8 (H, W, 3) or (H, W, 1), with an optional label printed above it."""

    image: np.ndarray
    label: str = ""


@dataclass
class Layout:
    """Where everything goes, in output pixels (origin top-left). ``boxes[r][p]`` = (x, y, w, h) of panel p of
    row r after upscaling by ``scale``."""

    width: int
    height: int
    scale: int
    boxes: list[list[tuple[int, int, int, int]]] = field(default_factory=list)
    footer_lines: list[str] = field(default_factory=list)
    footer_top: int = 0


def _label_px(label: str) -> int:
    return int(math.ceil(len(label) * CHAR_PX)) + 8 if label else 0


def layout(rows: Sequence[Sequence[Panel]], footer: str) -> Layout:
    """Pixel layout of a figure: panels side by side within a row (each slot as wide as its image or its
    label), rows stacked and centred, title band on top, footer wrapped to the width at the bottom."""
    if not rows or not all(rows):
        raise ValueError("a figure needs at least one row with at least one panel")
    raw_w = max(sum(p.image.shape[1] for p in row) for row in rows)
    scale = int(min(MAX_SCALE, max(1, math.ceil(MIN_WIDTH_PX / raw_w))))
    slots = [[max(p.image.shape[1] * scale, _label_px(p.label)) for p in row] for row in rows]
    row_w = [sum(sl) + GAP_PX * (len(sl) - 1) for sl in slots]
    width = max(MIN_WIDTH_PX, max(row_w) + 2 * MARGIN_PX)
    boxes: list[list[tuple[int, int, int, int]]] = []
    y = TITLE_PX
    for r, row in enumerate(rows):
        if any(p.label for p in row):
            y += LABEL_PX
        x = MARGIN_PX + (width - 2 * MARGIN_PX - row_w[r]) // 2  # rows centred
        row_boxes = []
        for p, slot in zip(row, slots[r]):
            h, w = p.image.shape[0] * scale, p.image.shape[1] * scale
            row_boxes.append((x, y, w, h))
            x += slot + GAP_PX
        boxes.append(row_boxes)
        y += max(b[3] for b in row_boxes) + (GAP_PX if r < len(rows) - 1 else 0)
    chars = max(40, int((width - 2 * MARGIN_PX) / CHAR_PX))
    lines = [ln for para in footer.split("\n") for ln in (textwrap.wrap(para, chars) or [""])]
    footer_top = y + FOOTER_PAD_PX
    height = footer_top + LINE_PX * len(lines) + MARGIN_PX
    return Layout(width=width, height=height, scale=scale, boxes=boxes, footer_lines=lines, footer_top=footer_top)


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"panel images must be uint8 H x W x 1|3, got {image.dtype} {image.shape}")
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def compose(rows: Sequence[Sequence[Panel]], lay: Layout) -> np.ndarray:
    """The figure's pixels without text: white canvas, each panel upscaled by ``lay.scale`` (nearest)."""
    canvas = np.full((lay.height, lay.width, 3), 255, dtype=np.uint8)
    for row, row_boxes in zip(rows, lay.boxes):
        for p, (x, y, w, h) in zip(row, row_boxes):
            up = np.repeat(np.repeat(_rgb(p.image), lay.scale, axis=0), lay.scale, axis=1)  # (h, w, 3)
            canvas[y:y + h, x:x + w] = up
    return canvas


def render_figure(rows: Sequence[Sequence[Panel]], *, title: str, footer: str, png: PathLike,
                  pdf: PathLike) -> Layout:
    """Draw panels, labels, title and footer; write PNG and PDF atomically. Returns the layout used."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    lay = layout(rows, footer)
    canvas = compose(rows, lay)
    # +0.25 px: figsize * dpi must not fall just below an integer (matplotlib truncates the pixel size).
    fig = Figure(figsize=((lay.width + 0.25) / DPI, (lay.height + 0.25) / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.figimage(canvas, 0, 0, origin="upper")  # 1 array pixel = 1 output pixel

    def text(x: float, y: float, s: str, **kw: Any) -> None:
        fig.text(x / lay.width, 1 - y / lay.height, s, va="top", **kw)

    text(MARGIN_PX, 7, title, fontsize=11, weight="bold")
    for row, row_boxes in zip(rows, lay.boxes):
        for p, (x, y, _w, _h) in zip(row, row_boxes):
            if p.label:
                text(x, y - LABEL_PX + 3, p.label, fontsize=8)
    for i, line in enumerate(lay.footer_lines):
        text(MARGIN_PX, lay.footer_top + i * LINE_PX, line, fontsize=8, color="#222222")
    for path, fmt, meta in ((png, "png", {"Software": None}),
                            (pdf, "pdf", {"CreationDate": None, "Creator": None, "Producer": None})):
        with io.atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=meta)
    log.info("wrote %s and %s (%d x %d px, samples at %dx)", png, pdf, lay.width, lay.height, lay.scale)
    return lay


def image_grid(images: np.ndarray, cols: int, pad: int = GRID_PAD) -> np.ndarray:
    """uint8 (N, H, W, C) -> one uint8 (rows*(H+pad)+pad, min(cols, N)*(W+pad)+pad, C) grid, row-major, white
    padding: the layout of ``torchvision.utils.make_grid(padding=pad, pad_value=255)``. Written with NumPy
    because importing torchvision costs ~2 s per figure job (it loads torch._dynamo), more than most figures."""
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"expected uint8 N x H x W x C images (N >= 1), got {images.dtype} {images.shape}")
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y:y + h, x:x + w] = images[i]
    return grid


# --- loading models and describing them -----------------------------------------------------------------


def _device(common: dict[str, Any]) -> torch.device:
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
                     f"{sorted(snaps)} (config runs.{ckpt['name']}.snapshot_epochs)")


def load_run(model_path: PathLike, device: torch.device, epoch: int | None = None
             ) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
    """``(netG, netD, ckpt)`` of a run's final model (``epoch=None``) or of its snapshot after ``epoch``."""
    netG, netD, ckpt = models.load_checkpoint(model_path, device)
    if epoch is not None and int(ckpt["epoch"]) != int(epoch):
        netG, netD, ckpt = models.load_checkpoint(snapshot_path(model_path, ckpt, int(epoch)), device)
    return netG, netD, ckpt


def data_description(ckpt: dict[str, Any] | None, data_dir: PathLike | None) -> tuple[str, str | None]:
    """(dataset name, stand-in text or None) from the model's ``data_meta``, else the dataset's meta.json."""
    meta = dict((ckpt or {}).get("data_meta") or {})
    if data_dir:
        for k, v in io.read_meta(data_dir).items():
            meta.setdefault(k, v)
    return str(meta.get("name", "unknown dataset")), meta.get("stand_in")


def describe_model(ckpt: dict[str, Any]) -> str:
    r = ckpt["run"]
    return (f"model: run '{ckpt['name']}' ({r.get('model')}, recipe {r.get('recipe')}, nz {r.get('nz')}, "
            f"ngf {r.get('ngf')}, ndf {r.get('ndf')}) at epoch {ckpt['epoch']} of {r.get('epochs')} "
            f"(step {ckpt['step']})")


def footer_text(ckpts: Sequence[dict[str, Any]], data_dir: PathLike | None, *, preset: str, seed: int,
                notes: Sequence[str] = ()) -> str:
    """The footer every figure carries: data (+ stand-in), model(s), epoch, preset, seed, code, notes."""
    name, stand_in = data_description(ckpts[0] if ckpts else None, data_dir)
    data = (f"Data: {name} - STAND-IN: {stand_in}; not the paper's data, not comparable to the paper."
            if stand_in else f"Data: {name} (the paper's dataset).")
    parts = [data, "; ".join(describe_model(c) for c in ckpts) + ".",
             f"Preset: {preset}. Figure seed {seed}. Code {io.code_version()}. {paper.PAPER}."]
    return "\n".join([*parts, *notes])


def _title(key: str, suffix: str = "") -> str:
    return paper.FIGURE_TITLES[key] + (f" ({suffix})" if suffix else "")


# --- rendering G --------------------------------------------------------------------------------------------


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


def _z_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def interpolate_z(points: Tensor, steps: int) -> Tensor:
    """Linear path through ``points`` (P, nz): ``steps`` images per segment (t = 0, 1/steps, ...) plus the last
    point, i.e. ((P-1)*steps + 1, nz); row k*steps is exactly points[k] (Fig. 4)."""
    if points.ndim != 2 or len(points) < 2 or steps < 1:
        raise ValueError(f"need (P >= 2, nz) points and steps >= 1, got {tuple(points.shape)} and {steps}")
    t = torch.arange(steps, dtype=points.dtype) / steps                       # (steps,)
    a, b = points[:-1], points[1:]                                            # (P-1, nz) each
    seg = a[:, None, :] + t[None, :, None] * (b - a)[:, None, :]              # (P-1, steps, nz)
    return torch.cat([seg.reshape(-1, points.shape[1]), points[-1:]])         # ((P-1)*steps + 1, nz)


# --- Figs. 2, 3, 10, 11: sample sheets ----------------------------------------------------------------------


def sample_sheet(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *, run: str,
                 epoch: int | None, figure: str, figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Figs. 2, 3, 10, 11: ``grid_rows x grid_cols`` samples of a run's G (a snapshot when ``epoch`` is set),
    drawn with ``models.generate`` (batch statistics, the authors' sampling) from ``figures.seed``."""
    dev = _device(common)
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
    return render_figure([[Panel(grid)]], title=_title(key, suffix), footer=foot, png=png, pdf=pdf)


# --- Fig. 4: walking in the latent space -------------------------------------------------------------------


def fig04_interpolation(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                        figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 4 (Sec. 6.1): each row walks linearly through ``interp_points`` random points in Z with
    ``interp_steps`` images per segment (:func:`interpolate_z`)."""
    dev = _device(common)
    netG, _, ckpt = load_run(model, dev)
    dist, nz = models.z_dist(ckpt["run"]), netG.nz
    g = _z_generator(figures["seed"])
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
                         title=_title("fig04"), footer=foot, png=png, pdf=pdf)


# --- Fig. 5: guided backpropagation ------------------------------------------------------------------------


class _GuidedReLUGrad(torch.autograd.Function):
    """Identity forward; backward lets only positive gradient through where the activation is positive."""

    @staticmethod
    def forward(ctx: Any, y: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(y > 0)
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad.clamp(min=0) * mask


@contextlib.contextmanager
def guided_relus(net: nn.Module) -> Iterator[list[int]]:
    """Guided backpropagation (Springenberg et al. 2014) inside the block: every ``nn.ReLU``/``nn.LeakyReLU`` of
    ``net`` passes gradient only where both its output and the incoming gradient are positive.

    A forward hook wraps each activation's output in :class:`_GuidedReLUGrad`; the mask is ``output > 0``, which
    equals ``input > 0`` for (leaky) ReLU even when the module works in place. Yields a one-element list
    counting hooked calls, so callers can check that the net's activations are modules (functional
    activations cannot be hooked).
    """
    calls = [0]

    def hook(_m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> Tensor:
        calls[0] += 1
        return _GuidedReLUGrad.apply(out)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def guided_backprop(net: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor,
                    select: Sequence[tuple[int, int, int, int]]) -> Tensor:
    """Guided gradients of chosen activations with respect to the input.

    ``forward(x)`` returns a (N, C, h, w) activation; ``select`` lists (image n, channel c, row i, col j), at
    most one per image; the result is d a[n, c, i, j] / d x[n] for every image (zero for unselected ones),
    shape of ``x``. ``net`` must normalise without batch statistics (eval mode) so images do not interact.
    """
    x = x.detach().clone().requires_grad_(True)
    with guided_relus(net) as calls:
        a = forward(x)                                                         # (N, C, h, w)
        if calls[0] == 0:
            raise RuntimeError(f"{type(net).__name__} has no nn.ReLU/nn.LeakyReLU modules on this path; guided "
                               "backpropagation needs module activations")
        n, c, i, j = (torch.as_tensor([s[k] for s in select], device=a.device) for k in range(4))
        (grad,) = torch.autograd.grad(a[n, c, i, j].sum(), x)
    return grad                                                                # (N, C, H, W)


def gradient_image(grad: Tensor) -> np.ndarray:
    """Guided gradients (N, C, H, W) -> uint8 (N, H, W, C) for display: per image, divided by its 99.5th
    percentile of |g|, mapped to 0.5 + 0.5 g and clipped (grey = no gradient)."""
    g = grad.detach().float().cpu()
    s = torch.quantile(g.abs().flatten(1), 0.995, dim=1).clamp(min=1e-12)       # (N,)
    v = (0.5 + 0.5 * g / s[:, None, None, None]).clamp(0, 1)
    return (v * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def top_responses(acts: Tensor, channel: int, k: int) -> list[tuple[int, int, int, int]]:
    """The ``k`` images with the largest spatial maximum of ``channel`` in ``acts`` (N, C, h, w), as
    (image, channel, row, col) of that maximum, strongest first."""
    a = acts[:, channel].flatten(1)                                            # (N, h*w)
    vals, pos = a.max(1)                                                       # (N,) each
    order = torch.argsort(vals, descending=True)[:k]
    w = acts.shape[3]
    return [(int(n), channel, int(pos[n]) // w, int(pos[n]) % w) for n in order]


def _fixed_bn_copy(netD: nn.Module, images: np.ndarray, seed: int, device: torch.device) -> nn.Module:
    """A copy of D in eval mode whose BN uses the average statistics of ``images`` (Sec. 5.1 features)."""
    stats = features.fixed_bn_statistics(netD, images, netD.output_range, seed=seed, device=device)
    net = copy.deepcopy(netD).to(device)
    features.apply_bn_statistics(net, stats)
    return net.eval()


def guided_backprop_panel(netD: nn.Module, images: np.ndarray, *, n_features: int, top: int, seed: int,
                          device: torch.device) -> tuple[np.ndarray, list[list[tuple[int, int, int, int]]]]:
    """For each of the first ``n_features`` channels of D's last conv layer: the ``top`` real images with the
    strongest response and the guided gradient of that single activation. Returns uint8 visualisations
    (n_features*top, H, W, C), row-major by feature, and the chosen (image, channel, row, col)."""
    net = _fixed_bn_copy(netD, images, seed, device)
    x = models.to_model_input(images, net.output_range).to(device)            # (N, C, H, W)
    with torch.no_grad():
        acts = torch.cat([net.features(x[s:s + 256])[-1] for s in range(0, len(x), 256)])  # (N, C_L, h, w)
    n_features = min(n_features, acts.shape[1])
    chosen = [top_responses(acts, c, top) for c in range(n_features)]
    vis = []
    for sel in chosen:
        idx = [s[0] for s in sel]
        local = [(i, *s[1:]) for i, s in enumerate(sel)]
        grad = guided_backprop(net, lambda t: net.features(t)[-1], x[idx], local)  # (top, C, H, W)
        vis.append(gradient_image(grad))
    return np.concatenate(vis), chosen


def fig05_guided_backprop(model: PathLike, data_dir: PathLike, png: PathLike, pdf: PathLike, *,
                          figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 5 (Sec. 6.2): guided backpropagation of the maximal axis-aligned responses of the first 6 features
    of D's last conv layer, on ``bn_reference`` real training images: a freshly initialised D (random filters,
    left) beside the trained D (right), plus the real images of the trained D's responses."""
    dev = _device(common)
    _, netD, ckpt = load_run(model, dev)
    x_all, _ = io.read_dataset(data_dir, "train")
    rng = np.random.default_rng(figures["seed"])
    n = min(figures["bn_reference"], len(x_all))
    idx = np.sort(rng.choice(len(x_all), n, replace=False))
    images = np.asarray(x_all[idx])                                            # (n, H, W, C)
    torch.manual_seed(figures["seed"])
    _, fresh = models.build_models(ckpt["run"])                                # same architecture, paper init
    top = min(figures["grid_cols"], n)
    nf = paper.FIG5_FEATURES
    vis_rand, _ = guided_backprop_panel(fresh.to(dev), images, n_features=nf, top=top, seed=figures["seed"],
                                        device=dev)
    vis_trained, chosen = guided_backprop_panel(netD, images, n_features=nf, top=top, seed=figures["seed"],
                                                device=dev)
    real = images[[s[0] for sel in chosen for s in sel]]
    with torch.no_grad():
        layer = len(netD.features(models.to_model_input(images[:2], netD.output_range).to(dev)))
    panels = [Panel(image_grid(vis_rand, top), "random filters (fresh D, same architecture)"),
              Panel(image_grid(vis_trained, top), f"trained D, conv layer {layer} (last)"),
              Panel(image_grid(real, top), "the real images (trained D)")]
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Rows: the first {len(chosen)} channels of D's last conv layer; columns: the {top} of {n} random real "
        f"training images with the largest response, strongest first; guided backpropagation (Springenberg et "
        f"al. 2014) of that single maximal activation to the pixels (grey = 0). BN: fixed statistics averaged "
        f"over the same {n} images, as for the Sec. 5.1 features. Random filters: the same architecture freshly "
        f"initialised (paper init) with torch seed {figures['seed']}."])
    return render_figure([panels], title=_title("fig05"), footer=foot, png=png, pdf=pdf)


# --- Fig. 6: forgetting to draw windows ---------------------------------------------------------------------


@dataclass
class BoxSpec:
    """A Fig. 6 box file (module docstring): how the boxed samples are drawn, and the boxes."""

    z_seed: int
    n: int
    boxes: list[dict[str, int]]
    source: str


_BOX_TOP_KEYS = {"samples", "boxes", "model", "image_size", "note"}


def read_box_file(path: PathLike, image_hw: tuple[int, int]) -> BoxSpec:
    """Read and check a box file; every error names the file, the box and what is allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figures.window_boxes: box file {path} does not exist (make one with "
                                f"`python -m dcgan_repro.plots make-box-template`)")
    try:
        spec = io.read_json(path)
    except ValueError as e:
        raise ValueError(f"figures.window_boxes: {path} is not valid JSON: {e}") from e
    if not isinstance(spec, dict) or not {"samples", "boxes"} <= set(spec) or set(spec) - _BOX_TOP_KEYS:
        raise ValueError(f"figures.window_boxes: {path} must be a JSON object with keys 'samples' and 'boxes' "
                         f"(optional: model, image_size, note); got {sorted(spec) if isinstance(spec, dict) else spec}")
    s = spec["samples"]
    if not isinstance(s, dict) or not all(isinstance(s.get(k), int) for k in ("z_seed", "n")) or s["n"] < 2:
        raise ValueError(f"figures.window_boxes: {path}: 'samples' must be {{\"z_seed\": int, \"n\": int >= 2}}, "
                         f"got {s!r}")
    h, w = image_hw
    boxes = []
    for i, b in enumerate(spec["boxes"]):
        keys = ("sample", "x0", "y0", "x1", "y1")
        if not isinstance(b, dict) or not all(isinstance(b.get(k), int) for k in keys):
            raise ValueError(f"figures.window_boxes: {path}: box {i} must have integer {', '.join(keys)}; got {b!r}")
        if not (0 <= b["sample"] < s["n"] and 0 <= b["x0"] < b["x1"] <= w and 0 <= b["y0"] < b["y1"] <= h):
            raise ValueError(f"figures.window_boxes: {path}: box {i} {b} is outside the allowed range: sample in "
                             f"[0, {s['n']}), 0 <= x0 < x1 <= {w}, 0 <= y0 < y1 <= {h}")
        boxes.append({k: int(b[k]) for k in keys})
    if not boxes:
        raise ValueError(f"figures.window_boxes: {path} has no boxes; draw some (the paper drew 52 on 150 "
                         f"samples) or set figures.window_boxes: null to use the automatic proxy")
    return BoxSpec(z_seed=s["z_seed"], n=s["n"], boxes=boxes, source=str(path))


def proxy_window_boxes(images: np.ndarray, n_boxes: int) -> list[dict[str, int]]:
    """Automatic stand-in for hand-drawn window boxes: on every sample, the (H/4 x W/4) box of highest mean
    luminance; kept on the ``n_boxes`` samples where that box exceeds the sample's mean luminance most (windows
    are usually the brightest part of a bedroom picture). One box per kept sample, strongest first."""
    import cv2

    n, h, w = images.shape[:3]
    bh, bw = max(1, h // 4), max(1, w // 4)
    lum = images.astype(np.float32).mean(axis=3)                               # (N, H, W)
    found = []
    for i in range(n):
        # mean over each bh x bw window, indexed by its top-left corner (valid positions only)
        m = cv2.boxFilter(lum[i], -1, (bw, bh), anchor=(0, 0), normalize=True,
                          borderType=cv2.BORDER_CONSTANT)[: h - bh + 1, : w - bw + 1]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        found.append((float(m[y, x] - lum[i].mean()), i, int(x), int(y)))
    found.sort(key=lambda f: (-f[0], f[1]))
    return [{"sample": i, "x0": x, "y0": y, "x1": x + bw, "y1": y + bh} for _, i, x, y in found[:n_boxes]]


class _SiteHooks:
    """Forward hooks on G's ``nn.ReLU``/``nn.LeakyReLU`` modules that index every 4-D activation in call order
    ("sites"), record their shapes, optionally keep one site's output and zero chosen maps at one site."""

    def __init__(self, netG: nn.Module, *, capture: int | None = None,
                 drop: tuple[int, Sequence[int]] | None = None) -> None:
        self.netG, self.capture, self.drop = netG, capture, drop
        self.shapes: list[tuple[int, ...]] = []
        self.names: list[str] = []
        self.captured: Tensor | None = None
        self._count = 0
        self._handles: list[Any] = []

    def __enter__(self) -> _SiteHooks:
        def reset(_m: nn.Module, _inp: Any) -> None:
            self._count = 0
            self.shapes, self.names = [], []

        self._handles.append(self.netG.register_forward_pre_hook(reset))
        for name, m in self.netG.named_modules():
            if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Callable[..., Tensor | None]:
        def hook(_m: nn.Module, _inp: Any, out: Tensor) -> Tensor | None:
            if out.dim() != 4:
                return None
            site = self._count
            self._count += 1
            self.shapes.append(tuple(out.shape[1:]))
            self.names.append(name)
            if self.drop is not None and site == self.drop[0]:
                keep = torch.ones(out.shape[1], device=out.device, dtype=out.dtype)
                keep[list(self.drop[1])] = 0
                out = out * keep[None, :, None, None]                          # (N, C, h, w), maps zeroed
            if site == self.capture:
                self.captured = out.detach()
            return out

        return hook

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


def activation_sites(netG: nn.Module, z: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, (C, h, w)) of every 4-D ReLU output of G, in call order (the conv feature layers)."""
    with _SiteHooks(netG) as hk, torch.no_grad():
        netG(z)
    return list(zip(hk.names, hk.shapes))


def second_highest_site(netG: nn.Module, z: Tensor) -> int:
    """Index of G's second-highest conv feature layer (Sec. 6.3.1): the last hidden 4-D activation is the
    highest, this is the one before it (dcgan64: the (2 ngf) x 16 x 16 layer, 256 maps at ngf = 128)."""
    sites = activation_sites(netG, z)
    if len(sites) < 2:
        raise ValueError(f"{type(netG).__name__} has {len(sites)} hidden conv (ReLU module) layers; Fig. 6 needs 2")
    return len(sites) - 2


def generate_with_sites(netG: nn.Module, z: Tensor, *, capture: int | None = None,
                        drop: tuple[int, Sequence[int]] | None = None,
                        reference: Tensor | None = None) -> tuple[np.ndarray, Tensor | None]:
    """Images of ``z`` (one batch, or beside ``reference``) with site ``drop[0]``'s maps ``drop[1]`` zeroed
    at every spatial location, and the activation (N, C, h, w) of site ``capture`` (of ``z`` only)."""
    dev = next(netG.parameters()).device
    zz = z.to(dev) if reference is None else torch.cat([reference.to(dev), z.to(dev)])
    with _SiteHooks(netG, capture=capture, drop=drop) as hk, torch.no_grad():
        out = netG(zz)
    m = 0 if reference is None else len(reference)
    act = None if hk.captured is None else hk.captured[m:]
    return models.to_uint8(out[m:], netG.output_range), act


def window_training_set(acts: np.ndarray, boxes: Sequence[dict[str, int]], image_hw: tuple[int, int],
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sec. 6.3.1 data for the window classifier: each spatial position of a (N, C, h, w) feature layer is a
    C-vector; positives are positions whose receptive-field centre (cell centre in output pixels) lies in a
    box (the cell under the box centre when the box is smaller than a cell); negatives are as many random
    positions outside every box of the same images. Returns X (M, C), y (M,) in {0, 1}."""
    n, c, h, w = acts.shape
    H, W = image_hw
    cy = (np.arange(h) + 0.5) * H / h                                          # (h,) cell centres, pixels
    cx = (np.arange(w) + 0.5) * W / w                                          # (w,)
    pos_mask = np.zeros((n, h, w), dtype=bool)
    for b in boxes:
        inside = ((cy[:, None] >= b["y0"]) & (cy[:, None] < b["y1"])) & ((cx[None, :] >= b["x0"]) &
                                                                          (cx[None, :] < b["x1"]))
        if not inside.any():
            iy = min(h - 1, int((b["y0"] + b["y1"]) / 2 * h / H))             # cell under the box centre
            ix = min(w - 1, int((b["x0"] + b["x1"]) / 2 * w / W))
            inside[iy, ix] = True
        pos_mask[b["sample"]] |= inside
    X, y = [], []
    for i in sorted({b["sample"] for b in boxes}):
        pos = np.flatnonzero(pos_mask[i].ravel())
        neg_all = np.flatnonzero(~pos_mask[i].ravel())
        neg = rng.choice(neg_all, size=min(len(pos), len(neg_all)), replace=False)
        feats = acts[i].reshape(c, h * w).T                                    # (h*w, C)
        X += [feats[pos], feats[neg]]
        y += [np.ones(len(pos)), np.zeros(len(neg))]
    return np.concatenate(X), np.concatenate(y).astype(np.int64)


def fit_window_classifier(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Logistic regression (sklearn, default L2, C = 1) window vs not-window; the maps to drop are those with
    weight > 0 (Sec. 6.3.1). Returns (maps to drop, stats incl. training and 5-fold CV accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if len(np.unique(y)) < 2:
        raise ValueError("window classifier needs positives and negatives; every position was inside a box")
    clf = LogisticRegression(max_iter=2000).fit(X, y)
    stats: dict[str, Any] = {"n_positive": int(y.sum()), "n_negative": int((1 - y).sum()),
                             "train_accuracy": float(clf.score(X, y)), "cv_accuracy": None}
    if np.bincount(y).min() >= 5:
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        stats["cv_accuracy"] = float(cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=cv).mean())
    return np.flatnonzero(clf.coef_[0] > 0), stats


def _draw_boxes(images: np.ndarray, boxes: Sequence[dict[str, int]]) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(images.copy())
    for b in boxes:
        cv2.rectangle(out[b["sample"]], (b["x0"], b["y0"]), (b["x1"] - 1, b["y1"] - 1), (255, 0, 0), 1)
    return out


def fig06_window_dropout(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike,
                         stats_path: PathLike, *, figures: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """Fig. 6 (Sec. 6.3.1): fit window vs not-window on G's second-highest conv layer, drop the maps with
    positive weight everywhere, and show new samples without (top) and with (bottom) the drop.

    Boxes come from ``figures.window_boxes`` or, when null, from :func:`proxy_window_boxes` on
    ``paper.FIG6_SAMPLES`` samples (``paper.FIG6_BOXES`` boxes); the caption and ``stats_path`` say which.
    """
    t0 = time.time()
    dev = _device(common)
    netG, _, ckpt = load_run(model, dev)
    dist, nz, seed = models.z_dist(ckpt["run"]), netG.nz, figures["seed"]
    H, W = netG.image_shape[1:]
    spec = read_box_file(figures["window_boxes"], (H, W)) if figures["window_boxes"] else None
    z_seed, n = (spec.z_seed, spec.n) if spec else (seed, paper.FIG6_SAMPLES)
    z_boxed = models.sample_z(n, nz, dist, generator=_z_generator(z_seed))     # (n, nz), one batch (template)
    site = second_highest_site(netG, z_boxed[:2].to(dev))
    images, acts = generate_with_sites(netG, z_boxed, capture=site)           # (n, H, W, C), (n, C, h, w)
    boxes = spec.boxes if spec else proxy_window_boxes(images, paper.FIG6_BOXES)
    rng = np.random.default_rng(seed)
    X, y = window_training_set(acts.float().cpu().numpy(), boxes, (H, W), rng)
    drop, clf_stats = fit_window_classifier(X, y, seed)
    # new samples: figure-seed stream after the first n draws (never the boxed samples when z_seed == seed)
    g = _z_generator(seed)
    models.sample_z(n, nz, dist, generator=g)
    pairs, cols = max(1, figures["grid_rows"] // 2), figures["grid_cols"]
    z_new = models.sample_z(pairs * cols, nz, dist, generator=g)
    ref = models.sample_z(figures["bn_reference"], nz, dist, generator=g)
    plain, _ = generate_with_sites(netG, z_new, reference=ref)
    dropped, act_dropped = generate_with_sites(netG, z_new, capture=site, drop=(site, drop), reference=ref)
    c_maps = int(acts.shape[1])
    src = (f"box file {spec.source}" if spec else
           f"AUTOMATIC PROXY, no hand-drawn boxes: the brightest {H // 4}x{W // 4} region of the {len(boxes)} "
           f"of {n} samples where it stands out most (figures.window_boxes is null)")
    stats = {
        "figure": "fig06_window_dropout", "proxy_used": spec is None, "boxes_source": src,
        "n_samples": n, "z_seed": z_seed, "n_boxes": len(boxes),
        "layer": {"site": site, "module": activation_sites(netG, z_boxed[:2].to(dev))[site][0],
                  "shape": list(acts.shape[1:])},
        "n_maps": c_maps, "n_maps_dropped": int(len(drop)), "dropped_maps": drop.tolist(),
        "classifier": {"model": "sklearn LogisticRegression (L2, C=1)", **clf_stats},
        "dropped_maps_all_zero": bool(act_dropped[:, torch.as_tensor(drop)].abs().max() == 0) if len(drop) else True,
        "mean_abs_pixel_change": float(np.abs(plain.astype(np.float32) - dropped.astype(np.float32)).mean()),
        "paper": {"n_samples": paper.FIG6_SAMPLES, "n_boxes": paper.FIG6_BOXES,
                  "n_maps_dropped": paper.FIG6_MAPS_DROPPED},
    }
    stats["provenance"] = io.provenance(config={"figures": figures, "common": common}, seed=seed,
                                        inputs={"model": model}, started=t0)
    io.write_json(stats_path, stats)
    cv = clf_stats["cv_accuracy"]
    shown = sorted({b["sample"] for b in boxes})[:cols]
    boxed = _draw_boxes(images, [b for b in boxes if b["sample"] in shown])[shown]
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=seed, notes=[
        f"Boxes: {src}. Logistic regression on the {c_maps} maps of conv layer '{stats['layer']['module']}' "
        f"({'x'.join(map(str, acts.shape[1:]))}); {clf_stats['n_positive']} in-box positions vs "
        f"{clf_stats['n_negative']} random out-of-box positions of the same images; training accuracy "
        f"{clf_stats['train_accuracy']:.3f}" + (f", 5-fold CV {cv:.3f}" if cv is not None else "") +
        f". {len(drop)} maps with positive weight dropped at every position (paper: ~{paper.FIG6_MAPS_DROPPED} "
        f"from {paper.FIG6_BOXES} boxes on {paper.FIG6_SAMPLES} samples). Rendered beside "
        f"{figures['bn_reference']} reference z."])
    rows = [[Panel(image_grid(boxed, cols), f"boxes used ({'proxy' if spec is None else 'hand-drawn'}), "
                                            f"first {len(shown)} boxed samples")],
            [Panel(image_grid(plain, cols), "unmodified samples")],
            [Panel(image_grid(dropped, cols), f"same z, {len(drop)} 'window' maps dropped")]]
    render_figure(rows, title=_title("fig06", "PROXY boxes" if spec is None else ""), footer=foot, png=png,
                  pdf=pdf)
    return stats


def index_sheet(images: np.ndarray, path: PathLike, cols: int = 10, scale: int = 3) -> None:
    """PNG sheet of uint8 (N, H, W, C) images, upscaled ``scale`` x, each labelled with its index (top left)."""
    from PIL import Image, ImageDraw

    grid = image_grid(images, cols, pad=GRID_PAD)
    sheet = Image.fromarray(np.repeat(np.repeat(grid, scale, 0), scale, 1).squeeze())
    draw = ImageDraw.Draw(sheet)
    h, w = images.shape[1:3]
    for i in range(len(images)):
        r, c = divmod(i, cols)
        x, y = (GRID_PAD + c * (w + GRID_PAD)) * scale, (GRID_PAD + r * (h + GRID_PAD)) * scale
        draw.rectangle([x, y, x + 22, y + 11], fill=(0, 0, 0))
        draw.text((x + 2, y), str(i), fill=(255, 255, 0))
    with io.atomic_path(path) as tmp:
        sheet.save(tmp, format="png")


def exemplar_pool_sheet(model: PathLike, out: PathLike, *, figures: dict[str, Any], device: str = "cpu") -> Path:
    """Fig. 7 by hand: write the ``exemplar_pool`` samples that :func:`fig07_vector_arithmetic` draws (same
    ``figures.seed``, ``bn_reference`` and ``exemplar_pool``), each labelled with its index, so a user can pick
    concepts A, B, C (e.g. smiling woman, neutral woman, neutral man) and set ``figures.exemplar_ids``."""
    netG, _, ckpt = models.load_checkpoint(model, runtime.resolve_device(device))
    _, _, _, pool = _pool(netG, ckpt, figures)
    index_sheet(pool, out, cols=25)
    log.info("wrote the %d Fig. 7 pool samples with their indices to %s", len(pool), out)
    return Path(out)


def make_box_template(model: PathLike, out_dir: PathLike, *, n: int = paper.FIG6_SAMPLES, z_seed: int = 0,
                      device: str = "cpu") -> Path:
    """Write ``window_boxes.json`` (empty box list), ``window_boxes_sheet.png`` (all samples with their index)
    and ``samples/sample_NNN.png`` (each sample at its own pixel size, to read box coordinates from) into
    ``out_dir``; the images are exactly those :func:`fig06_window_dropout` boxes. Returns the JSON path."""
    from PIL import Image

    dev = runtime.resolve_device(device)
    netG, _, ckpt = models.load_checkpoint(model, dev)
    z = models.sample_z(n, netG.nz, models.z_dist(ckpt["run"]), generator=_z_generator(z_seed))
    images, _ = generate_with_sites(netG, z)                                   # (n, H, W, C), one batch
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        with io.atomic_path(out / "samples" / f"sample_{i:03d}.png") as tmp:
            Image.fromarray(im.squeeze(-1) if im.shape[2] == 1 else im).save(tmp, format="png")
    index_sheet(images, out / "window_boxes_sheet.png")
    h, w = images.shape[1:3]
    spec = {"samples": {"z_seed": int(z_seed), "n": int(n)}, "boxes": [], "model": str(model),
            "image_size": [int(h), int(w)],
            "note": ("Add one {\"sample\": i, \"x0\", \"y0\", \"x1\", \"y1\"} per window, in the pixels of "
                     "samples/sample_<i>.png (x right, y down, x1/y1 exclusive); the paper drew 52 boxes on 150 "
                     "samples. Then set figures.window_boxes to this file.")}
    io.write_json(out / "window_boxes.json", spec)
    log.info("wrote box template for %d samples to %s", n, out)
    return out / "window_boxes.json"


# --- Figs. 7 and 8: exemplars picked automatically ----------------------------------------------------------


def _cascade(name: str) -> Any:
    import cv2

    c = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / name))
    if c.empty():
        raise RuntimeError(f"OpenCV cascade {name} not found in {cv2.data.haarcascades} (needs opencv < 5)")
    return c


def _gray(images: np.ndarray) -> np.ndarray:
    rgb = images.astype(np.float32) if images.shape[3] == 3 else np.repeat(images.astype(np.float32), 3, 3)
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).round().clip(0, 255).astype(np.uint8)


def cascade_counts(gray: np.ndarray, cascade: str, *, region: tuple[float, float, float, float] = (0, 0, 1, 1),
                   mirror: bool = False, min_size: int = 12, min_neighbors: int = 0) -> np.ndarray:
    """Detections of an OpenCV Haar cascade per image of ``gray`` (N, H, W) inside ``region`` (fractions y0, x0,
    y1, x1), on the mirrored image if ``mirror``. With ``min_neighbors=0`` these are the raw hits, whose number
    serves as a confidence score."""
    c = _cascade(cascade)
    n, h, w = gray.shape
    y0, x0, y1, x1 = int(region[0] * h), int(region[1] * w), int(region[2] * h), int(region[3] * w)
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        g = gray[i, y0:y1, x0:x1]
        g = np.ascontiguousarray(g[:, ::-1] if mirror else g)
        out[i] = len(c.detectMultiScale(g, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(min_size, min_size)))
    return out


def _ranks(v: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties share their mean rank)."""
    from scipy.stats import rankdata

    return (rankdata(v) - 1) / max(1, len(v) - 1)


def attribute_values(images: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    """Fig. 7 attribute scores of face samples (N, H, W, C): ``a2`` = mean luminance of the central half
    ("light face"); ``a1`` = raw smile-cascade detections in the lower half (``mode="smile"``) or mean luminance
    of the outer border, 1/8 of the side (``mode="background"``, "light background")."""
    gray = _gray(images)
    n, h, w = gray.shape
    out = {"a2": gray[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(n, -1).mean(1)}
    if mode == "smile":
        out["a1"] = cascade_counts(gray, "haarcascade_smile.xml", region=(0.5, 0.0, 1.0, 1.0),
                                   min_size=8).astype(np.float64)
    elif mode == "background":
        b = max(1, h // 8)
        out["a1"] = np.concatenate([gray[:, :b].reshape(n, -1), gray[:, -b:].reshape(n, -1),
                                    gray[:, :, :b].reshape(n, -1), gray[:, :, -b:].reshape(n, -1)], 1).mean(1)
    else:
        raise ValueError(f"attribute mode {mode!r}; allowed: smile, background")
    return out


ATTRIBUTE_NAMES = {"smile": {"a1": "smiling", "a2": "light face"},
                   "background": {"a1": "light background", "a2": "light face"}}


def concept_mode(images: np.ndarray, k: int) -> tuple[str, np.ndarray]:
    """Which attributes Fig. 7 can use on this pool, and which samples may serve as exemplars.

    "smile" (OpenCV ``haarcascade_smile.xml``) only where ``haarcascade_frontalface_default.xml`` finds a face
    (the smile cascade also fires on noise), and only if at least ``3k`` samples have a face, ``k`` of them
    smile (a detection with 5 neighbours) and ``2k`` do not; otherwise the "background" fallback over all
    samples. Both are crude proxies for the paper's hand-picked concepts (e.g. smiling woman, neutral man).
    The face cascade looks at each sample with a replicated border of a quarter side: samples of a model trained
    on tight face crops fill the frame and leave the cascade no context (measured on the faces model trained on
    the LFW crops, 1000 samples: 14% found without the border, 92% with it).
    """
    import cv2

    gray = _gray(images)
    h = gray.shape[1]
    pad = h // 4
    framed = np.stack([cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REPLICATE) for g in gray])
    face = cascade_counts(framed, "haarcascade_frontalface_default.xml", min_size=max(12, h // 3),
                          min_neighbors=3) > 0
    smiling = cascade_counts(gray, "haarcascade_smile.xml", region=(0.5, 0.0, 1.0, 1.0), min_size=8,
                             min_neighbors=5) > 0
    if int(face.sum()) >= 3 * k and int((face & smiling).sum()) >= k and int((face & ~smiling).sum()) >= 2 * k:
        return "smile", face
    return "background", np.ones(len(gray), dtype=bool)


def pick_concepts(a1: np.ndarray, a2: np.ndarray, k: int, eligible: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Exemplar indices for Y = A - B + C: A = high a1 & high a2, B = low a1 & high a2, C = low a1 & low a2, so
    Y should show high a1 & low a2. Each is the top ``k`` of a sum of percentile ranks (among ``eligible``
    samples), without reuse."""
    idx = np.arange(len(a1)) if eligible is None else np.flatnonzero(eligible)
    if len(idx) < 3 * k:
        raise ValueError(f"need at least {3 * k} candidate samples for 3 concepts x {k} exemplars, got {len(idx)} "
                         f"(figures.exemplar_pool / figures.exemplars)")
    r1, r2 = _ranks(a1[idx]), _ranks(a2[idx])
    used: set[int] = set()
    out = {}
    for name, score in (("A", r1 + r2), ("B", -r1 + r2), ("C", -r1 - r2)):
        order = [int(i) for i in np.argsort(-score, kind="stable") if int(i) not in used][:k]
        used |= set(order)
        out[name] = idx[np.array(order)]
    return out


def arithmetic_z(zA: Tensor, zB: Tensor, zC: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """Fig. 7: Y = mean(zA) - mean(zB) + mean(zC); returns (9, nz) with Y at index 4 (the centre of a 3x3
    grid) and 8 neighbours Y + U(-noise, noise)."""
    y = zA.mean(0) - zB.mean(0) + zC.mean(0)                                   # (nz,)
    eps = (torch.rand(paper.FIG7_NEIGHBOURS, y.shape[0], generator=generator) * 2 - 1) * noise  # (8, nz)
    nb = y[None] + eps
    return torch.cat([nb[:4], y[None], nb[4:]])                                 # (9, nz)


def _pool(netG: nn.Module, ckpt: dict[str, Any], figures: dict[str, Any]
          ) -> tuple[torch.Generator, Tensor, Tensor, np.ndarray]:
    """Figure-seed generator, reference z, pool z and pool images (rendered beside the reference)."""
    dist, nz = models.z_dist(ckpt["run"]), netG.nz
    g = _z_generator(figures["seed"])
    ref = models.sample_z(figures["bn_reference"], nz, dist, generator=g)       # (M, nz)
    pool_z = models.sample_z(figures["exemplar_pool"], nz, dist, generator=g)   # (P, nz)
    return g, ref, pool_z, render(netG, pool_z, ref)


def fig07_vector_arithmetic(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                            figures: dict[str, Any], common: dict[str, Any],
                            exemplar_ids: dict[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Fig. 7 (Sec. 6.3.2): average Z of ``exemplars`` samples per concept, Y = A - B + C, Y and 8 neighbours
    with uniform noise ``arithmetic_noise``; the same arithmetic in pixel space for comparison.

    ``exemplar_ids`` ({"A": [...], "B": [...], "C": [...]}, indices into the pool of ``exemplar_pool`` samples)
    overrides the automatic choice (:func:`concept_mode`, :func:`attribute_values`, :func:`pick_concepts`).
    Returns what was chosen, with Y's measured attribute percentiles in the pool (a check that the arithmetic
    did something).
    """
    dev = _device(common)
    netG, _, ckpt = load_run(model, dev)
    k = figures["exemplars"]
    g, ref, pool_z, pool = _pool(netG, ckpt, figures)
    mode, eligible = concept_mode(pool, k)
    attrs, names, fallback = attribute_values(pool, mode), ATTRIBUTE_NAMES[mode], mode != "smile"
    if exemplar_ids:
        picks = {c: np.asarray(exemplar_ids[c], dtype=np.int64).reshape(-1) for c in "ABC"}
        bad = {c: v.tolist() for c, v in picks.items() if len(v) == 0 or v.min() < 0 or v.max() >= len(pool)}
        if bad:
            raise ValueError(f"figures.exemplar_ids: {bad} are not non-empty lists of sample indices in "
                             f"[0, {len(pool)}) (figures.exemplar_pool = {len(pool)})")
        how = "exemplars listed by the user"
    else:
        picks = pick_concepts(attrs["a1"], attrs["a2"], k, eligible)
        how = (f"exemplars picked AUTOMATICALLY from {len(pool)} samples by proxy attributes: "
               f"'{names['a1']}'" + (" (FALLBACK: too few samples with a frontal face and a smile for the OpenCV "
                                     "smile cascade)" if fallback else
                                     f" (OpenCV haarcascade_smile.xml on the lower half of the {int(eligible.sum())} "
                                     "samples with a frontal-face detection)") +
               f" and '{names['a2']}' (mean luminance of the central region)")
    zs = {c: pool_z[picks[c]] for c in "ABC"}
    z9 = arithmetic_z(zs["A"], zs["B"], zs["C"], figures["arithmetic_noise"], g)
    means = torch.stack([zs[c].mean(0) for c in "ABC"])                        # (3, nz)
    imgs = render(netG, torch.cat([means, z9]), ref)                           # (12, H, W, C)
    mean_imgs, result = imgs[:3], imgs[3:]
    pix = (pool[picks["A"]].astype(np.float32).mean(0) - pool[picks["B"]].astype(np.float32).mean(0)
           + pool[picks["C"]].astype(np.float32).mean(0)).round().clip(0, 255).astype(np.uint8)
    # where Y's image lands among the pool (percentiles of the same attributes)
    y_attrs = attribute_values(result[4:5], mode)
    pct = {a: float((attrs[a][eligible] < y_attrs[a][0]).mean() * 100) for a in ("a1", "a2")}
    lab = {"A": f"A: {names['a1']}, {names['a2']}", "B": f"- B: not {names['a1']}, {names['a2']}",
           "C": f"+ C: not {names['a1']}, not {names['a2']}"}
    panels = [Panel(image_grid(np.concatenate([pool[picks[c]], mean_imgs[i:i + 1]]), 1), lab[c])
              for i, c in enumerate("ABC")]
    panels.append(Panel(image_grid(result, 3), f"= Y (centre), Y + U(±{figures['arithmetic_noise']})"))
    panels.append(Panel(image_grid(pix[None], 1), "pixel space A-B+C"))
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Concepts: {how}. Columns: {k} exemplars and, below, G(mean z). Expected: Y shows '{names['a1']}' and "
        f"not '{names['a2']}'; measured percentiles of Y in the pool: {names['a1']} {pct['a1']:.0f}, "
        f"{names['a2']} {pct['a2']:.0f}. Rendered beside {figures['bn_reference']} reference z."])
    render_figure([panels], title=_title("fig07", "automatic proxy exemplars" if not exemplar_ids else ""),
                  footer=foot, png=png, pdf=pdf)
    return {"picks": {c: v.tolist() for c, v in picks.items()}, "attributes": names, "fallback": fallback,
            "y_percentiles": pct}


def turn_scores(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 8 pose score per face sample: > 0 looking left (nose toward the image's left), < 0 looking right.

    OpenCV's ``haarcascade_profileface.xml`` detects left-facing profiles only; run on the image it counts
    left-looking evidence, on the mirror image right-looking evidence; the score is the difference of raw
    detection counts. Returns (score (N,), counts (2, N): left, right). See :func:`fig08_turn_vector` for the
    fallback when the cascade finds too few profiles.
    """
    gray = _gray(images)
    left = cascade_counts(gray, "haarcascade_profileface.xml", min_size=max(12, gray.shape[1] // 3))
    right = cascade_counts(gray, "haarcascade_profileface.xml", mirror=True, min_size=max(12, gray.shape[1] // 3))
    score = (left - right).astype(np.float64)
    return score, np.stack([left, right])


def luminance_offset(images: np.ndarray) -> np.ndarray:
    """Fallback pose proxy: horizontal offset of the luminance centroid from the image centre, in fractions
    of the width (negative = the bright face mass sits left, read as looking left). Crude: lighting moves it."""
    lum = _gray(images).astype(np.float64)                                     # (N, H, W)
    w = lum.shape[2]
    x = (np.arange(w) + 0.5) / w - 0.5                                         # (W,)
    col = lum.sum(1)                                                           # (N, W)
    return (col * x).sum(1) / np.maximum(col.sum(1), 1e-9)


def fig08_turn_vector(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                      figures: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """Fig. 8 (Sec. 6.3.2): turn = mean z of ``turn_exemplars`` left-looking minus right-looking faces;
    rows are random faces z + a * turn for a from -1 to 1 (``interp_steps + 1`` columns).

    Left/right come from the profile cascade (:func:`turn_scores`); when it fires on fewer than
    ``turn_exemplars`` samples per direction (tiny demo models), the luminance-centroid proxy
    (:func:`luminance_offset`) decides instead and the title and footer say so.
    """
    dev = _device(common)
    netG, _, ckpt = load_run(model, dev)
    k = figures["turn_exemplars"]
    g, ref, pool_z, pool = _pool(netG, ckpt, figures)
    score, counts = turn_scores(pool)
    proxy = int((score > 0).sum()) < k or int((score < 0).sum()) < k
    if proxy:
        score = -luminance_offset(pool)
    order = np.argsort(-score, kind="stable")
    left, right = order[:k].copy(), order[::-1][:k].copy()
    turn = pool_z[left].mean(0) - pool_z[right].mean(0)                        # (nz,)
    rows, cols = figures["interp_rows"], figures["interp_steps"] + 1
    base = models.sample_z(rows, netG.nz, models.z_dist(ckpt["run"]), generator=g)  # (rows, nz)
    alphas = torch.linspace(-1, 1, cols)                                       # (cols,)
    z = (base[:, None, :] + alphas[None, :, None] * turn[None, None, :]).reshape(-1, netG.nz)  # (rows*cols, nz)
    imgs = render(netG, z, ref)
    how = ("AUTOMATIC PROXY: the profile-face cascade fired on too few samples "
           f"({int((counts[0] > 0).sum())} left, {int((counts[1] > 0).sum())} right of {len(pool)}), so 'looking "
           "left' = luminance centroid left of centre (crude; lighting also moves it)") if proxy else (
           f"left/right from OpenCV haarcascade_profileface.xml on each sample and its mirror image "
           f"({len(pool)} samples scored)")
    panels = [[Panel(image_grid(pool[left], k), f"{k} 'looking left'"),
               Panel(image_grid(pool[right], k), f"{k} 'looking right'")],
              [Panel(image_grid(imgs, cols), "z + a·turn, a = -1 (left column) ... +1 (right column)")]]
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"turn = mean z of {k} left-looking minus {k} right-looking samples; {how}. Rendered beside "
        f"{figures['bn_reference']} reference z."])
    render_figure(panels, title=_title("fig08", "PROXY pose" if proxy else ""), footer=foot, png=png, pdf=pdf)
    return {"proxy_used": proxy, "left": left.tolist(), "right": right.tolist(),
            "turn_norm": float(turn.norm())}


# --- Fig. 9: MNIST real / GAN / DCGAN ----------------------------------------------------------------------


def real_per_class(data_dir: PathLike, n_classes: int, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` random training images of each class, class-major: (n_classes*per_class, H, W, C)."""
    x, y = io.read_dataset(data_dir, "train")
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            raise ValueError(f"{data_dir}: no training image of class {c} (labels: train_y.npy)")
        out.append(np.asarray(x[np.sort(rng.choice(idx, per_class, replace=len(idx) < per_class))]))
    return np.concatenate(out)


def fig09_mnist_samples(dcgan: PathLike, gan: PathLike, data_dir: PathLike, png: PathLike, pdf: PathLike, *,
                        figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 9 (Sec. 8.1): real MNIST, the GAN baseline and the DCGAN side by side; 10 classes (rows) x 20
    samples, generated class-conditionally with ``models.generate`` from ``figures.seed``."""
    dev = _device(common)
    gG, _, ckpt_gan = load_run(gan, dev)
    dG, _, ckpt_dcgan = load_run(dcgan, dev)
    n_classes, per = dG.n_classes or paper.FIG9_CLASSES, paper.FIG9_PER_CLASS
    labels = np.repeat(np.arange(n_classes), per)                               # class-major rows
    real = real_per_class(data_dir, n_classes, per, figures["seed"])
    panels = [Panel(image_grid(real, per), "real data")]
    for netG, ckpt, label in ((gG, ckpt_gan, "GAN baseline"), (dG, ckpt_dcgan, "DCGAN")):
        imgs = models.generate(netG, len(labels), z_dist=models.z_dist(ckpt["run"]), seed=figures["seed"],
                               labels=labels if netG.n_classes else None, device=dev,
                               precision=runtime.job_precision(common, dev))
        panels.append(Panel(image_grid(imgs, per), f"{label} ('{ckpt['name']}')"))
    foot = footer_text([ckpt_dcgan, ckpt_gan], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Rows: classes 0-{n_classes - 1}; {per} samples each; generated samples conditioned on the row's class."])
    return render_figure([panels], title=_title("fig09"), footer=foot, png=png, pdf=pdf)


# --- command line ------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dcgan_repro.plots make-box-template --model M --out DIR [--n 150] [--z-seed 0]`` (Fig. 6) and
    ``python -m dcgan_repro.plots exemplar-pool --model M --out pool.png`` (Fig. 7 exemplar ids)."""
    p = argparse.ArgumentParser(prog="python -m dcgan_repro.plots", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("make-box-template", help="Fig. 6: sample sheet with indices + empty box file")
    t.add_argument("--model", required=True, help="results/models/<run>/model.pt (the LSUN run)")
    t.add_argument("--out", required=True, help="folder for window_boxes.json, the sheet and samples/")
    t.add_argument("--n", type=int, default=paper.FIG6_SAMPLES, help="samples to draw (paper: 150)")
    t.add_argument("--z-seed", type=int, default=0, help="seed of the samples' z")
    t.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    e = sub.add_parser("exemplar-pool", help="Fig. 7: the exemplar pool with indices, for figures.exemplar_ids")
    e.add_argument("--model", required=True, help="results/models/<run>/model.pt (the faces run)")
    e.add_argument("--out", required=True, help="PNG to write")
    e.add_argument("--seed", type=int, default=0, help="figures.seed (must match the config)")
    e.add_argument("--bn-reference", type=int, default=512, help="figures.bn_reference (must match)")
    e.add_argument("--pool", type=int, default=1000, help="figures.exemplar_pool (must match)")
    e.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    a = p.parse_args(argv)
    runtime.setup_logging(None)
    if a.cmd == "exemplar-pool":
        exemplar_pool_sheet(a.model, a.out, device=a.device, figures={
            "seed": a.seed, "bn_reference": a.bn_reference, "exemplar_pool": a.pool})
        log.info("pick 'figures.exemplar_ids: {A: [...], B: [...], C: [...]}' from the indices in %s", a.out)
        return 0
    path = make_box_template(a.model, a.out, n=a.n, z_seed=a.z_seed, device=a.device)
    log.info("draw boxes into %s, then set figures.window_boxes: %s", path, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
