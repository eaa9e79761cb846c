"""Planted near-duplicates: the material the dedup stage is tested on, made one way for every collection.

The demo LSUN stand-in (:data:`dcgan_repro.data.demo.DUPLICATE_KINDS`) and ``benchmarks/eval_dedup.py``
(``KINDS``) name their own duplicate kinds, each a :class:`Kind`: an operation with a parameter range, drawn per
duplicate by :func:`plant`. :func:`dcgan_repro.dedup.planted_scores` scores a hash against what was planted.

The operations (:data:`OPS`; "px" are pixels of the ``size`` x ``size`` image, the window ops move the crop window
in the source by the matching number of source pixels):

- ``exact``: an unchanged copy (no parameter).
- ``jpeg``: a JPEG re-encode (OpenCV) at quality ``lo..hi``.
- ``shift``: the crop window moved ``lo..hi`` px along one axis, in one of the 4 directions.
- ``shift_xy``: the crop window moved ``lo..hi`` px along each axis, in a direction from ``signs`` on each.
- ``crop``: the crop window less ``lo..hi`` px on each side, resized back bilinearly (a zoom on the same centre).
- ``gain``: every grey level multiplied by ``lo..hi`` (brightness).
- ``offset``: ``lo..hi`` grey levels added, the sign drawn from ``signs`` (brightness).
- ``contrast``: every grey level's distance to the image mean multiplied by ``lo..hi``.

A parameter is drawn uniformly from ``lo..hi`` (an integer, except for ``gain`` and ``contrast``); a fixed one
(``lo == hi``) and a single sign draw nothing from the random generator (the shifts' directions are always
drawn). Values are rounded and clipped to uint8.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

OPS = ("exact", "jpeg", "shift", "shift_xy", "crop", "gain", "offset", "contrast")
WINDOW_OPS = ("shift", "shift_xy", "crop")  # these re-crop the source: plant() needs the original's Window
_FLOAT_OPS = ("gain", "contrast")


@dataclass(frozen=True)
class Kind:
    """One kind of planted duplicate: operation ``op`` (:data:`OPS`) with its parameter in ``lo..hi`` (``hi``
    defaults to ``lo``) and, for ``shift_xy`` and ``offset``, the directions ``signs`` (-1, +1 or both)."""

    op: str
    lo: float = 0
    hi: float | None = None
    signs: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if self.hi is None:
            object.__setattr__(self, "hi", self.lo)
        if self.op not in OPS:
            raise ValueError(f"unknown planted duplicate operation {self.op!r}; allowed: {', '.join(OPS)}")
        if self.hi < self.lo or (self.op in ("shift", "shift_xy") and self.lo < 1):
            raise ValueError(f"{self.op}: parameter range {self.lo}..{self.hi} is empty or does not move")
        if self.op not in _FLOAT_OPS and (self.lo != int(self.lo) or self.hi != int(self.hi)):
            raise ValueError(f"{self.op}: parameter range {self.lo}..{self.hi} must be whole numbers")
        if not self.signs or set(self.signs) - {-1, 1}:
            raise ValueError(f"{self.op}: signs must be -1, 1 or both; got {self.signs}")

    def __str__(self) -> str:
        """Compact form for meta notes: ``jpeg 50..85``, ``offset +-12..30``, ``gain 0.9``."""
        if self.op == "exact":
            return "exact"
        sign = {(1,): "", (-1,): "-"}.get(tuple(set(self.signs)), "+-") if self.op in ("shift_xy", "offset") else ""
        return f"{self.op} {sign}{self.lo}" + (f"..{self.hi}" if self.hi != self.lo else "")


class Window(NamedTuple):
    """Where an original was cropped: the square ``side`` x ``side`` at column ``x``, row ``y`` of ``source``
    (H, W, 3), resized to the original's size by :func:`crop`."""

    source: np.ndarray
    x: int
    y: int
    side: int


def crop(source: np.ndarray, x: int, y: int, side: int, size: int) -> np.ndarray:
    """Square crop resized to (size, size, 3): area averaging when shrinking, bicubic when enlarging."""
    patch = source[y:y + side, x:x + side]  # (side, side, 3)
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)  # (size, size, 3)


def describe(kinds: dict[str, Kind]) -> str:
    """``name = kind`` for each kind, as a meta note: ``exact = exact; jpeg = jpeg 50..85; ...``."""
    return "; ".join(f"{name} = {kind}" for name, kind in kinds.items())


def _draw(rng: np.random.Generator, kind: Kind) -> float:
    if kind.lo == kind.hi:
        return float(kind.lo) if kind.op in _FLOAT_OPS else int(kind.lo)
    if kind.op in _FLOAT_OPS:
        return float(rng.uniform(kind.lo, kind.hi))
    return int(rng.integers(int(kind.lo), int(kind.hi) + 1))


def _sign(rng: np.random.Generator, kind: Kind) -> int:
    return kind.signs[0] if len(kind.signs) == 1 else int(rng.choice(list(kind.signs)))


def plant(kind: Kind, img: np.ndarray, rng: np.random.Generator, window: Window | None = None) -> np.ndarray:
    """One near-duplicate of ``img`` (uint8 (size, size, 3) RGB) of the given kind, parameters drawn from ``rng``.

    The window ops (:data:`WINDOW_OPS`) need ``window``, where ``img`` was cropped (``img == crop(*window, size)``);
    a shifted window is clipped to the source.
    """
    op = kind.op
    if op == "exact":
        return img.copy()
    if op == "jpeg":
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, _draw(rng, kind)])
        if not ok:
            raise ValueError(f"JPEG encoding of a {img.shape} {img.dtype} image failed")
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]  # BGR round trip -> RGB (size, size, 3)
    if op in WINDOW_OPS:
        if window is None:
            raise ValueError(f"{op} duplicates move the crop window: pass the Window the original was cropped from")
        src, x, y, side = window
        size = img.shape[0]
        step = side / size  # source pixels per output pixel
        if op == "crop":
            m = round(_draw(rng, kind) * step)
            return cv2.resize(src[y + m:y + side - m, x + m:x + side - m], (size, size), interpolation=cv2.INTER_LINEAR)
        if op == "shift":
            d = _draw(rng, kind)
            dy, dx = ((0, d), (d, 0), (0, -d), (-d, 0))[int(rng.integers(4))]
        else:  # shift_xy
            moves = sorted({s * d for s in kind.signs for d in range(int(kind.lo), int(kind.hi) + 1)})
            dx, dy = (int(rng.choice(moves)) for _ in range(2))
        x2 = int(np.clip(x + round(dx * step), 0, src.shape[1] - side))
        y2 = int(np.clip(y + round(dy * step), 0, src.shape[0] - side))
        return crop(src, x2, y2, side, size)
    f = img.astype(np.float32)
    if op == "gain":
        f = f * _draw(rng, kind)
    elif op == "offset":
        f = f + _draw(rng, kind) * _sign(rng, kind)
    else:  # contrast
        f = (f - f.mean()) * _draw(rng, kind) + f.mean()
    return np.clip(np.rint(f), 0, 255).astype(np.uint8)
