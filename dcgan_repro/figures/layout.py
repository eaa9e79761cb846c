"""Page layout shared by every figure: panels, image grids, title and footer, PNG + PDF written atomically.

Every figure is written as PNG and PDF through :func:`render_figure`: sample pixels are pasted into the canvas by
integer (nearest-neighbour) upscaling and drawn with ``figimage``, so the PNG shows the generated pixels exactly
(no resampling), and the pixel size of a figure follows from its content (:func:`layout`). Each figure has a
title naming the paper figure (:func:`figure_title`) and a footer (:func:`footer_text`) naming the dataset (and
any stand-in), the model run, preset, epoch, seed and code version, plus every proxy or fallback that was used.
Text is matplotlib's default DejaVu Sans: an 11-pt bold title, 8-pt labels and footer (:data:`CHAR_PX` is the
width budget of one 8-pt character). PNG and PDF carry no timestamps.

Every grid of samples is :func:`dcgan_repro.images.image_grid` with its defaults (white 2-pixel padding, the look
of torchvision's ``make_grid``); :func:`index_sheet` is a plain PNG of such a grid with each sample's index (the
Fig. 6 box template and the Fig. 7 exemplar pool).
"""

from __future__ import annotations

import logging
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dcgan_repro import io, paper
from dcgan_repro.images import GRID_PAD, image_grid

log = logging.getLogger(__name__)
PathLike = io.PathLike


# sizes in output pixels at DPI
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


def index_sheet(images: np.ndarray, path: PathLike, cols: int = 10, scale: int = 3) -> None:
    """PNG sheet of uint8 (N, H, W, C) images, upscaled ``scale`` x, each labelled with its index (top left)."""
    from PIL import Image, ImageDraw

    grid = image_grid(images, cols)  # (rows*(H+GRID_PAD)+GRID_PAD, cols*(W+GRID_PAD)+GRID_PAD, C), white padding
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


def figure_title(key: str, suffix: str = "") -> str:
    return paper.FIGURE_TITLES[key] + (f" ({suffix})" if suffix else "")
