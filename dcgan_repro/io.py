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
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

PathLike = str | os.PathLike


class DatasetError(RuntimeError):
    """An ingested dataset folder is damaged or disagrees with its meta.json; the message names the file and fix."""


def umask() -> int:
    """The process umask, read without changing it (Linux ``/proc``; elsewhere set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def durable_replace(src: PathLike, dst: PathLike) -> None:
    """Rename the finished file ``src`` onto ``dst`` so that a crash leaves the old or the new file, never a torn one.

    The file gets the mode a plain ``open()`` would have given it (0666 less the umask: temporary files are
    created 0600), its data is flushed to disk (fsync) before the rename, and the folder after it, so the rename
    cannot reach the disk before the data it points at.
    """
    src, dst = Path(src), Path(dst)
    os.chmod(src, 0o666 & ~umask())
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(src, dst)
    fsync_dir(dst.parent)


def fsync_dir(path: PathLike) -> None:
    """fsync a folder (makes a rename or a new entry in it durable); a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` (:func:`durable_replace`) only if the block
    succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        durable_replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def staged_folder(out_dir: PathLike, *, error: type[Exception] = FileExistsError, hint: str = "") -> Iterator[Path]:
    """Yield an empty folder ``.<name>.partial`` beside ``out_dir``; it replaces ``out_dir`` only if the block
    succeeds, so a failed or killed job never leaves a folder that looks finished.

    On success the old ``out_dir`` is removed, the new one renamed in and the parent fsync'd (the files in it were
    written through this module, so fsync'd already); on failure the partial folder is removed, and one left by a
    killed run is removed before the block starts. A non-empty ``out_dir`` without meta.json is not a dataset
    folder we wrote: it is never replaced; ``error`` is raised instead, its message ending with ``hint``.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not is_dataset_folder(out):
        raise error(f"output folder {out} exists and is not an ingested dataset (no meta.json); refusing to "
                    f"replace it: move it away{hint}")
    stage = out.with_name(f".{out.name}.partial")
    if stage.exists():  # left by a killed run
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    done = False
    try:
        yield stage
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
        fsync_dir(out.parent)
        done = True
    finally:
        if not done:
            shutil.rmtree(stage, ignore_errors=True)


def is_dataset_folder(folder: PathLike) -> bool:
    """Whether ``folder`` holds a meta.json as this workflow writes it (docs/CONTRACTS.md, "Datasets"): the one test
    of "a folder the workflow made", used before replacing one and by config validation."""
    try:
        meta = read_json(Path(folder) / "meta.json")
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and ("provenance" in meta or {"name", "splits", "source", "stand_in"} <= set(meta))


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
    durable_replace(tmp, path)


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


def checksum(path: PathLike) -> str:
    """``sha256:<hex>`` of a whole file, however large (about 1.3 GB/s on one core: 33 s for LSUN's 43 GB LMDB).

    Remembered per process by (path, inode, size, mtime), so a job that records the same input twice reads it once.
    """
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _CHECKSUMS:
        _CHECKSUMS[key] = "sha256:" + sha256_file(path)
    return _CHECKSUMS[key]


_CHECKSUMS: dict[tuple, str] = {}


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


# The settings in force that differ from config.yaml (flat dotted keys -> value), added to every provenance record
# of this process as "overrides"; set once per job by runtime.rule_context, None outside the workflow.
PROVENANCE_OVERRIDES: dict[str, Any] | None = None


def provenance(*, config: Any, seed: int | None, inputs: dict[str, Any] | list | None = None,
               started: float | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record every result file carries: what produced it and from what.

    ``inputs`` maps names to paths (or lists of paths); each file, and each file directly inside a folder, is
    checksummed. ``started`` is a
    ``time.time()`` taken when the work began; the wall time is measured up to this call. Inside a workflow job
    the record also holds ``overrides``: every setting in force that differs from config.yaml
    (:data:`PROVENANCE_OVERRIDES`, e.g. ``{"preset": "mnist_cpu", "runs.mnist_dcgan.epochs": 80}``).
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
        **({} if PROVENANCE_OVERRIDES is None else {"overrides": dict(PROVENANCE_OVERRIDES)}),
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
    """Read one split written by :func:`write_dataset` (images memory-mapped by default), checked first
    (:func:`check_dataset`) so a damaged file fails with its name and the fix, not deep inside numpy."""
    check_dataset(directory, [split])
    xp, yp = dataset_paths(directory, split)
    return load_npy(xp, mmap=mmap), load_npy(yp, mmap=False)


def npy_header(path: PathLike) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, data offset) from a .npy header, reading only the header."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f".npy format version {version} is not supported")
        shape, _, dtype = read(f)
        return tuple(shape), dtype, f.tell()


def check_dataset(directory: PathLike, splits: list[str] | None = None) -> None:
    """Check the arrays of an ingested dataset against its headers and meta.json (a few hundred bytes read per
    file). Raises :class:`DatasetError` naming the file, what is wrong and how to rebuild the folder.

    ``splits`` defaults to every split meta.json lists. Without meta.json only the files themselves are checked.
    """
    d = Path(directory)
    meta = read_meta(d)
    splits = list(meta.get("splits", {})) if splits is None else splits
    fix = (f"Delete the folder {d} and run the workflow again: it is rebuilt from its source (nothing outside it "
           "is touched)")
    for split in splits:
        want_n = meta.get("splits", {}).get(split)
        want_shape = meta.get("image_shape")
        for p, dims in zip(dataset_paths(d, split), (want_shape, [])):
            if not p.is_file():
                raise DatasetError(f"ingested dataset {d} is incomplete: {p.name} is missing. {fix}")
            try:
                shape, dtype, offset = npy_header(p)
            except (OSError, ValueError) as e:
                raise DatasetError(f"ingested dataset {d} is damaged: {p} has no readable .npy header ({e}). "
                                   f"{fix}") from None
            need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            size = p.stat().st_size
            if size != need:
                raise DatasetError(f"ingested dataset {d} is damaged: {p} is {size:,} bytes, but its header "
                                   f"({' x '.join(map(str, shape))} {dtype}) needs {need:,}. {fix}")
            if (want_n is not None and shape[0] != want_n) or (dims is not None and list(shape[1:]) != list(dims)):
                raise DatasetError(f"ingested dataset {d} disagrees with its meta.json: {p} holds shape "
                                   f"{list(shape)}, meta.json says {want_n} items"
                                   + (f" of {list(dims)}" if dims else "") + f". {fix}")


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
