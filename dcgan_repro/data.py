"""Dataset ingest: every dataset of the paper into the common training format (docs/CONTRACTS.md, "Datasets").

One entry point, :func:`ingest`, used by rule ``ingest``. Each dataset folder holds ``<split>_x.npy`` (uint8
N x H x W x C), ``<split>_y.npy`` (int64, -1 = no label) and ``meta.json`` (with ``provenance``); ``faces_raw``
holds source images plus ``manifest.txt`` instead of arrays. A folder is built beside its final path and renamed
into place only when complete, so a failed or killed ingest never leaves a folder that looks finished.

Real sources (the paper's data; users need internet or their own copies):

- ``mnist``   torchvision.datasets.MNIST (Sec. 5.3). Kept 28x28x1 uint8, original order. The md5 of every
  uncompressed IDX file is checked (the values published with MNIST); a bad file is named and left in place.
- ``cifar10`` torchvision.datasets.CIFAR10 (Sec. 5.1), 32x32x3, official train/test.
- ``svhn``    torchvision.datasets.SVHN train + test (Sec. 5.2; ``extra`` is not used, as in the authors'
  svhn_semisup_analysis.py). Labels are the digit itself: the .mat files store digit 0 as label 10 and torchvision
  maps 10 -> 0 (checked here). The authors' code used ``label - 1`` (digit 1 -> class 0, digit 0 -> class 9), a
  permutation of the classes that changes nothing for a one-vs-rest SVM.
- ``lsun_raw`` the official LSUN LMDB export of one category's train set (Sec. 4.1; bedroom), fetched like
  fyu/lsun download.py (``<category>_train_lmdb.zip``) with a resumable, size- and CRC-checked download, or an
  LMDB folder the user placed. Images are JPEG (short side 256, quality 75) as exported by LSUN.
- ``imagenet`` an ImageNet-1k train folder in ImageFolder layout that the user supplies (Sec. 4.3).
- ``faces_raw`` torchvision.datasets.CelebA aligned images (a public stand-in for the paper's unreleased 3M web
  images of 10K people, Sec. 4.2) or any folder of web images; the face stage (dcgan_repro.faces) detects faces.

Resizing (LSUN, ImageNet): short side resized to ``image_size`` with antialiased bilinear interpolation, then a
centre crop, exactly torchvision ``Resize(size)`` + ``CenterCrop(size)`` on PIL images (the pytorch/examples DCGAN
LSUN pipeline; for ImageNet the "min-resized centre crops" of Sec. 4.3 with the bilinear filter of the training
script matching the authors' released 32x32 model, REFERENCE.md Sec. 3). Decoding (:func:`decode_image`, shared
with the face stage) turns grayscale, CMYK, palette and 16-bit images into 8-bit RGB; images that cannot be decoded
(zero bytes, truncated, corrupt, not an image, over ``faces.MAX_PIXELS``) are skipped, never a crash, and counted
by reason (:data:`SKIP_REASONS`) in ``meta["skipped"]``, which the dedup and face summaries repeat.

Demo sources (``source: demo``): real images shipped inside scikit-learn and scikit-image, offline and
deterministic from ``seed``. ``meta["stand_in"]`` says plainly what stood in; every table and figure repeats it.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import cv2
import numpy as np
from PIL import Image

from dcgan_repro import faces, io

log = logging.getLogger("dcgan_repro.data")

DATASETS = ("mnist", "cifar10", "svhn", "lsun_raw", "imagenet", "faces_raw")
# config.yaml data.<key> section of each dataset (rule ingest passes it as params.data)
CONFIG_KEY = {"lsun_raw": "lsun", "faces_raw": "faces"}
SOURCES = {
    "mnist": ("download", "demo"),
    "cifar10": ("download", "demo"),
    "svhn": ("download", "demo"),
    "lsun_raw": ("download", "path", "demo"),
    "imagenet": ("path", "demo"),
    "faces_raw": ("celeba", "folder", "demo"),
}
# Image files a `folder` source may hold (OpenCV and PIL both read these).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm")
# md5 of the uncompressed MNIST IDX files (the values in common use; torchvision itself checks only the .gz files).
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# fyu/lsun download.py: http://dl.yf.io/lsun/scenes/{category}_{set}_lmdb.zip (no checksums are published).
LSUN_URL = "http://dl.yf.io/lsun/scenes/{category}_train_lmdb.zip"
CHUNK = 1024  # images decoded per thread-pool round while streaming
SKIP_REASONS = {k: v for k, v in faces.SKIP_REASONS.items() if k != "detector_error"}  # meta['skipped'] keys


class DataError(RuntimeError):
    """A dataset cannot be ingested; the message names the setting or file and what to do."""


class DownloadError(DataError):
    """A download failed; the message names the URL and where to place the file by hand."""


class ChecksumError(DataError):
    """A file in a user's folder fails its checksum; it is left in place, the message says what to do."""


# ------------------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------------------


def ingest(name: str, cfg: dict[str, Any], out_dir: str | os.PathLike, seed: int, *, workers: int = 1,
           ledger: str | os.PathLike | None = None) -> dict:
    """Build dataset ``name`` in ``out_dir`` from its ``config.yaml data.<key>`` section; return its meta.

    ``name`` is one of :data:`DATASETS`; ``cfg["source"]`` picks how (see :data:`SOURCES`). ``seed`` drives every
    random choice (demo crops, splits, the ImageNet ``max_images`` subset). ``workers`` threads decode images.
    The folder is written beside ``out_dir`` and renamed onto it only when complete. Files with no published
    checksum (LSUN) are recorded at first use in ``ledger`` (default ``<out_dir>/../checksums/<name>.json``) and
    verified against it at every later use (:func:`verify_first_seen`).
    """
    t0 = time.time()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    key = f"data.{CONFIG_KEY.get(name, name)}"
    source = cfg.get("source")
    if source not in SOURCES[name]:
        raise DataError(f"config key '{key}.source': {source!r} is not allowed for {name}; "
                        f"allowed values: {', '.join(SOURCES[name])}")
    builder = _DEMO[name] if source == "demo" else _REAL[name]
    if name == "lsun_raw" and source != "demo":
        ledger = Path(ledger) if ledger else Path(out_dir).parent / "checksums" / f"{name}.json"
        builder = functools.partial(builder, ledger=ledger)
    log.info("ingest %s from %s source into %s (seed %d, %d workers)", name, source, out_dir, seed, workers)
    with _staging(out_dir) as stage:
        meta, inputs = builder(cfg=cfg, stage=stage, seed=seed, workers=max(1, int(workers)), key=key)
        meta = {"name": name, **meta}
        meta["provenance"] = io.provenance(config=cfg, seed=seed, inputs=inputs, started=t0)
        io.write_json(stage / "meta.json", meta)
    log.info("ingest %s done: splits %s, image shape %s, %.1f s", name, meta["splits"], meta["image_shape"],
             time.time() - t0)
    return meta


@contextlib.contextmanager
def _staging(out_dir: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty sibling folder; on success it replaces ``out_dir``, on failure it is removed."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "meta.json").exists():
        raise DataError(f"output folder {out} exists and is not an ingested dataset (no meta.json); "
                        "refusing to replace it: move it away or choose another data.root")
    stage = out.with_name(f".{out.name}.partial")
    if stage.exists():  # left by a killed run
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    done = False
    try:
        yield stage
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)  # every file in it was written by io (fsync'd); make the rename durable too
        io.fsync_dir(out.parent)
        done = True
    finally:
        if not done:
            shutil.rmtree(stage, ignore_errors=True)


