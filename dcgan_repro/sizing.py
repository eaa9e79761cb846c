"""Memory requests of workflow jobs from the sizes of their inputs (the ``mem_mb`` of rules' ``resources:``).

Snakemake evaluates a rule's resource functions again just before it starts or submits a job, when every input is
in place, so a request follows the data actually there. Before that (``snakemake -n``, or while the upstream jobs
have not run) the inputs do not exist yet, and a request follows the sizes the config implies
(:func:`expected_train_mb`). Only the standard library is imported: Snakemake reads this module whenever it parses
the workflow.

Why a request grows with the data: the training arrays are memory-mapped (``io.read_dataset``), and the pages
a job reads count against its memory limit under SLURM (cgroups count the page cache). LSUN's 3M images at 64x64
are a 37 GB array; a request of the array plus the job's own working memory lets every epoch after the first read
it from memory. A smaller limit still works (clean cached pages are dropped before a job is killed) at the cost of
reading the array from disk every epoch.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

MB = 1 << 20  # Snakemake's mem_mb goes to SLURM's --mem, which counts MiB
# Images in each dataset folder's train split at paper scale (0 max_images / train_images = all of them): the
# official split sizes; LSUN bedrooms and CelebA photos before dedup and face detection (upper bounds).
FULL_TRAIN_IMAGES = {"mnist": 60_000, "cifar10": 50_000, "svhn": 73_257, "lsun_raw": 3_033_042, "lsun": 3_033_042,
                     "imagenet": 1_281_167, "faces": 202_599}


def files_mb(paths: Iterable[str | os.PathLike], pattern: str = "*.npy") -> int | None:
    """Total size in MiB of ``paths`` (files, or the ``pattern`` files directly in a folder); None when none of them
    exists yet (the job's inputs are still to be made)."""
    total, found = 0, False
    for p in map(Path, paths):
        for f in (sorted(p.glob(pattern)) if p.is_dir() else [p]):
            if f.is_file():
                total += f.stat().st_size
                found = True
    return math.ceil(total / MB) if found else None


def request_mb(working_mb: int, data_mb: float) -> int:
    """``working_mb`` plus ``data_mb``, rounded up to a whole GB (1000 MiB steps keep requests readable)."""
    return int(math.ceil((working_mb + data_mb) / 1000.0) * 1000)


def expected_train_mb(config: Mapping[str, Any], folder: str) -> int:
    """Size in MiB of ``<data.root>/<folder>/train_x.npy`` as the config implies it: images x H x W x C bytes."""
    data = config["data"]
    key = {"lsun_raw": "lsun", "faces_raw": "faces"}.get(folder, folder)
    cfg = data.get(key, {})
    n = FULL_TRAIN_IMAGES.get(folder, 0)
    cap = cfg.get("max_images") or cfg.get("train_images") or 0
    n = min(n, cap) if cap else n
    if cfg.get("source") == "demo":
        n = min(n, 2_000)  # the stand-ins hold a few thousand images at most
    if folder in ("mnist",):
        side, channels = 28, 1
    elif folder in ("cifar10", "svhn"):
        side, channels = 32, 3
    elif folder == "faces":
        side, channels = int(config["faces"]["image_size"]), 3
    else:
        side, channels = int(cfg.get("image_size", 64)), 3
    return math.ceil(n * side * side * channels / MB)


def train_mem_mb(config: Mapping[str, Any], data_dir: str | os.PathLike, working_mb: int = 6000) -> int:
    """A job that reads the whole train split of ``data_dir`` through a memory map (training, dedup): its working
    memory plus the array (measured when it exists, else :func:`expected_train_mb`)."""
    have = files_mb([Path(data_dir) / "train_x.npy"])
    return request_mb(working_mb, have if have is not None else expected_train_mb(config, Path(data_dir).name))
