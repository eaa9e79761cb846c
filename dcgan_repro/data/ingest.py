"""Dataset ingest: every dataset of the paper into the common training format (docs/CONTRACTS.md, "Datasets").

One entry point, :func:`ingest`, used by rule ``data_ingest``, which reads only local files (``offline=True``): the
files of the sources the workflow downloads were fetched and verified by rule ``data_download``
(:mod:`dcgan_repro.data.fetch`), and are verified again here. Each dataset folder holds ``<split>_x.npy`` (uint8
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
- ``npz`` (cifar10, svhn) an .npz file holding ``x_train``/``x_test`` (uint8 N x 32 x 32 x 3) and ``y_train``/
  ``y_test`` (labels 0..9; SVHN digit 0 as 0), optionally ``class_names`` and ``train_index``/``test_index`` (the
  official index of each row). Its sha256 goes into the provenance inputs.

Official subsets (cifar10, svhn): ``train_images`` / ``test_images`` = N keeps the first N images of the official
order after reading (0 = the whole split), so a reviewer rebuilds the same subset from the official download.
``meta["subset"]`` records them (null = the whole official split) and whether the order is the official one.
- ``lsun_raw`` the official LSUN LMDB export of one category's train set (Sec. 4.1; bedroom), fetched like
  fyu/lsun download.py (``<category>_train_lmdb.zip``) with a resumable, size- and CRC-checked download, or an
  LMDB folder the user placed. Images are JPEG (short side 256, quality 75) as exported by LSUN.
- ``imagenet`` an ImageNet-1k train folder in ImageFolder layout that the user supplies (Sec. 4.3).
- ``faces_raw`` torchvision.datasets.CelebA aligned images (a public stand-in for the paper's unreleased 3M web
  images of 10K people, Sec. 4.2) or any folder of web images; the face stage (dcgan_repro.faces) detects faces.

Resizing (LSUN, ImageNet): short side resized to ``image_size`` with antialiased bilinear interpolation, then a
centre crop, exactly torchvision ``Resize(size)`` + ``CenterCrop(size)`` on PIL images
(:func:`dcgan_repro.images.resize_center_crop`; the pytorch/examples DCGAN LSUN pipeline; for ImageNet the
"min-resized centre crops" of Sec. 4.3 with the bilinear filter of the training script matching the authors'
released 32x32 model, docs/REFERENCE.md Sec. 3). Decoding (:func:`dcgan_repro.images.decode_image` with
``pillow_only``, so pixels equal torchvision's Pillow loaders; the face stage uses the same decoder) turns
grayscale, CMYK, palette and 16-bit images into 8-bit RGB; images that cannot be decoded (zero bytes, truncated,
corrupt, not an image, over ``images.MAX_PIXELS``) are skipped, never a crash, and counted by reason
(``images.SKIP_REASONS``) in ``meta["skipped"]``, which the dedup and face summaries repeat.

Demo sources (``source: demo``) are built by :mod:`dcgan_repro.data.demo`; fetching and verifying are
:mod:`dcgan_repro.data.fetch`, resumable downloads and checksums :mod:`dcgan_repro.data.download`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import logging
import os
import shutil
import time
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from dcgan_repro import images, io
from dcgan_repro.config import DATA_CONFIG_KEY, INGESTED_DATASETS
from dcgan_repro.data import demo, download, fetch
from dcgan_repro.data.download import DataError

log = logging.getLogger(__name__)

DATASETS = INGESTED_DATASETS  # defined with their config.yaml data.<key> sections (DATA_CONFIG_KEY) in config.py
SOURCES = {
    "mnist": ("download", "demo"),
    "cifar10": ("download", "npz", "demo"),
    "svhn": ("download", "npz", "demo"),
    "lsun_raw": ("download", "path", "demo"),
    "imagenet": ("path", "demo"),
    "faces_raw": ("celeba", "folder", "demo"),
}
# Image files a `folder` source may hold (OpenCV and PIL both read these).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm")
MNIST_RAW_MD5 = fetch.MNIST_RAW_MD5  # md5 of the uncompressed MNIST IDX files
# Where the LSUN zip comes from; read at each call, so a test may point it at a local server.
LSUN_URL = fetch.LSUN_URL
CHUNK = 1024  # images decoded per thread-pool round while streaming
# Official split sizes of the datasets whose first N images data.<name>.train_images / test_images select.
OFFICIAL_SIZES = {"cifar10": {"train": 50000, "test": 10000}, "svhn": {"train": 73257, "test": 26032}}
SUBSET_KEYS = {"train": "train_images", "test": "test_images"}
TITLES = {"cifar10": "CIFAR-10", "svhn": "SVHN"}
# torchvision CIFAR10.classes (batches.meta label_names): class names when an npz file has none.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# ------------------------------------------------------------------------------------------------------------
# entry point
# ------------------------------------------------------------------------------------------------------------


def ingest(name: str, cfg: dict[str, Any], out_dir: str | os.PathLike, seed: int, *, workers: int = 1,
           ledger: str | os.PathLike | None = None, offline: bool = False) -> dict:
    """Build dataset ``name`` in ``out_dir`` from its ``config.yaml data.<key>`` section; return its meta.

    ``name`` is one of :data:`DATASETS`; ``cfg["source"]`` picks how (see :data:`SOURCES`). ``seed`` drives every
    random choice (demo crops, splits, the ImageNet ``max_images`` subset). ``workers`` threads decode images.
    The folder is built beside ``out_dir`` and renamed onto it only when complete (:func:`io.staged_folder`).
    Files with no published checksum (LSUN) are recorded at first use in ``ledger`` (default
    ``<out_dir>/../checksums/<name>.json``) and verified against it at every later use
    (:func:`dcgan_repro.data.download.verify_first_seen`). ``offline`` (rule ``data_ingest``): read only local
    files, verified; a missing one raises :class:`DataError` naming it and the download step (rule
    ``data_download``), instead of being fetched here.
    """
    t0 = time.time()
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    key = f"data.{DATA_CONFIG_KEY[name]}"
    source = cfg.get("source")
    if source not in SOURCES[name]:
        raise DataError(f"config key '{key}.source': {source!r} is not allowed for {name}; "
                        f"allowed values: {', '.join(SOURCES[name])}")
    if name in OFFICIAL_SIZES:
        _check_subset_settings(name, cfg, key, source)
    builder = demo.BUILDERS[name] if source == "demo" else functools.partial(_REAL[name], offline=offline)
    if name == "lsun_raw" and source != "demo":
        ledger = Path(ledger) if ledger else Path(out_dir).parent / "checksums" / f"{name}.json"
        builder = functools.partial(builder, ledger=ledger)
    log.info("ingest %s from %s source into %s (seed %d, %d workers)", name, source, out_dir, seed, workers)
    with io.staged_folder(out_dir, error=DataError, hint=" or choose another data.root") as stage:
        fields, inputs = builder(cfg=cfg, stage=stage, seed=seed, workers=max(1, int(workers)), key=key)
        meta = {"name": name, **_meta(**fields)}
        meta["provenance"] = io.provenance(config=cfg, seed=seed, inputs=inputs, started=t0)
        io.write_json(stage / "meta.json", meta)
    log.info("ingest %s done: splits %s, image shape %s, %.1f s", name, meta["splits"], meta["image_shape"],
             time.time() - t0)
    return meta


def _meta(*, splits: dict[str, int], image_shape, n_classes: int = 0, class_names=None, source: str,
          stand_in: str | None, **extra) -> dict[str, Any]:
    """The contract's meta.json keys (docs/CONTRACTS.md) plus dataset-specific extras, from the fields a builder
    (real or :data:`dcgan_repro.data.demo.BUILDERS`) returns."""
    return {"splits": splits, "image_shape": list(image_shape) if image_shape is not None else None,
            "n_classes": n_classes, "class_names": class_names, "source": source, "stand_in": stand_in, **extra}


# ------------------------------------------------------------------------------------------------------------
# streaming decode (LSUN, ImageNet) into .npy
# ------------------------------------------------------------------------------------------------------------


def _load_resized(src, size: int) -> tuple[np.ndarray | None, str | None]:
    img, reason = images.decode_image(src, pillow_only=True)
    return (None, reason) if img is None else (images.resize_center_crop(img, size), None)


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


def _mnist(*, cfg, stage: Path, seed: int, workers: int, key: str, offline: bool):
    """MNIST via torchvision (Sec. 5.3): 60,000 train + 10,000 test, 28x28x1 uint8, original order.

    Each IDX file is md5-checked; a bad one is named and left in place (:class:`download.ChecksumError`); missing
    ones are fetched unless ``offline`` (:func:`dcgan_repro.data.fetch.mnist`).
    """
    from torchvision.datasets import mnist as tv_mnist

    root = Path(cfg["path"])
    raw = root / "MNIST" / "raw"
    fetch.mnist(root, key, download=not offline)
    splits = {s: tv_mnist.MNIST(str(root), train=(s == "train"), download=False) for s in ("train", "test")}
    for split, ds in splits.items():
        io.write_dataset(stage, split, ds.data.numpy()[..., None], ds.targets.numpy())  # (N,28,28) -> (N,28,28,1)
    meta = dict(splits={s: len(d) for s, d in splits.items()}, image_shape=(28, 28, 1), n_classes=10,
                class_names=[str(i) for i in range(10)],
                source=f"torchvision.datasets.MNIST in {root} (md5 of each IDX file checked)", stand_in=None)
    return meta, {"raw": [raw / f for f in MNIST_RAW_MD5]}


def _cifar10(*, cfg, stage: Path, seed: int, workers: int, key: str, offline: bool):
    """CIFAR-10 via torchvision (Sec. 5.1): 50,000 train + 10,000 test, 32x32x3; or its first N of each split."""
    if cfg["source"] == "npz":
        return _official_npz("cifar10", cfg=cfg, stage=stage, key=key)
    from torchvision import datasets

    C = datasets.CIFAR10
    root = Path(cfg["path"])
    batches = [*C.train_list, *C.test_list, (C.meta["filename"], C.meta["md5"])]
    fetch.cifar10(root, key, download=not offline)  # every batch file md5-checked (fetched first unless offline)
    splits = {s: C(str(root), train=(s == "train"), download=False) for s in ("train", "test")}
    arrays = {s: (ds.data, np.asarray(ds.targets, dtype=np.int64)) for s, ds in splits.items()}  # (N, 32, 32, 3)
    sizes, subset = _write_official_subset("cifar10", arrays, cfg, stage, key, where=f"{root / C.base_folder}")
    meta = dict(splits=sizes, image_shape=(32, 32, 3), n_classes=10, class_names=list(splits["train"].classes),
                source=f"torchvision.datasets.CIFAR10 in {root} (md5-checked); {_subset_text(subset)}",
                stand_in=None, subset=subset)
    return meta, {"batches": [root / C.base_folder / f for f, _ in batches]}


def _svhn(*, cfg, stage: Path, seed: int, workers: int, key: str, offline: bool):
    """SVHN train + test via torchvision (Sec. 5.2); labels = the digit (torchvision maps the .mat's 10 to 0)."""
    if cfg["source"] == "npz":
        return _official_npz("svhn", cfg=cfg, stage=stage, key=key)
    from torchvision import datasets

    S = datasets.SVHN
    root = Path(cfg["path"])
    fetch.svhn(root, key, download=not offline)  # both .mat files md5-checked (fetched first unless offline)
    arrays, files = {}, []
    for split in ("train", "test"):
        fname = S.split_list[split][1]
        ds = S(str(root), split=split, download=False)
        y = np.asarray(ds.labels, dtype=np.int64)
        if y.min() < 0 or y.max() > 9:
            raise DataError(f"SVHN {root / fname}: labels span {y.min()}..{y.max()}, expected 0..9 after "
                            "torchvision's 10 -> 0 mapping")
        arrays[split] = (ds.data.transpose(0, 2, 3, 1), y)  # (N, 3, 32, 32) -> (N, 32, 32, 3), a view
        files.append(root / fname)
    sizes, subset = _write_official_subset("svhn", arrays, cfg, stage, key, where=str(root))
    meta = dict(splits=sizes, image_shape=(32, 32, 3), n_classes=10, class_names=[str(i) for i in range(10)],
                source=f"torchvision.datasets.SVHN train + test in {root} (md5-checked; extra not used); "
                       f"{_subset_text(subset)}",
                stand_in=None, subset=subset,
                label_note="label = the digit shown: the .mat files store digit 0 as 10 and torchvision maps it "
                           "to 0; the authors' code used label-1 instead (a class permutation)")
    return meta, {"mat": files}


# ------------------------------------------------------------------------------------------------------------
# official subsets and .npz files (cifar10, svhn)
# ------------------------------------------------------------------------------------------------------------


def _check_subset_settings(name: str, cfg, key: str, source: str) -> None:
    """``train_images`` / ``test_images``: integers >= 0 (absent = 0); refused for the demo stand-in, which has no
    official order to take the first N of."""
    for k in SUBSET_KEYS.values():
        v = cfg.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise DataError(f"config key '{key}.{k}': {v!r} is not allowed; allowed values: 0 (the whole official "
                            f"split) or N >= 1 (its first N images)")
        if v and source == "demo":
            raise DataError(f"config key '{key}.{k}': {v} selects the first {v} images of the official {TITLES[name]} "
                            f"order, which the demo stand-in does not have; set it to 0, or set '{key}.source' to "
                            f"download or npz")


def _write_official_subset(name: str, arrays: dict[str, tuple[np.ndarray, np.ndarray]], cfg, stage: Path, key: str,
                           where: str, order: str = "official", index: dict[str, np.ndarray] | None = None):
    """Write the first ``cfg[train_images]`` / ``cfg[test_images]`` rows (0 = all) of each split's (x, y); return
    (split sizes, the ``meta["subset"]`` record).

    ``order`` is "official" when row i of each split is official image i, else "file" (then ``index``, when given,
    holds each row's official index, and the kept part of it is recorded). A count is recorded as null only when
    the rows kept are the whole official split in official order."""
    sizes, subset = {}, {}
    for split, (x, y) in arrays.items():
        k = SUBSET_KEYS[split]
        n = int(cfg.get(k, 0))
        if n > len(x):
            raise DataError(f"config key '{key}.{k}': {n} is larger than the {split} split of {TITLES[name]} in "
                            f"{where}, which holds {len(x)} images; allowed values: 0 (all) to {len(x)}")
        n = n or len(x)
        io.write_dataset(stage, split, x[:n], y[:n])
        sizes[split] = n
        whole = order == "official" and n == OFFICIAL_SIZES[name][split]
        subset[k] = None if whole else n
    subset["order"] = order
    if index is not None:
        subset["official_index"] = {s: index[s][:sizes[s]].tolist() for s in index}
    log.info("%s: kept %s (%s order)", TITLES[name], sizes, order)
    return sizes, subset


def _subset_text(subset: dict) -> str:
    """What meta["source"] says about the subset, e.g. 'the first 4000 train images and the whole test split ...'."""
    if subset["order"] == "official" and all(subset[k] is None for k in SUBSET_KEYS.values()):
        return "the whole official train and test splits"
    text = " and ".join(f"the whole {split} split" if subset[k] is None else f"the first {subset[k]} {split} images"
                        for split, k in SUBSET_KEYS.items())
    if subset["order"] == "official":
        return f"subset: {text}, in the official order (meta subset)"
    if "official_index" in subset:
        return (f"subset: {text} of the file, whose rows are NOT in the official order, so not the official first N "
                "(meta subset.official_index gives each kept row's official index)")
    return (f"subset: {text} of the file, in its own row order; it has no train_index/test_index, so whether "
            "these are the official first N is unknown")


def _official_npz(name: str, *, cfg, stage: Path, key: str):
    """CIFAR-10 or SVHN from an .npz file: ``x_train``, ``y_train``, ``x_test``, ``y_test`` (optional
    ``class_names``, ``train_index``, ``test_index``), every array checked; then the official subset is applied."""
    path = Path(cfg["path"])
    title = TITLES[name]
    if not path.is_file():
        raise DataError(f"config key '{key}.path': {path} is not a file; with {key}.source: npz it must be an .npz "
                        "holding x_train, y_train, x_test, y_test")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{title} npz {path} (config key '{key}.path') cannot be read as an .npz file: {e}") from e

    def bad(k: str, what: str) -> DataError:
        return DataError(f"{title} npz {path}: array '{k}' {what} (config key '{key}.path')")

    arrays, index = {}, {}
    for split in SUBSET_KEYS:
        xk, yk, ik = f"x_{split}", f"y_{split}", f"{split}_index"
        for k in (xk, yk):
            if k not in data:
                raise bad(k, f"is missing; the file holds {', '.join(sorted(data)) or 'no arrays'}")
        x, y = data[xk], data[yk]
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
            raise bad(xk, f"is {x.dtype} {list(x.shape)}; expected uint8 [N, 32, 32, 3] (images, channels last)")
        if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(x):
            raise bad(yk, f"is {y.dtype} {list(y.shape)}; expected integer labels of shape [{len(x)}] (one per "
                          f"image of {xk})")
        if len(y) and (y.min() < 0 or y.max() > 9):
            note = " (SVHN digit 0 is label 0 here: map the .mat files' 10 to 0)" if name == "svhn" else ""
            raise bad(yk, f"holds labels {y.min()}..{y.max()}; expected 0..9{note}")
        arrays[split] = (x, y.astype(np.int64))
        if ik in data:
            idx = data[ik]
            if idx.ndim != 1 or idx.dtype.kind not in "iu" or len(idx) != len(x):
                raise bad(ik, f"is {idx.dtype} {list(idx.shape)}; expected the official index of each row of {xk}, "
                              f"integers of shape [{len(x)}]")
            if len(idx) and (idx.min() < 0 or idx.max() >= OFFICIAL_SIZES[name][split]):
                raise bad(ik, f"holds indices {idx.min()}..{idx.max()}; the official {split} split has "
                              f"{OFFICIAL_SIZES[name][split]} images (0..{OFFICIAL_SIZES[name][split] - 1})")
            index[split] = idx.astype(np.int64)
    if "class_names" in data:
        names = data["class_names"]
        if names.ndim != 1 or len(names) != 10 or names.dtype.kind not in "US":
            raise bad("class_names", f"is {names.dtype} {list(names.shape)}; expected 10 strings")
        class_names = [c.decode() if isinstance(c, bytes) else str(c) for c in names.tolist()]
    else:
        class_names = list(CIFAR10_CLASSES) if name == "cifar10" else [str(i) for i in range(10)]
    # Rows are the official first N only when the file says so (index = 0..N-1 in order); else they keep the
    # file's order and the official indices the file gives are recorded.
    official = all(s in index and np.array_equal(index[s], np.arange(len(index[s]))) for s in SUBSET_KEYS)
    sizes, subset = _write_official_subset(name, arrays, cfg, stage, key, where=str(path),
                                           order="official" if official else "file",
                                           index=None if official or not index else index)
    found = ", ".join(k for k in ("train_index", "test_index") if k in data) or "no train_index/test_index"
    meta = dict(splits=sizes, image_shape=(32, 32, 3), n_classes=10, class_names=class_names,
                source=f"{title} npz file {path} ({found}; sha256 in provenance inputs); {_subset_text(subset)}",
                stand_in=None, subset=subset)
    return meta, {"npz": [path]}


def _import_lmdb():
    try:
        import lmdb
    except ImportError as e:
        raise DataError("reading LSUN needs the lmdb package: pip install lmdb==3.0.0 (pinned in "
                        "requirements.txt and envs/torch.yaml)") from e
    return lmdb


def _lsun(*, cfg, stage: Path, seed: int, workers: int, key: str, ledger: Path, offline: bool):
    """LSUN <category> train LMDB (Sec. 4.1): every image resized (short side) and centre-cropped to image_size.

    LSUN publishes no checksums and serves plain HTTP: the zip and the LMDB are recorded in ``ledger`` at first
    use and checked against it at every later use.
    """
    cat, size, cap = cfg["category"], int(cfg["image_size"]), int(cfg["max_images"])
    if cfg["source"] == "download":
        db, _ = fetch.lsun(Path(cfg["path"]), cat, key, ledger, download=not offline, url=LSUN_URL)
        how = f"official LSUN LMDB export {LSUN_URL.format(category=cat)}, unzipped to {db}"
    else:
        db = Path(cfg["path"])
        how = f"LSUN LMDB placed at {db}"
    if not (db / "data.mdb").is_file():
        raise DataError(f"config key '{key}.path': {db} holds no LMDB (no data.mdb in it); point it at the unzipped "
                        f"{cat}_train_lmdb folder of the official LSUN release")
    download.verify_first_seen(ledger, db / "data.mdb", how, key)
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
    meta = dict(splits={"train": stats["n"]}, image_shape=(size, size, 3), source=how, stand_in=stand_in,
                category=cat, lmdb_entries=entries, max_images=cap, skipped=stats["skipped"],
                skipped_examples=stats["skipped_examples"],
                preprocessing=f"short side resized to {size} (antialiased bilinear), centre crop {size}x{size}")
    return meta, {"lmdb": [db / "data.mdb"]}


def _imagenet(*, cfg, stage: Path, seed: int, workers: int, key: str, offline: bool):
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
    meta = dict(splits={"train": stats["n"]}, image_shape=(size, size, 3), n_classes=len(folder.classes),
                class_names=list(folder.classes), source=f"ImageFolder {root}", stand_in=None,
                files_found=len(folder.samples), max_images=cap, skipped=stats["skipped"],
                skipped_examples=stats["skipped_examples"],
                preprocessing=f"short side resized to {size} (antialiased bilinear), centre crop {size}x{size}"
                              + (f"; seeded random subset of {cap} files" if cap else ""))
    return meta, {}


def _faces(*, cfg, stage: Path, seed: int, workers: int, key: str, offline: bool):
    """Source images for the face stage (Sec. 4.2): CelebA via torchvision, or a folder of web images."""
    if cfg["source"] == "celeba":
        return _faces_celeba(cfg=cfg, stage=stage, key=key, offline=offline)
    return _faces_folder(cfg=cfg, stage=stage, workers=workers, key=key)


def _faces_celeba(*, cfg, stage: Path, key: str, offline: bool):
    from torchvision import datasets

    C = datasets.CelebA
    root = Path(cfg["path"])
    base = root / C.base_folder
    fetch.celeba(root, key, download=not offline)  # every listed file md5-checked (fetched first unless offline)
    ds = C(str(root), split="all", target_type=[], download=False)
    names = list(ds.filename)
    cap = int(cfg["max_images"])
    names = names[:cap] if cap else names
    img_dir = base / "img_align_celeba"
    n = _link_files(((img_dir / f, f"images/{f}") for f in names), stage, cfg["link"])
    meta = dict(splits={}, image_shape=None, n_images=n, manifest="manifest.txt",
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
    meta = dict(splits={}, image_shape=None, n_images=n, manifest="manifest.txt",
                source=f"image folder {root} (searched recursively, every file decoded once), {cfg['link']}ed",
                link=cfg["link"], files_found=len(files), max_images=cap, skipped=dict(skipped),
                skipped_examples=examples, other_files_by_extension=dict(sorted(other.items())),
                stand_in=f"web images from {root} standing in for the paper's unreleased 3M web images of 10K "
                         "people")
    return meta, {}


def _check_image_file(path: Path) -> str | None:
    """None when ``path`` decodes fully, else the reason (:data:`dcgan_repro.images.SKIP_REASONS`)."""
    img, reason = images.decode_image(path, pillow_only=True)
    return None if img is not None else reason


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