def _meta(*, splits: dict[str, int], image_shape, n_classes: int = 0, class_names=None, source: str,
          stand_in: str | None, **extra) -> dict[str, Any]:
    """The contract's meta.json keys (docs/CONTRACTS.md) plus dataset-specific extras."""
    return {"splits": splits, "image_shape": list(image_shape) if image_shape is not None else None,
            "n_classes": n_classes, "class_names": class_names, "source": source, "stand_in": stand_in, **extra}


# ------------------------------------------------------------------------------------------------------------
# downloads
# ------------------------------------------------------------------------------------------------------------


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def md5_ok(path: Path, md5: str) -> bool:
    """True when ``path`` exists and its md5 is ``md5``."""
    return path.is_file() and md5_of(path) == md5


def _check_files(folder: Path, files: Iterable[tuple[str, str]], key: str, what: str, root: Path) -> None:
    """Raise :class:`ChecksumError` for the first present file of ``(name, md5)`` whose md5 is wrong.

    The file is never removed or replaced: it lies in a folder the user chose (``key``), and it may be the only copy.
    """
    for fname, md5 in files:
        p = folder / fname
        if p.is_file() and not md5_ok(p, md5):
            raise ChecksumError(
                f"{what}: {p} fails its md5 check (expected {md5}, got {md5_of(p)}, {p.stat().st_size:,} bytes). "
                f"It is left untouched in your folder (config key '{key}.path' = {root}). Replace it with a good "
                "copy, or delete it and run again to download it anew")


def download_file(url: str, dest: str | os.PathLike, *, expected_size: int | None = None,
                  sha256: str | None = None, timeout: float = 60.0, chunk: int = 1 << 20) -> Path:
    """Stream ``url`` to ``dest`` through ``dest.part``, resuming a partial download with an HTTP Range request.

    The final size must equal the server's (or ``expected_size``) and the sha256 must equal ``sha256`` when given;
    a file that fails either is removed. An incomplete transfer keeps ``dest.part`` so the next call resumes.
    Failures raise :class:`DownloadError` naming the URL and where to place the file by hand.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "dcgan-repro", **({"Range": f"bytes={start}-"} if start else {})}
    total = expected_size
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not start:  # 416: nothing left to send, the .part is already whole
            raise _download_error(url, dest, e) from e
        resp = None
    except (urllib.error.URLError, OSError) as e:
        raise _download_error(url, dest, e) from e
    if resp is not None:
        with resp:
            if start and resp.status != 206:
                log.info("%s: server ignored the Range request; restarting from byte 0", url)
                start = 0
            m = re.match(r"bytes \d+-\d+/(\d+)", resp.headers.get("Content-Range", ""))
            length = resp.headers.get("Content-Length")
            server_total = int(m.group(1)) if m else (start + int(length) if length else None)
            if total is not None and server_total is not None and server_total != total:
                raise DownloadError(f"{url}: the server offers {server_total} bytes but {total} were expected; "
                                    f"not downloading to {dest}")
            total = total or server_total
            log.info("downloading %s -> %s (%s bytes, resuming at %d)", url, dest, total, start)
            try:
                with open(part, "ab" if start else "wb") as f:
                    while block := resp.read(chunk):
                        f.write(block)
            except OSError as e:
                raise _download_error(url, dest, e, partial=part) from e
    size = part.stat().st_size
    if total is not None and size < total:
        raise DownloadError(f"{url}: download stopped at {size} of {total} bytes; {part} is kept, run again to "
                            f"resume, or place the complete file at {dest}")
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(f"{url}: got {size} bytes, more than the {total} expected; removed {part}")
    if sha256 is not None and (got := io.sha256_file(part)) != sha256:
        part.unlink()
        raise DownloadError(f"{url}: sha256 {got} differs from the expected {sha256}; removed {part}")
    io.durable_replace(part, dest)
    return dest


def _download_error(url: str, dest: Path, err: BaseException, partial: Path | None = None) -> DownloadError:
    more = f" ({partial} is kept; run again to resume)" if partial and partial.exists() else ""
    return DownloadError(f"downloading {url} failed: {err}{more}. Without internet, fetch it elsewhere and "
                         f"place it at {dest}")


# ------------------------------------------------------------------------------------------------------------
# decoding and streaming (LSUN, ImageNet, image folders)
# ------------------------------------------------------------------------------------------------------------


def decode_image(src: bytes | str | os.PathLike) -> tuple[Image.Image | None, str | None]:
    """Fully decode an encoded image (bytes or a file path) to 8-bit RGB; ``(image, None)`` or ``(None, reason)``.

    Pillow only (:func:`dcgan_repro.faces.decode_image_pil`), so decoded pixels equal torchvision's Pillow
    loaders; grayscale, CMYK, palette and 16-bit images are converted to 8-bit RGB. Reasons are the keys of
    :data:`SKIP_REASONS` (shared with the face stage): ``missing``, ``unreadable``, ``empty_file``, ``truncated``,
    ``not_an_image``, ``corrupt``, ``too_large`` (over ``faces.MAX_PIXELS``, checked from the header before any
    pixel is decoded).
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
    img, status = faces.decode_image_pil(data)
    return (img, None) if img is not None else (None, status)


def resize_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """Short side -> ``size`` (antialiased bilinear), centre crop ``size`` x ``size``: uint8 (size, size, 3).

    Exactly torchvision ``transforms.Resize(size)`` + ``transforms.CenterCrop(size)`` on a PIL image.
    """
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    img = TF.resize(img, size, interpolation=InterpolationMode.BILINEAR)  # short side = size
    img = TF.center_crop(img, [size, size])  # (size, size)
    return np.asarray(img, dtype=np.uint8)  # (size, size, 3)


def _load_resized(src, size: int) -> tuple[np.ndarray | None, str | None]:
    img, reason = decode_image(src)
    return (None, reason) if img is None else (resize_center_crop(img, size), None)


def _stream_images(stage: Path, split: str, items: Iterable[tuple[Any, int, str]], capacity: int, size: int,
                   workers: int, what: str) -> dict[str, Any]:
    """Decode ``(encoded image or path, label, name)`` items into ``<split>_x.npy`` / ``<split>_y.npy``.

    Streams through a memory-mapped .npy (io.open_npy_writer), ``CHUNK`` images per round, decoded by
    ``workers`` threads (PIL releases the GIL while decoding and resizing). Stops after ``capacity`` good images.
    Undecodable items are skipped and counted by reason; the array is then shrunk to the images kept.
    """
    xp, yp = io.dataset_paths(stage, split)
    x, tmp = io.open_npy_writer(xp, (capacity, size, size, 3), np.uint8)  # (N, S, S, 3)
    y = np.full(capacity, -1, dtype=np.int64)
    skipped: collections.Counter[str] = collections.Counter()
    examples: list[list[str]] = []
    n = seen = 0
    t0 = time.time()
    pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None
    mapper = pool.map if pool else map
    try:
        it = iter(items)
        while n < capacity:
            batch = [item for _, item in zip(range(CHUNK), it)]
            if not batch:
                break
            for (_, label, name), (arr, reason) in zip(batch, mapper(lambda s: _load_resized(s[0], size), batch)):
                seen += 1
                if arr is None:
                    skipped[reason] += 1
                    if len(examples) < 20:
                        examples.append([name, reason])
                    continue
                if n < capacity:
                    x[n] = arr
                    y[n] = label
                    n += 1
            if seen % (CHUNK * 50) < len(batch):
                log.info("%s: %d images decoded (%d skipped), %.0f images/s", what, n, sum(skipped.values()),
                         seen / max(time.time() - t0, 1e-9))
    finally:
        if pool:
            pool.shutdown()
    x.flush()
    del x
    if n < capacity:
        _shrink_npy(tmp, n)
    io.durable_replace(tmp, xp)
    io.save_npy(yp, y[:n])
    if skipped:
        log.warning("%s: skipped %d undecodable images: %s", what, sum(skipped.values()), dict(skipped))
    return {"n": n, "seen": seen, "skipped": dict(skipped), "skipped_examples": examples}


