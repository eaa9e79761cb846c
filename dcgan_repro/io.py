"""On-disk formats, atomic writes and provenance records.

Every file the pipeline produces is written to a temporary sibling and renamed into place, so a killed job
never leaves a half-written file that looks complete. Every result JSON carries a ``provenance`` block
(config, seed, code version, input checksums, wall time) built by :func:`provenance`.

Image datasets use one training format for every source: ``<dir>/<split>_x.npy`` (uint8, N x H x W x C,
readable as a memory map so training never waits on JPEG decoding), ``<dir>/<split>_y.npy`` (int64 labels,
-1 where a dataset has none) and ``<dir>/meta.json`` (what it is, where it came from, whether it is a
stand-in for the paper's data).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npy(path: PathLike, array: np.ndarray) -> None:
    """Save one array as .npy, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)


def open_npy_writer(path: PathLike, shape: tuple[int, ...], dtype) -> tuple[np.memmap, Path]:
    """Create a memory-mapped .npy at a temporary path for streaming writes.

    Returns ``(array, tmp_path)``; call :func:`commit_npy` when every row is written. Used for outputs too
    big for memory (ingested datasets, 50,000 x 28,672 feature matrices).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.npy")
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
    return arr, tmp


def commit_npy(array: np.memmap, tmp: Path, path: PathLike) -> None:
    """Flush a memmap opened by :func:`open_npy_writer` and rename it into place."""
    array.flush()
    del array
    os.replace(tmp, path)


def load_npy(path: PathLike, mmap: bool = True) -> np.ndarray:
    """Load a .npy (memory-mapped by default); a missing file raises an error naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"expected array file {path} does not exist")
    return np.load(path, mmap_mode="r" if mmap else None)


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def checksum(path: PathLike, full_limit: int = 256 << 20) -> str:
    """sha256 of a file, or for files larger than ``full_limit`` of (size, first and last 16 MiB).

    Large inputs (datasets, feature matrices) get the cheap sampled form, marked ``sampled-sha256:``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size <= full_limit:
        return "sha256:" + sha256_file(path)
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(16 << 20))
        f.seek(size - (16 << 20))
        h.update(f.read(16 << 20))
    return "sampled-sha256:" + h.hexdigest()


def code_version() -> str:
    """The git commit of the code (with '+dirty' when the work tree differs), or 'unknown'."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(*, config: Any, seed: int | None, inputs: dict[str, Any] | list | None = None,
               started: float | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record every result file carries: what produced it and from what.

    ``inputs`` maps names to paths (or lists of paths); each file, and each file directly inside a folder, is
    checksummed. ``started`` is a
    ``time.time()`` taken when the work began; the wall time is measured up to this call.
    """
    sums: dict[str, Any] = {}
    if isinstance(inputs, (list, tuple)):
        inputs = {str(i): p for i, p in enumerate(inputs)}
    for name, p in (inputs or {}).items():
        paths = p if isinstance(p, (list, tuple)) else [p]
        files = []
        for q in map(Path, paths):
            files += sorted(f for f in q.iterdir() if f.is_file()) if q.is_dir() else [q] if q.is_file() else []
        sums[name] = {str(f): checksum(f) for f in files}

    rec = {
        "code_version": code_version(),
        "seed": seed,
        "config": config,
        "inputs": sums,
        "wall_time_s": None if started is None else round(time.time() - started, 3),
        "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "python": platform.python_version(),
        **_torch_info(),
    }
    if extra:
        rec.update(extra)
    return rec


def _torch_info() -> dict[str, Any]:
    """torch version and device, when torch is already loaded (rules that never import torch stay light)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return {}
    gpu = torch.cuda.is_available()
    return {"torch": str(torch.__version__), "device": ("cuda:" + torch.cuda.get_device_name(0)) if gpu else "cpu"}


def shard_range(n: int, shard: int, shards: int, setting: str = "shards") -> tuple[int, int]:
    """[start, stop) of shard ``shard`` of ``shards`` over ``n`` items, contiguous, sized as ``np.array_split``
    cuts them. Used by every scatter/gather stage (dedup hashing, face detection); ``setting`` names the config
    key in errors."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not in 0..{shards - 1} ({setting} = {shards})")
    q, r = divmod(n, shards)
    start = shard * q + min(shard, r)
    return start, start + q + (1 if shard < r else 0)


# --- image datasets in the common training format -------------------------------------------------


def dataset_paths(directory: PathLike, split: str) -> tuple[Path, Path]:
    d = Path(directory)
    return d / f"{split}_x.npy", d / f"{split}_y.npy"


def write_dataset(directory: PathLike, split: str, x: np.ndarray, y: np.ndarray | None = None) -> None:
    """Write one split (uint8 N x H x W x C images, int64 labels) atomically."""
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"images must be uint8 N x H x W x C, got {x.dtype} {x.shape}")
    if y is None:
        y = np.full(len(x), -1, dtype=np.int64)
    if len(y) != len(x):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    xp, yp = dataset_paths(directory, split)
    save_npy(xp, np.ascontiguousarray(x))
    save_npy(yp, np.asarray(y, dtype=np.int64))


def read_dataset(directory: PathLike, split: str, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read one split written by :func:`write_dataset` (images memory-mapped by default)."""
    xp, yp = dataset_paths(directory, split)
    return load_npy(xp, mmap=mmap), load_npy(yp, mmap=False)


def read_meta(directory: PathLike) -> dict[str, Any]:
    p = Path(directory) / "meta.json"
    return read_json(p) if p.exists() else {}


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if hasattr(o, "items"):
        return dict(o.items())
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
