"""Image decoding, shared by ingest (:mod:`dcgan_repro.data`) and the face stage (:mod:`dcgan_repro.faces`).

One decoder, :func:`decode_image`: encoded bytes or a file path in, 8-bit RGB uint8 (H, W, 3) out, or a skip
reason. Grayscale is replicated to 3 channels, CMYK, palette and alpha images are converted, 16-bit images are
scaled by 1/257 (where Pillow's own ``convert("RGB")`` would clip). Inputs that cannot be decoded are never a
crash and never a silent drop: they get a reason from :data:`SKIP_REASONS`, which every summary counts.

Two ways to decode, one result type:

- default (the face stage): ``cv2.imdecode`` first (fast; applies EXIF orientation), Pillow for what OpenCV cannot
  read (with EXIF orientation applied too);
- ``pillow_only=True`` (ingest): Pillow alone, EXIF orientation not applied, so the pixels equal torchvision's
  Pillow loaders (``ImageFolder``, the pytorch/examples DCGAN LSUN pipeline).

:func:`resize_center_crop` is torchvision ``Resize(size)`` + ``CenterCrop(size)`` on PIL images, written with Pillow
alone. :func:`image_grid` tiles a batch of images into one grid, the one grid function of the project (figures,
training sample sheets, the dedup contact sheet). This module is the bottom layer: it imports nothing from the
package.
"""

from __future__ import annotations

import os
import warnings
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 1 << 27  # ~134 megapixels (e.g. 11,585 x 11,585): larger images are skipped as 'too_large'
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # Pillow modes with more than 8 bits per sample
# Why an image was skipped: the keys of meta["skipped"] (ingest) and of the face stage's counts, which add
# "detector_error" (dcgan_repro.faces.SKIP_REASONS).
SKIP_REASONS = {
    "missing": "listed (manifest, image folder listing) but no such file",
    "unreadable": "the file exists but could not be read (permissions, a folder, I/O error)",
    "empty_file": "zero bytes",
    "truncated": "the image data ends early (the decoder ran out of data before the end of the image)",
    "not_an_image": "neither OpenCV nor Pillow recognises the format",
    "corrupt": "a known image format that neither decoder could decode",
    "too_large": f"more than {MAX_PIXELS:,} pixels (decoding it would need gigabytes)",
}


def decode_image(src: bytes | str | os.PathLike, *, pillow_only: bool = False) -> tuple[np.ndarray | None, str]:
    """Fully decode an encoded image (bytes or a file path) to RGB uint8 (H, W, 3): ``(image, "ok")`` or
    ``(None, reason)``, the reason a key of :data:`SKIP_REASONS`.

    Images over :data:`MAX_PIXELS` are refused from their header, before any pixel is decoded. The decode is
    forced, so truncation shows here. By default OpenCV decodes first and Pillow takes what OpenCV cannot read; a
    JPEG or PNG whose end marker is missing from its last bytes is decoded by Pillow alone, which raises on
    truncated data where OpenCV may return a half-grey image: a truncated file is skipped, while a complete one
    followed by appended data (e.g. a "motion photo" with a video after the JPEG) still decodes.
    ``pillow_only``: Pillow alone, without EXIF orientation: torchvision's loaders' pixels (ingest).
    """
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
    else:
        try:
            data = Path(src).read_bytes()
        except FileNotFoundError:
            return None, "missing"
        except OSError:
            return None, "unreadable"
    if not data:
        return None, "empty_file"
    fmt = _sniff(data)
    pixels = _header_pixels(data)
    if pixels is not None and pixels > MAX_PIXELS:
        return None, "too_large"
    if not pillow_only and not _end_marker_missing(data, fmt):
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # (H, W, 3) uint8 BGR, or None
        if bgr is not None:
            return np.ascontiguousarray(bgr[:, :, ::-1]), "ok"  # (H, W, 3) RGB
    im, status = _decode_pil(data, fmt, exif_transpose=not pillow_only)
    return (None, status) if im is None else (np.ascontiguousarray(np.asarray(im)), "ok")  # (H, W, 3)


def resize_center_crop(img: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """Short side -> ``size`` (antialiased bilinear), centre crop ``size`` x ``size``: uint8 (size, size, 3).

    Exactly torchvision ``transforms.Resize(size)`` + ``transforms.CenterCrop(size)`` on a PIL image (the same
    output size, rounding and Pillow call; tests/test_data_ingest.py compares them). ``img``: a PIL RGB image or
    an RGB uint8 (H, W, 3) array, as :func:`decode_image` returns it.
    """
    if isinstance(img, np.ndarray):
        img = Image.fromarray(img)
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BILINEAR)  # Pillow's bilinear filter is always antialiased
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))  # (size, size)
    return np.asarray(img, dtype=np.uint8)  # (size, size, 3)