def _shrink_npy(path: Path, n: int) -> None:
    """Cut a C-order .npy file to its first ``n`` rows in place (rewrite the header, truncate the data).

    numpy pads .npy headers so the first dimension can grow or shrink without moving the data; when the header
    length would still change, the rows are copied to a new file instead.
    """
    with open(path, "r+b") as f:
        version = np.lib.format.read_magic(f)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(f)
        offset = f.tell()
        assert not fortran, "open_npy_writer writes C order"
        new_shape = (n, *shape[1:])
        header = _npy_header(new_shape, dtype, version)
        if len(header) == offset:
            f.seek(0)
            f.write(header)
            f.truncate(offset + n * int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize)
            return
    src = np.load(path, mmap_mode="r")
    out = np.lib.format.open_memmap(path.with_suffix(".shrink.npy"), mode="w+", dtype=dtype, shape=new_shape)
    for i in range(0, n, 65536):
        out[i:i + 65536] = src[i:i + 65536]
    out.flush()
    del out, src
    os.replace(path.with_suffix(".shrink.npy"), path)


def _npy_header(shape: tuple[int, ...], dtype: np.dtype, version: tuple[int, int]) -> bytes:
    """The complete .npy preamble (magic string + padded header) for a C-order array."""
    buf = BytesIO()
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    writer = np.lib.format.write_array_header_1_0 if version == (1, 0) else np.lib.format.write_array_header_2_0
    writer(buf, d)  # writes the magic string too
    return buf.getvalue()


# ------------------------------------------------------------------------------------------------------------
# real sources
# ------------------------------------------------------------------------------------------------------------