GRID_PAD = 2  # pixels between neighbouring images in a grid (torchvision make_grid's default padding)


def image_grid(images: np.ndarray, cols: int, *, pad: int = GRID_PAD, pad_value: int = 255,
               border: int | None = None) -> np.ndarray:
    """Tile uint8 (N, H, W, C) images row-major into one uint8 grid of ``rows = ceil(N / cols)`` rows:
    (2*border + rows*H + (rows-1)*pad, 2*border + cols*W + (cols-1)*pad, C), ``cols`` capped at N.

    ``pad`` pixels of ``pad_value`` separate neighbouring images, ``border`` pixels of it (default ``pad``)
    surround the whole grid; unfilled cells of the last row are ``pad_value`` too. The defaults are
    ``torchvision.utils.make_grid(padding=pad, pad_value=255)`` (the figures); ``pad_value=0, border=pad // 2``
    gives every image an even black frame (the training sample sheets). Written with NumPy because importing
    torchvision costs ~2 s per figure job (it loads torch._dynamo).
    """
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"expected uint8 N x H x W x C images (N >= 1), got {images.dtype} {images.shape}")
    border = pad if border is None else border
    if pad < 0 or border < 0 or not 0 <= pad_value <= 255:
        raise ValueError(f"pad ({pad}) and border ({border}) must be >= 0 and pad_value ({pad_value}) in 0..255")
    n, h, w, c = images.shape
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    grid = np.full((2 * border + rows * (h + pad) - pad, 2 * border + cols * (w + pad) - pad, c), pad_value,
                   dtype=np.uint8)  # (rows*(H+pad)-pad+2*border, cols*(W+pad)-pad+2*border, C)
    for i in range(n):
        r, k = divmod(i, cols)
        y, x = border + r * (h + pad), border + k * (w + pad)  # top-left corner of cell (r, k)
        grid[y:y + h, x:x + w] = images[i]  # (H, W, C)
    return grid


def _decode_pil(data: bytes, fmt: str | None, *, exif_transpose: bool) -> tuple[Image.Image | None, str]:
    """Pillow's part of :func:`decode_image` (``data`` non-empty, its size already checked)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # size checked by the caller
            with Image.open(BytesIO(data)) as im:
                if exif_transpose:
                    im = ImageOps.exif_transpose(im)
                if im.mode in WIDE_MODES:
                    return Image.fromarray(_pil_to_rgb(im)), "ok"
                return im.convert("RGB"), "ok"  # convert() decodes every pixel (a new image, valid after close)
    except Image.DecompressionBombError:
        return None, "too_large"
    except UnidentifiedImageError:
        return None, "not_an_image" if fmt is None else "corrupt"
    except OSError as e:
        return None, "truncated" if "truncated" in str(e).lower() else ("not_an_image" if fmt is None else "corrupt")
    except (ValueError, SyntaxError, EOFError, IndexError, TypeError):
        return None, "not_an_image" if fmt is None else "corrupt"


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow image -> RGB uint8 (H, W, 3): 16/32-bit integer images scaled to 8 bits, floats clipped."""
    if im.mode in WIDE_MODES:
        a = np.asarray(im)  # (H, W) int32 / uint16 / float32
        if a.dtype.kind == "f":
            a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255)
        else:
            a = np.clip(a, 0, 65535) / 257.0  # 16-bit full range -> 8-bit full range
        g = np.rint(a).astype(np.uint8)  # (H, W)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))  # (H, W, 3)
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))  # (H, W, 3) from L, LA, P, RGBA, CMYK, YCbCr


_MAGIC = {b"\xff\xd8\xff": "jpeg", b"\x89PNG\r\n\x1a\n": "png", b"GIF8": "gif", b"BM": "bmp",
          b"II*\x00": "tiff", b"MM\x00*": "tiff"}


def _sniff(data: bytes) -> str | None:
    """Image format from the first bytes, or None when no known signature matches."""
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6"):
        return "pnm"
    return None


def _end_marker_missing(data: bytes, fmt: str | None) -> bool:
    """JPEG without its end-of-image marker, PNG without IEND, in the last bytes (trailing zeros ignored)."""
    tail = data[-4096:].rstrip(b"\x00")[-64:]
    if fmt == "jpeg":
        return b"\xff\xd9" not in tail
    if fmt == "png":
        return b"IEND" not in tail
    return False


def _header_pixels(data: bytes) -> float | None:
    """Width x height from the image header without decoding pixels, when Pillow can parse it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data)) as im:
                return float(im.size[0] * im.size[1])
    except Image.DecompressionBombError:  # Pillow refuses to even open it: more than ~179 megapixels
        return float("inf")
    except (OSError, ValueError, SyntaxError, EOFError):
        return None