def _mnist(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """MNIST via torchvision (Sec. 5.3): 60,000 train + 10,000 test, 28x28x1 uint8, original order.

    Each IDX file is md5-checked; a bad one is named and left in place (:class:`ChecksumError`). Missing files
    are fetched like torchvision's MNIST.download (each mirror in turn, the .gz md5-checked, then unpacked), one
    by one, so an error names the exact file.
    """
    from torchvision.datasets import mnist as tv_mnist

    root = Path(cfg["path"])
    raw = root / "MNIST" / "raw"
    _check_files(raw, MNIST_RAW_MD5.items(), key, "MNIST", root)
    gz_md5 = dict(tv_mnist.MNIST.resources)
    for fname, md5 in MNIST_RAW_MD5.items():
        if (raw / fname).is_file():
            continue
        gz, errors = f"{fname}.gz", []
        for mirror in tv_mnist.MNIST.mirrors:
            try:
                tv_mnist.download_and_extract_archive(f"{mirror}{gz}", download_root=str(raw), filename=gz,
                                                      md5=gz_md5[gz])
                break
            except (RuntimeError, OSError) as e:  # urllib's URLError is an OSError
                errors.append(f"{mirror}{gz}: {e}")
        else:
            raise DownloadError(
                f"MNIST: {raw / fname} is missing, and downloading it failed:\n  " + "\n  ".join(errors)
                + f"\nWithout internet, fetch {tv_mnist.MNIST.mirrors[0]}{gz} elsewhere and place it, gzipped or "
                f"not, in {raw}/ (config key '{key}.path' = {root})")
        if not md5_ok(raw / fname, md5):
            raise DataError(f"MNIST: {raw / fname} unpacked from {raw / gz} fails its md5 check (expected {md5}); "
                            "delete both and run again")
    splits = {s: tv_mnist.MNIST(str(root), train=(s == "train"), download=False) for s in ("train", "test")}
    for split, ds in splits.items():
        io.write_dataset(stage, split, ds.data.numpy()[..., None], ds.targets.numpy())  # (N,28,28) -> (N,28,28,1)
    meta = _meta(splits={s: len(d) for s, d in splits.items()}, image_shape=(28, 28, 1), n_classes=10,
                 class_names=[str(i) for i in range(10)],
                 source=f"torchvision.datasets.MNIST in {root} (md5 of each IDX file checked)", stand_in=None)
    return meta, {"raw": [raw / f for f in MNIST_RAW_MD5]}


def _cifar10(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """CIFAR-10 via torchvision (Sec. 5.1): 50,000 train + 10,000 test, 32x32x3."""
    from torchvision import datasets

    C = datasets.CIFAR10
    root = Path(cfg["path"])
    batches = [*C.train_list, *C.test_list, (C.meta["filename"], C.meta["md5"])]
    _check_files(root / C.base_folder, batches, key, "CIFAR-10", root)
    if not all(md5_ok(root / C.base_folder / f, m) for f, m in batches):  # torchvision then reads the archive
        _check_files(root, [(C.filename, C.tgz_md5)], key, "CIFAR-10", root)
    try:
        splits = {s: C(str(root), train=(s == "train"), download=True) for s in ("train", "test")}
    except (RuntimeError, OSError) as e:
        raise DownloadError(
            f"CIFAR-10: downloading {C.url} failed: {e}\nWithout internet, fetch it elsewhere and place "
            f"{C.filename} (md5 {C.tgz_md5}) in {root}/, or its extracted folder as {root / C.base_folder}/ "
            f"(config key '{key}.path' = {root})") from e
    for split, ds in splits.items():
        io.write_dataset(stage, split, ds.data, np.asarray(ds.targets))  # data: (N, 32, 32, 3) uint8 already
    meta = _meta(splits={s: len(d) for s, d in splits.items()}, image_shape=(32, 32, 3), n_classes=10,
                 class_names=list(splits["train"].classes),
                 source=f"torchvision.datasets.CIFAR10 in {root} (md5-checked)", stand_in=None)
    return meta, {"batches": [root / C.base_folder / f for f, _ in batches]}


def _svhn(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """SVHN train + test via torchvision (Sec. 5.2); labels = the digit (torchvision maps the .mat's 10 to 0)."""
    from torchvision import datasets

    S = datasets.SVHN
    root = Path(cfg["path"])
    sizes, files = {}, []
    for split in ("train", "test"):
        url, fname, md5 = S.split_list[split]
        _check_files(root, [(fname, md5)], key, "SVHN", root)
        try:
            ds = S(str(root), split=split, download=True)
        except (RuntimeError, OSError) as e:
            raise DownloadError(f"SVHN: downloading {url} failed: {e}\nWithout internet, fetch it elsewhere and "
                                f"place {fname} (md5 {md5}) in {root}/ (config key '{key}.path' = {root})") from e
        y = np.asarray(ds.labels, dtype=np.int64)
        if y.min() < 0 or y.max() > 9:
            raise DataError(f"SVHN {root / fname}: labels span {y.min()}..{y.max()}, expected 0..9 after "
                            "torchvision's 10 -> 0 mapping")
        io.write_dataset(stage, split, np.ascontiguousarray(ds.data.transpose(0, 2, 3, 1)), y)  # (N,3,32,32)->(N,32,32,3)
        sizes[split] = len(y)
        files.append(root / fname)
    meta = _meta(splits=sizes, image_shape=(32, 32, 3), n_classes=10, class_names=[str(i) for i in range(10)],
                 source=f"torchvision.datasets.SVHN train + test in {root} (md5-checked; extra not used)",
                 stand_in=None,
                 label_note="label = the digit shown: the .mat files store digit 0 as 10 and torchvision maps it "
                            "to 0; the authors' code used label-1 instead (a class permutation)")
    return meta, {"mat": files}


def _import_lmdb():
    try:
        import lmdb
    except ImportError as e:
        raise DataError("reading LSUN needs the lmdb package: pip install lmdb==3.0.0 (pinned in "
                        "requirements.txt and envs/torch.yaml)") from e
    return lmdb


def _lsun(*, cfg, stage: Path, seed: int, workers: int, key: str, ledger: Path):
    """LSUN <category> train LMDB (Sec. 4.1): every image resized (short side) and centre-cropped to image_size.

    LSUN publishes no checksums and serves plain HTTP: the zip and the LMDB are recorded in ``ledger`` at first
    use and checked against it at every later use.
    """
    cat, size, cap = cfg["category"], int(cfg["image_size"]), int(cfg["max_images"])
    if cfg["source"] == "download":
        db = _lsun_fetch(Path(cfg["path"]), cat, key, ledger)
        how = f"official LSUN LMDB export {LSUN_URL.format(category=cat)}, unzipped to {db}"
    else:
        db = Path(cfg["path"])
        how = f"LSUN LMDB placed at {db}"
    if not (db / "data.mdb").is_file():
        raise DataError(f"config key '{key}.path': {db} holds no LMDB (no data.mdb in it); point it at the unzipped "
                        f"{cat}_train_lmdb folder of the official LSUN release")
    verify_first_seen(ledger, db / "data.mdb", how, key)
    lmdb = _import_lmdb()
    env = lmdb.open(str(db), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
    try:
        with env.begin(write=False) as txn:
            entries = txn.stat()["entries"]
            capacity = min(cap, entries) if cap else entries
            log.info("LSUN %s: %d images in %s; ingesting %d at %dx%d", cat, entries, db, capacity, size, size)
            items = ((value, -1, key_.decode(errors="replace")) for key_, value in txn.cursor())
            stats = _stream_images(stage, "train", items, capacity, size, workers, f"LSUN {cat}")
    finally:
        env.close()
    if stats["n"] == 0:
        raise DataError(f"LSUN {db}: no image could be decoded (skipped: {stats['skipped']})")
    stand_in = None if cat == "bedroom" else f"LSUN {cat} standing in for LSUN bedroom (Sec. 4.1)"
    meta = _meta(splits={"train": stats["n"]}, image_shape=(size, size, 3), source=how, stand_in=stand_in,
                 category=cat, lmdb_entries=entries, max_images=cap, skipped=stats["skipped"],
                 skipped_examples=stats["skipped_examples"],
                 preprocessing=f"short side resized to {size} (antialiased bilinear), centre crop {size}x{size}")
    return meta, {"lmdb": [db / "data.mdb"]}


def _lsun_fetch(path: Path, cat: str, key: str, ledger: Path) -> Path:
    """Download (resumably), record or verify (``ledger``), CRC-check and unzip ``<cat>_train_lmdb.zip`` into
    ``path``; return the LMDB folder. A bad zip is named, never removed."""
    db = path / f"{cat}_train_lmdb"
    if (db / "data.mdb").is_file():
        return db
    zpath = path / f"{cat}_train_lmdb.zip"
    url = LSUN_URL.format(category=cat)
    if not zpath.is_file():
        try:
            download_file(url, zpath)
        except DownloadError as e:
            raise DownloadError(f"LSUN {cat}: {e}\nFor example `curl -C - -o {zpath} {url}` on a machine with "
                                f"internet; or unzip it yourself and set {key}.source: path and {key}.path to the "
                                f"{cat}_train_lmdb folder") from e
    verify_first_seen(ledger, zpath, url, key)
    log.info("checking the CRC of every member of %s", zpath)
    try:
        with zipfile.ZipFile(zpath) as zf:
            bad = zf.testzip()  # name of the first member whose CRC fails, or None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        bad = f"the archive ({type(e).__name__}: {e})"
    if bad is not None:
        raise DataError(f"LSUN {zpath} is corrupt ({bad} fails its CRC check). It is left in place: delete it and "
                        f"run again to download it anew (config key '{key}.path' = {path})")
    tmp = path / f".{cat}_train_lmdb.unzip"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(zpath) as zf:
            zf.extractall(tmp)  # extractall drops absolute paths and '..' from member names
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"unzipping {zpath} into {path} failed: {e} (the zip is kept; it needs about as much free "
                        "space again)") from e
    found = [p.parent for p in tmp.rglob("data.mdb")]
    if len(found) != 1:
        shutil.rmtree(tmp)
        raise DataError(f"LSUN {zpath}: expected one LMDB (data.mdb) inside, found {len(found)}")
    os.replace(found[0], db)
    shutil.rmtree(tmp)
    return db


def verify_first_seen(ledger: Path, path: Path, origin: str, key: str) -> str:
    """Check ``path`` against the full sha256 recorded in ``ledger`` at its first use, or record it now.

    For data with no published checksum (LSUN over plain HTTP): a later change (a corrupted disk, a swapped file,
    a tampered mirror) fails with both checksums instead of silently changing the training set. Returns
    ``sha256:<hex>`` (remembered per process, so the provenance record reuses it).
    """
    got = io.checksum(path)
    book = io.read_json(ledger) if ledger.is_file() else {}
    entry = book.get(str(path.resolve()))
    if entry is None:
        book[str(path.resolve())] = {"sha256": got, "bytes": path.stat().st_size, "origin": origin,
                                    "first_seen_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        io.write_json(ledger, book)
        log.info("recorded %s of %s (first use) in %s", got, path, ledger)
    elif entry["sha256"] != got:
        raise ChecksumError(
            f"{path} has changed since its first use: {got} now, {entry['sha256']} recorded on "
            f"{entry['first_seen_utc']} in {ledger} (from {entry['origin']}). It is left untouched (config key "
            f"'{key}.path'). If you replaced it on purpose, delete its entry from {ledger} and run again; otherwise "
            "restore the original file")
    return got


def _imagenet(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """ImageNet-1k train from an ImageFolder tree (Sec. 4.3): short side -> image_size (bilinear), centre crop."""
    path, size, cap = cfg["path"], int(cfg["image_size"]), int(cfg["max_images"])
    if not path:
        raise DataError(f"config key '{key}.path' is not set. ImageNet-1k cannot be downloaded automatically (it "
                        "needs an account at image-net.org): set data.imagenet.path to your ImageNet-1k train "
                        "folder (ILSVRC2012 train: one subfolder per class, e.g. train/n01440764/*.JPEG), or "
                        "set data.imagenet.source: demo")
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"config key '{key}.path': {root} does not exist or is not a folder; it must be the "
                        "ImageNet-1k train folder with one subfolder per class")
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(root))  # lists (path, class index) in sorted order; decodes nothing
    except FileNotFoundError as e:
        raise DataError(f"config key '{key}.path': {root} is not in ImageFolder layout "
                        f"(one subfolder of images per class): {e}") from e
    samples = folder.samples
    if cap and cap < len(samples):  # a seeded random subset, so every class stays represented
        keep = np.sort(np.random.default_rng(seed).choice(len(samples), cap, replace=False))
        samples = [samples[i] for i in keep]
    log.info("ImageNet: %d classes, %d of %d images at %dx%d", len(folder.classes), len(samples),
             len(folder.samples), size, size)
    items = ((p, lbl, os.path.relpath(p, root)) for p, lbl in samples)
    stats = _stream_images(stage, "train", items, len(samples), size, workers, "ImageNet")
    if stats["n"] == 0:
        raise DataError(f"ImageNet {root}: no image could be decoded (skipped: {stats['skipped']})")
    meta = _meta(splits={"train": stats["n"]}, image_shape=(size, size, 3), n_classes=len(folder.classes),
                 class_names=list(folder.classes), source=f"ImageFolder {root}", stand_in=None,
                 files_found=len(folder.samples), max_images=cap, skipped=stats["skipped"],
                 skipped_examples=stats["skipped_examples"],
                 preprocessing=f"short side resized to {size} (antialiased bilinear), centre crop {size}x{size}"
                               + (f"; seeded random subset of {cap} files" if cap else ""))
    return meta, {}


def _faces(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """Source images for the face stage (Sec. 4.2): CelebA via torchvision, or a folder of web images."""
    return (_faces_celeba if cfg["source"] == "celeba" else _faces_folder)(cfg=cfg, stage=stage, workers=workers,
                                                                           key=key)


def _faces_celeba(*, cfg, stage: Path, workers: int, key: str):
    from torchvision import datasets

    C = datasets.CelebA
    root = Path(cfg["path"])
    base = root / C.base_folder
    _check_files(base, [(fname, md5) for _, md5, fname in C.file_list], key, "CelebA", root)
    try:
        ds = C(str(root), split="all", target_type=[], download=True)
    except (RuntimeError, OSError) as e:
        files = "\n".join(f"  {base / fname}  (md5 {md5})" for _, md5, fname in C.file_list)
        raise DownloadError(
            f"CelebA: download failed: {e}\ntorchvision fetches CelebA from Google Drive (needs `pip install "
            f"gdown`, not pinned here), which often refuses with a quota error. Download these files by hand from "
            f"https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Google Drive or Baidu links, 'Align&Cropped "
            f"Images' and 'Anno'/'Eval') and place them as:\n{files}\n(img_align_celeba.zip may instead be unzipped "
            f"to {base / 'img_align_celeba'}/; config key '{key}.path' = {root}), then run again") from e
    names = list(ds.filename)
    cap = int(cfg["max_images"])
    names = names[:cap] if cap else names
    img_dir = base / "img_align_celeba"
    n = _link_files(((img_dir / f, f"images/{f}") for f in names), stage, cfg["link"])
    meta = _meta(splits={}, image_shape=None, n_images=n, manifest="manifest.txt",
                 source=f"torchvision.datasets.CelebA aligned images in {root} (split 'all', md5-checked "
                        f"annotation files), {cfg['link']}ed", link=cfg["link"], max_images=cap,
                 stand_in="CelebA aligned face photos (Liu et al. 2015) standing in for the paper's unreleased "
                          "3M web images of 10K people")
    return meta, {"annotations": [base / fname for _, _, fname in C.file_list if not fname.endswith(".zip")]}


def _faces_folder(*, cfg, stage: Path, workers: int, key: str):
    root = Path(cfg["path"])
    if not root.is_dir():
        raise DataError(f"config key '{key}.path': {root} does not exist or is not a folder of images")
    every = [p for p in root.rglob("*") if p.is_file()]
    files = sorted(p for p in every if p.suffix.lower() in IMAGE_EXTENSIONS)
    other = collections.Counter(p.suffix.lower() or "(none)" for p in every if p.suffix.lower() not in IMAGE_EXTENSIONS)
    if other:  # counted, never silently dropped: a user may have images under an extension we do not list
        log.warning("faces folder %s: %d files without an image extension (%s) are not used: %s", root,
                    sum(other.values()), ", ".join(IMAGE_EXTENSIONS), dict(other))
    if not files:
        raise DataError(f"config key '{key}.path': no image files ({', '.join(IMAGE_EXTENSIONS)}) under {root}")
    skipped: collections.Counter[str] = collections.Counter()
    examples, good = [], []
    cap = int(cfg["max_images"])
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for i in range(0, len(files), CHUNK):
            batch = files[i:i + CHUNK]
            for p, reason in zip(batch, pool.map(_check_image_file, batch)):
                if reason is None and "\n" in str(p):
                    reason = "newline_in_name"  # manifest.txt is one path per line
                if reason:
                    skipped[reason] += 1
                    if len(examples) < 20:
                        examples.append([str(p.relative_to(root)), reason])
                else:
                    good.append(p)
            if cap and len(good) >= cap:
                good = good[:cap]
                break
    if skipped:
        log.warning("faces folder %s: skipped %d unreadable files: %s", root, sum(skipped.values()), dict(skipped))
    if not good:
        raise DataError(f"config key '{key}.path': none of the {len(files)} image files under {root} can be decoded")
    n = _link_files(((p, f"images/{p.relative_to(root).as_posix()}") for p in good), stage, cfg["link"])
    meta = _meta(splits={}, image_shape=None, n_images=n, manifest="manifest.txt",
                 source=f"image folder {root} (searched recursively, every file decoded once), {cfg['link']}ed",
                 link=cfg["link"], files_found=len(files), max_images=cap, skipped=dict(skipped),
                 skipped_examples=examples, other_files_by_extension=dict(sorted(other.items())),
                 stand_in=f"web images from {root} standing in for the paper's unreleased 3M web images of 10K "
                          "people")
    return meta, {}


def _check_image_file(path: Path) -> str | None:
    """None when ``path`` decodes fully, else the reason (see :func:`decode_image`)."""
    return decode_image(path)[1]


def _link_files(pairs: Iterable[tuple[Path, str]], stage: Path, mode: str) -> int:
    """Put each source file at ``stage/<rel>`` (hard link, symlink or copy) and write ``manifest.txt``.

    ``hardlink`` falls back to copying when source and output are on different file systems.
    """
    if mode not in ("hardlink", "symlink", "copy"):
        raise DataError(f"config key 'data.faces.link': {mode!r} is not allowed; allowed values: hardlink, "
                        "symlink, copy")
    rels, made = [], set()
    warned = False
    for src, rel in pairs:
        dst = stage / rel
        if dst.parent not in made:
            dst.parent.mkdir(parents=True, exist_ok=True)
            made.add(dst.parent)
        if mode == "hardlink":
            try:
                os.link(src, dst)
            except OSError as e:
                if not warned:
                    log.warning("cannot hard-link %s (%s); copying instead", src, e)
                    warned = True
                shutil.copy2(src, dst)
        elif mode == "symlink":
            os.symlink(Path(src).resolve(), dst)
        else:
            shutil.copy2(src, dst)
        rels.append(rel)
    io.write_text(stage / "manifest.txt", "".join(r + "\n" for r in rels))
    return len(rels)


_REAL: dict[str, Callable[..., tuple[dict, dict]]] = {
    "mnist": _mnist, "cifar10": _cifar10, "svhn": _svhn, "lsun_raw": _lsun, "imagenet": _imagenet,
    "faces_raw": _faces,
}


# ------------------------------------------------------------------------------------------------------------
# demo sources: real images shipped with scikit-learn and scikit-image, offline, deterministic from the seed
# ------------------------------------------------------------------------------------------------------------

# Demo CIFAR-10: one class per shipped colour photo.
DEMO_CIFAR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "retina", "china", "flower", "motorcycle_left")
# Grayscale photos made colour (gray replicated to 3 channels) widen the LSUN / ImageNet demo pools. Pure
# textures (grass, gravel, brick) are left out: crops of them look alike without being duplicates.
DEMO_GRAY_PHOTOS = ("camera", "coins", "moon", "cell", "clock")
DEMO_POOL = DEMO_CIFAR_PHOTOS + DEMO_GRAY_PHOTOS
# Astronaut's face box (x, y, w, h) as OpenCV's haarcascade_frontalface_default finds it (scaleFactor 1.1,
# minNeighbors 5) in skimage.data.astronaut(); tests/test_data.py re-detects it.
ASTRONAUT_FACE = (177, 66, 95, 95)
# Face-demo backgrounds: shipped photos without people in which that cascade finds no face at 320-640 px (coins,
# flower, cell and immunohistochemistry give false detections), so the planted boxes are the only faces.
FACE_BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "china", "motorcycle_left",
                    "moon", "clock")
_DEMO_SUBSEED = {name: i for i, name in enumerate(DATASETS)}  # keeps the datasets' random streams apart


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, _DEMO_SUBSEED[name]])


@lru_cache(maxsize=None)
def demo_photo(name: str) -> np.ndarray:
    """A photo shipped with scikit-image or scikit-learn as uint8 (H, W, 3) RGB (gray replicated to colour)."""
    import skimage
    import skimage.data
    import skimage.io
    from sklearn.datasets import load_sample_images

    if name in ("china", "flower"):
        sample = load_sample_images()
        img = sample.images[[Path(f).stem for f in sample.filenames].index(name)]
    elif name == "motorcycle_left":  # shipped as a file, not a skimage.data function
        path = Path(skimage.data.__file__).parent / "motorcycle_left.png"
        if not path.is_file():
            raise DataError(f"demo photo {path} is missing from this scikit-image install "
                            f"({skimage.__version__}); reinstall scikit-image as pinned in requirements.txt")
        img = skimage.io.imread(path)
    else:
        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)  # (H, W) -> (H, W, 3)
    img = img[..., :3]  # drop alpha if any
    if img.dtype != np.uint8 or img.ndim != 3:
        raise DataError(f"demo photo {name}: expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
    img = np.ascontiguousarray(img)
    img.setflags(write=False)  # cached and shared: callers must copy before drawing on it
    return img


def _draw_crops(rng: np.random.Generator, photo: np.ndarray, n: int, frac: tuple[float, float],
                min_side: int, distinct: bool, min_std: float = 12.0) -> np.ndarray:
    """``n`` square crops (x, y, side) of an (H, W, 3) photo, side uniform in ``frac`` of min(H, W) (at least
    ``min_side``). With ``distinct`` no two crops are near-duplicates of each other (centres closer than a
    quarter side with sides within 25 %). Flat crops (grey-level std below ``min_std``: black retina corners,
    empty sky) are redrawn, so the only near-duplicates in a demo set are the planted ones."""
    h, w = photo.shape[:2]
    f = max(1, min(h, w) // 128)  # std is checked on a thumbnail
    thumb = photo[::f, ::f].mean(axis=2)  # (H/f, W/f) grey
    m = min(h, w)
    lo, hi = max(min_side, int(frac[0] * m)), max(min_side, int(frac[1] * m))
    out = np.zeros((n, 3), dtype=np.int64)
    k = tries = 0
    while k < n:
        tries += 1
        if tries > 200 * n:
            raise DataError(f"cannot draw {n} distinct crops from a {h}x{w} photo")
        side = int(rng.integers(lo, hi + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if thumb[y // f:(y + side) // f, x // f:(x + side) // f].std() < min_std:
            continue
        prev = out[:k] if distinct else out[:0]
        close = ((np.abs(prev[:, 0] + prev[:, 2] / 2 - x - side / 2) < side / 4)
                 & (np.abs(prev[:, 1] + prev[:, 2] / 2 - y - side / 2) < side / 4)
                 & (np.maximum(prev[:, 2], side) < 1.25 * np.minimum(prev[:, 2], side)))
        if not close.any():
            out[k] = (x, y, side)
            k += 1
    return out


def _crop(photo: np.ndarray, x: int, y: int, side: int, size: int) -> np.ndarray:
    """Square crop resized to (size, size, 3): area averaging when shrinking, bicubic when enlarging."""
    patch = photo[y:y + side, x:x + side]  # (side, side, 3)
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)  # (size, size, 3)


def _photo_crops(rng: np.random.Generator, names: tuple[str, ...], per_photo: int, size: int,
                 frac: tuple[float, float], distinct: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_photo`` distinct crops of each photo: images (N, size, size, 3), labels (N,), crops (N, 4)
    as (photo index, x, y, side)."""
    xs, ys, params = [], [], []
    for label, name in enumerate(names):
        photo = demo_photo(name)
        for x, y, side in _draw_crops(rng, photo, per_photo, frac, min_side=size // 2, distinct=distinct):
            xs.append(_crop(photo, x, y, side, size))
            ys.append(label)
            params.append((label, x, y, side))
    return np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(params, dtype=np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn load_digits: 1797 real handwritten digits, float (N, 8, 8) in 0..16, labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def _split_digits(y: np.ndarray, seed: int, test: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train / test index split (sklearn)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(y)), test_size=test, stratify=y, random_state=seed)


def _demo_mnist(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """load_digits as MNIST-like 28x28x1: each 8x8 digit upscaled bicubically to 20x20 and zero-padded by 4 px,
    the 20x20 box in a 28x28 frame of MNIST. Stratified seeded split, 1497 train / 300 test."""
    imgs, y = _digits()
    big = np.stack([cv2.resize(im * (255 / 16), (20, 20), interpolation=cv2.INTER_CUBIC) for im in imgs])  # (N,20,20)
    x = np.pad(np.clip(np.rint(big), 0, 255).astype(np.uint8), ((0, 0), (4, 4), (4, 4)))[..., None]  # (N,28,28,1)
    tr, te = _split_digits(y, seed, test=300)
    io.write_dataset(stage, "train", x[tr], y[tr])
    io.write_dataset(stage, "test", x[te], y[te])
    meta = _meta(splits={"train": len(tr), "test": len(te)}, image_shape=(28, 28, 1), n_classes=10,
                 class_names=[str(i) for i in range(10)],
                 source="sklearn.datasets.load_digits: 8x8 (0-16) scaled to 0-255, bicubic 8x8 -> 20x20, zero "
                        "padding to 28x28; stratified seeded split 1497 / 300",
                 stand_in="scikit-learn load_digits (real handwritten digits, 8x8 upscaled to 28x28) standing in "
                          "for MNIST")
    return meta, {}


def _svhn_render(rng: np.random.Generator, digit: np.ndarray, others: np.ndarray) -> np.ndarray:
    """One 32x32 house-number-like crop: a digit (8x8, 0..16) in a random colour on a random colour gradient,
    with parts of neighbouring digits at the sides (as SVHN's crops have), sensor noise. -> (32, 32, 3) uint8."""
    bg0, bg1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, 32)[:, None, None]  # (32, 1, 1) vertical gradient
    bg = (bg0 * (1 - t) + bg1 * t) * np.ones((1, 32, 1))  # (32, 32, 3)
    lum = bg.mean()
    fg = rng.uniform(0, 255, 3)
    fg = np.clip(fg + (90 if fg.mean() >= lum else -90), 0, 255)  # keep the digit readable
    mask = np.zeros((32, 32), np.float32)
    h = int(rng.integers(20, 29))  # digit height in px
    w = max(10, int(h * rng.uniform(0.6, 0.8)))
    cx, cy = 16 + int(rng.integers(-2, 3)), 16 + int(rng.integers(-2, 3))
    placements = [(digit, cx)]
    for side in (-1, 1):  # neighbouring digits, partly visible
        if rng.random() < 0.5:
            placements.append((others[int(rng.integers(len(others)))], cx + side * int(w * 1.15)))
    for d, x_c in placements:
        glyph = np.clip(cv2.resize(d / 16, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)  # (h, w)
        x0, y0 = x_c - w // 2, cy - h // 2
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, 32), min(y0 + h, 32)
        if xa < xb and ya < yb:
            mask[ya:yb, xa:xb] = np.maximum(mask[ya:yb, xa:xb], glyph[ya - y0:yb - y0, xa - x0:xb - x0])
    img = bg * (1 - mask[..., None]) + fg * mask[..., None] + rng.normal(0, 4, (32, 32, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _demo_svhn(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """load_digits drawn as colour 32x32 house-number-like crops; stratified seeded split 1497 / 300."""
    rng = _rng(seed, "svhn")
    imgs, y = _digits()
    x = np.stack([_svhn_render(rng, im, imgs) for im in imgs])  # (N, 32, 32, 3)
    tr, te = _split_digits(y, seed, test=300)
    io.write_dataset(stage, "train", x[tr], y[tr])
    io.write_dataset(stage, "test", x[te], y[te])
    meta = _meta(splits={"train": len(tr), "test": len(te)}, image_shape=(32, 32, 3), n_classes=10,
                 class_names=[str(i) for i in range(10)],
                 source="sklearn.datasets.load_digits: each digit bicubically enlarged to 20-28 px, in a random "
                        "colour on a random colour gradient with partial neighbour digits and noise, 32x32; "
                        "stratified seeded split 1497 / 300",
                 stand_in="scikit-learn load_digits (real handwritten digits, drawn in colour on random 32x32 "
                          "backgrounds) standing in for SVHN")
    return meta, {}


def _demo_cifar10(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """10 classes = 10 shipped colour photos; each image a random square crop (side 15-70 % of the photo's short
    side) resized to 32x32; 200 train + 50 test per class, shuffled. Train and test crops come from the same
    photos (they may overlap), so accuracies on it are optimistic."""
    rng = _rng(seed, "cifar10")
    x, y, _ = _photo_crops(rng, DEMO_CIFAR_PHOTOS, 250, 32, frac=(0.15, 0.7))
    test = np.zeros(len(y), bool)
    for c in range(len(DEMO_CIFAR_PHOTOS)):
        test[rng.choice(np.flatnonzero(y == c), 50, replace=False)] = True
    for split, mask in (("train", ~test), ("test", test)):
        idx = rng.permutation(np.flatnonzero(mask))
        io.write_dataset(stage, split, x[idx], y[idx])
    meta = _meta(splits={"train": int((~test).sum()), "test": int(test.sum())}, image_shape=(32, 32, 3),
                 n_classes=10, class_names=list(DEMO_CIFAR_PHOTOS),
                 source="random square crops (15-70 % of the short side, area-resized to 32x32) of 10 photos "
                        "shipped with scikit-image / scikit-learn, one class per photo; 200 train + 50 test each",
                 stand_in="32x32 crops of 10 photos shipped with scikit-image / scikit-learn, labelled by photo "
                          "(10 classes), standing in for CIFAR-10")
    return meta, {}


def _demo_imagenet(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """100 random crops of each of the 15 shipped photos at image_size (1500 images), labelled by photo."""
    size = int(cfg["image_size"])
    rng = _rng(seed, "imagenet")
    x, y, _ = _photo_crops(rng, DEMO_POOL, 100, size, frac=(0.1, 0.7))
    idx = rng.permutation(len(y))
    io.write_dataset(stage, "train", x[idx], y[idx])
    meta = _meta(splits={"train": len(y)}, image_shape=(size, size, 3), n_classes=len(DEMO_POOL),
                 class_names=list(DEMO_POOL),
                 source=f"random square crops (10-70 % of the short side) resized to {size}x{size} of 15 photos "
                        "shipped with scikit-image / scikit-learn (5 of them grayscale made colour)",
                 stand_in=f"{size}x{size} crops of 15 photos shipped with scikit-image / scikit-learn standing in "
                          "for ImageNet-1k")
    return meta, {}


DUPLICATE_KINDS = ("exact", "jpeg", "shift", "brightness")


def _demo_lsun(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """~1500 crops at image_size of the 15 shipped photos, 10 % of them planted near-duplicates of others.

    Base: 91 mutually distinct random crops per photo (1365). Planted: 136 duplicates of distinct base images,
    cycling over exact copies, JPEG re-encodes (quality 50-85), 1-2 px shifts (the crop window moved 1-2 output
    pixels in the photo) and brightness changes (+-12..30 levels). Everything is shuffled; meta records
    ``planted_duplicates`` = [[dup_index, original_index], ...] and each one's kind.
    """
    size = int(cfg["image_size"])
    rng = _rng(seed, "lsun_raw")
    base, _, params = _photo_crops(rng, DEMO_POOL, 91, size, frac=(0.12, 0.6), distinct=True)
    n_dup = round(0.1 * len(base))
    originals = rng.choice(len(base), n_dup, replace=False)
    dups, kinds = [], []
    for j, o in enumerate(originals):
        kind = DUPLICATE_KINDS[j % len(DUPLICATE_KINDS)]
        img = base[o]
        if kind == "jpeg":
            ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 86))])
            img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]  # BGR round trip -> RGB (size, size, 3)
        elif kind == "shift":
            p, x, y, side = params[o]
            photo = demo_photo(DEMO_POOL[p])
            step = side / size  # photo pixels per output pixel
            dx, dy = (int(rng.choice([-2, -1, 1, 2])) for _ in range(2))
            x2 = int(np.clip(x + round(dx * step), 0, photo.shape[1] - side))
            y2 = int(np.clip(y + round(dy * step), 0, photo.shape[0] - side))
            img = _crop(photo, x2, y2, side, size)
        elif kind == "brightness":
            delta = int(rng.integers(12, 31)) * int(rng.choice([-1, 1]))
            img = np.clip(img.astype(np.int16) + delta, 0, 255).astype(np.uint8)
        dups.append(img)
        kinds.append(kind)
    x = np.concatenate([base, np.stack(dups)])  # (N, size, size, 3): base then duplicates
    order = rng.permutation(len(x))  # new position i holds old image order[i]
    where = np.argsort(order)  # old index -> new position
    pairs = sorted([int(where[len(base) + j]), int(where[o])] for j, o in enumerate(originals))
    kind_of = {int(where[len(base) + j]): kinds[j] for j in range(n_dup)}
    io.write_dataset(stage, "train", x[order], None)
    meta = _meta(splits={"train": len(x)}, image_shape=(size, size, 3),
                 source=f"random square crops (12-60 % of the short side) resized to {size}x{size} of 15 photos "
                        f"shipped with scikit-image / scikit-learn; {n_dup} planted near-duplicates",
                 stand_in=f"{size}x{size} crops of 15 photos shipped with scikit-image / scikit-learn, with "
                          f"{n_dup} planted near-duplicates, standing in for LSUN bedrooms",
                 planted_duplicates=pairs, planted_duplicate_kinds=[kind_of[d] for d, _ in pairs],
                 duplicate_kinds_note="exact copy; jpeg = JPEG re-encode at quality 50-85; shift = crop window "
                                      "moved 1-2 output px; brightness = +-12..30 grey levels")
    return meta, {}


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    canvas[y:y + patch.shape[0], x:x + patch.shape[1]] = patch


def _background(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A face-free shipped photo (:data:`FACE_BACKGROUNDS`) resized so its long side is ``long_side``."""
    name = FACE_BACKGROUNDS[int(rng.integers(len(FACE_BACKGROUNDS)))]
    photo = demo_photo(name)
    h, w = photo.shape[:2]
    s = long_side / max(h, w)
    return cv2.resize(photo, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA).copy()  # (h', w', 3)


def _place(rng: np.random.Generator, canvas_shape, side: int, taken: list[tuple[int, int, int, int]]):
    """A random top-left corner for a ``side`` square that overlaps none of ``taken`` (x, y, w, h)."""
    h, w = canvas_shape[:2]
    for _ in range(200):
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in taken):
            return x, y
    raise DataError("demo faces: no room to paste a face")


def _demo_faces(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """40 source images for the face stage, written as JPEG and PNG files with manifest.txt.

    - 14 with the astronaut's face (skimage.data.astronaut, its face box enlarged 2x as the pasted patch) at face
      sizes 80-200 px, 4 of them also holding an LFW face;
    - 14 with one LFW face (skimage.data.lfw_subset, the first 100 are faces: tight 25x25 grayscale crops,
      bicubically enlarged to 90-160 px);
    - 10 face-free photos;
    - 2 broken files: a zero-byte JPEG and a JPEG cut to half its bytes (for the face stage's bad-input path).
    Faces are pasted (hard edges) at random positions onto :data:`FACE_BACKGROUNDS` photos.
    ``meta["planted_faces"]`` maps each file to its face boxes [x, y, w, h, source].
    """
    import skimage.data

    rng = _rng(seed, "faces_raw")
    astro = demo_photo("astronaut")
    fx, fy, fw, fh = ASTRONAUT_FACE
    m = fw // 2
    astro_patch = astro[fy - m:fy + fh + m, fx - m:fx + fw + m]  # (2*95, 2*95, 3) face box enlarged 2x
    lfw = skimage.data.lfw_subset()[:100]  # (100, 25, 25) float in [0, 1]; first 100 are faces
    lfw_ids = rng.choice(100, 18, replace=False)
    astro_sizes = rng.permutation(np.linspace(80, 200, 14).round().astype(int))
    lfw_sizes = rng.integers(90, 161, 18)
    images: dict[str, np.ndarray] = {}
    planted: dict[str, list] = {}

    def add_astronaut(canvas, size, taken):
        patch = cv2.resize(astro_patch, (2 * size, 2 * size), interpolation=cv2.INTER_AREA)  # face side = size
        x, y = _place(rng, canvas.shape, 2 * size, taken)
        _paste(canvas, patch, x, y)
        taken.append((x, y, 2 * size, 2 * size))
        return [x + size // 2, y + size // 2, size, size, "astronaut"]

    def add_lfw(canvas, k, taken):
        size = int(lfw_sizes[k])
        face = cv2.resize((lfw[lfw_ids[k]] * 255).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        face = np.repeat(np.clip(np.rint(face), 0, 255).astype(np.uint8)[..., None], 3, axis=2)  # (size, size, 3)
        x, y = _place(rng, canvas.shape, size, taken)
        _paste(canvas, face, x, y)
        taken.append((x, y, size, size))
        return [x, y, size, size, f"lfw_subset[{int(lfw_ids[k])}]"]

    for i in range(14):
        canvas, taken = _background(rng, 640), []
        boxes = [add_astronaut(canvas, int(astro_sizes[i]), taken)]
        if i < 4:
            boxes.append(add_lfw(canvas, 14 + i, taken))
        name = f"images/astronaut_{i:02d}.{'jpg' if i % 2 else 'png'}"
        images[name], planted[name] = canvas, boxes
    for i in range(14):
        canvas, taken = _background(rng, int(rng.integers(400, 641))), []
        name = f"images/lfw_{i:02d}.{'png' if i % 2 else 'jpg'}"
        images[name], planted[name] = canvas, [add_lfw(canvas, i, taken)]
    faceless = []
    for i in range(10):
        name = f"images/noface_{i:02d}.{'jpg' if i % 2 else 'png'}"
        images[name] = _background(rng, int(rng.integers(320, 641)))
        faceless.append(name)
    for name, img in images.items():
        params = [cv2.IMWRITE_JPEG_QUALITY, 92] if name.endswith(".jpg") else []
        ok, buf = cv2.imencode(Path(name).suffix, img[..., ::-1], params)  # RGB -> BGR for OpenCV
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_bytes(buf.tobytes())
    broken = ["images/broken_empty.jpg", "images/broken_truncated.jpg"]
    (stage / broken[0]).write_bytes(b"")
    whole = (stage / "images/lfw_00.jpg").read_bytes()
    (stage / broken[1]).write_bytes(whole[:len(whole) // 2])
    names = sorted([*images, *broken])
    io.write_text(stage / "manifest.txt", "".join(n + "\n" for n in names))
    meta = _meta(splits={}, image_shape=None, n_images=len(names), manifest="manifest.txt",
                 source="skimage.data.astronaut face and skimage.data.lfw_subset faces (25x25, bicubic to 90-160 "
                        "px) pasted onto photos shipped with scikit-image / scikit-learn; JPEG and PNG files",
                 stand_in="the scikit-image astronaut face and 25x25 LFW-subset faces, upscaled and pasted on "
                          "shipped photos (40 files), standing in for the paper's 3M web images of 10K people",
                 planted_faces=planted, faceless=faceless, planted_broken=broken)
    return meta, {}


_DEMO: dict[str, Callable[..., tuple[dict, dict]]] = {
    "mnist": _demo_mnist, "cifar10": _demo_cifar10, "svhn": _demo_svhn, "lsun_raw": _demo_lsun,
    "imagenet": _demo_imagenet, "faces_raw": _demo_faces,
}
