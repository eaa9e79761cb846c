"""Verify a copy of the authors' released weights against their git blob ids before anything is loaded.

The DCGAN authors released two trained models in the ``models/`` folder of https://github.com/Newmu/dcgan_code
(commit ee12b2d): SVHN (our ``svhn32``, epoch 200) and ImageNet-1k at 32x32 (``imagenet32``, epoch 30), each net a
joblib list pickle (``*_gen_params.jl``, ``*_discrim_params.jl``) with one ``.npy`` file per array, read by
:mod:`dcgan_repro.theano_weights`. ``released_blobs.tsv`` beside this module lists every file of both models with
its git blob id (sha1 of ``b"blob <size>\\0" + content``, what ``git hash-object`` prints), so :func:`verify` checks
a user's copy without any download: a file that differs is always an error; missing files are an error unless a
partial release is allowed explicitly, which only D can use (its leading conv layers whose arrays are all present).

The table is read once, by :func:`_table` (``{model: {file name: blob id}}``). A test that verifies a release of
its own (say one written by :func:`~dcgan_repro.theano_weights.write_theano_params`) substitutes it, hashing the
files first (a lambda that hashed them on each call would see later changes)::

    blobs = {p.name: released.git_blob_id(p) for p in written}
    monkeypatch.setattr(released, "_table", lambda: {"svhn32": blobs})
"""

from __future__ import annotations

import csv
import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dcgan_repro import io, models, theano_weights
from dcgan_repro.theano_weights import RELEASED_FILES, RELEASED_RUNS, _complete_prefix, list_array_files, theano_slots

log = logging.getLogger(__name__)

REPOSITORY = "https://github.com/Newmu/dcgan_code"
COMMIT = "ee12b2d15a3856794b8dae77d1eb263c67c36e47"
# Our model name -> the released folder under models/ of the repository.
FOLDERS: dict[str, str] = {
    "svhn32": "svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb",
    "imagenet32": "imagenet_gan_pretrain_128f_relu_lrelu_7l_3x3_256z",
}
EPOCHS: dict[str, int] = {"svhn32": 200, "imagenet32": 30}  # the epoch in the released file names
BLOBS_PATH = Path(__file__).with_name("released_blobs.tsv")
NETS = ("D", "G")
_CHUNK = 1 << 20


class ReleaseError(ValueError):
    """A copy of the authors' release that is not where it was said to be, differs from the release, or lacks
    files it needs."""


def git_blob_id(path: io.PathLike) -> str:
    """The git blob id of a file (what ``git hash-object FILE`` prints), read in 1 MiB chunks."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        h = hashlib.sha1(b"blob %d\0" % size)
        n = 0
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            n += len(chunk)
    if n != size:
        raise ReleaseError(f"{path} changed while it was read ({size} bytes before, {n} read); verify it again")
    return h.hexdigest()


@functools.cache
def _table() -> dict[str, dict[str, str]]:
    """``{model: {file name: blob id}}`` from :data:`BLOBS_PATH` (read once; tests monkeypatch this function)."""
    model_of = {folder: model for model, folder in FOLDERS.items()}
    table: dict[str, dict[str, str]] = {model: {} for model in FOLDERS}
    lines = [line for line in BLOBS_PATH.read_text().splitlines() if line and not line.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        table[model_of[row["folder"]]][row["file"]] = row["git_blob_sha1"]
    return table


def _check_model(model: str) -> None:
    if model not in FOLDERS:
        raise ReleaseError(f"model {model!r} has no released weights; allowed: {', '.join(FOLDERS)}")


def release_blobs(model: str) -> dict[str, str]:
    """File name -> expected git blob id, for every released file (both nets) of ``model``."""
    _check_model(model)
    table = _table()
    if model not in table:
        raise ReleaseError(f"the blob table holds no files of model {model!r} (it has {', '.join(table)})")
    return dict(table[model])


def _net_files(model: str, net: str) -> dict[str, str]:
    """File name -> blob id of net ``net`` of ``model``: its ``.jl`` list pickle and the ``.npy`` arrays."""
    jl = RELEASED_FILES[model][net]
    return {name: blob for name, blob in release_blobs(model).items()
            if name == jl or (name.startswith(jl + "_") and name.endswith(".npy"))}


def model_folder(path: io.PathLike, model: str) -> Path:
    """The released folder of ``model`` (resolved), given a clone of the repository (``path/models/<folder>``), its
    ``models/`` folder (``path/<folder>``), the model folder itself (named ``<folder>`` or holding one of the model's
    ``.jl`` files), or one of those ``.jl`` files."""
    _check_model(model)
    p, folder = Path(path), FOLDERS[model]
    jls = sorted(RELEASED_FILES[model].values())
    for candidate in (p / "models" / folder, p / folder):
        if candidate.is_dir():
            return candidate.resolve()
    if p.is_dir() and (p.name == folder or any((p / jl).is_file() for jl in jls)):
        return p.resolve()
    if p.is_file() and p.name in jls:
        return p.parent.resolve()
    what = "does not exist" if not p.exists() else "is not the authors' released model in any accepted layout"
    raise ReleaseError(f"{model} weights: {p} {what}. Accepted: a clone of {REPOSITORY} (<clone>/models/{folder}), "
                       f"its models/ folder (<models>/{folder}), the model folder itself (holding "
                       f"{' and '.join(jls)}), or one of those .jl files")


def _d_convs(model: str, jl_path: Path | None) -> tuple[int, int]:
    """(D's conv layers, how many leading ones have all their arrays present beside ``jl_path``; 0 without it)."""
    with torch.random.fork_rng(devices=[]):  # the throw-away init must not shift the caller's RNG stream
        _, netD = models.build_models(RELEASED_RUNS[model])
    slots = theano_slots(netD)
    if jl_path is None:
        return len(netD.convs), 0
    present = [p if p.is_file() else None for p in list_array_files(jl_path)]
    if len(present) != len(slots):
        raise ReleaseError(f"{jl_path} lists {len(present)} arrays; {model}'s D has {len(slots)}")
    return len(netD.convs), _complete_prefix(slots, present)


def verify(path: io.PathLike, model: str, net: str, *, allow_partial: bool = False, key: str | None = None
           ) -> dict[str, Any]:
    """Check every file of net ``net`` ("D" or "G") of the released ``model`` under ``path`` (any layout of
    :func:`model_folder`) against its git blob id, before anything is loaded; return a JSON-able manifest.

    A file that differs is always a :class:`ReleaseError`. Missing files are one too, unless ``allow_partial``
    and ``net`` is "D" with at least its first conv layer complete: then only D's leading conv layers whose arrays
    are all present can be used (``convs_loaded`` of ``convs_total``). ``key``: the config key of this model's
    folder (default ``weights.<model>``); messages name it and the list ``allow_partial`` beside it.
    """
    key = key or f"weights.{model}"
    section, name = key.rsplit(".", 1) if "." in key else ("weights", key)
    if net not in NETS:
        raise ReleaseError(f"net {net!r}: expected one of {', '.join(NETS)}")
    folder = model_folder(path, model)
    jl, released = RELEASED_FILES[model][net], f"models/{FOLDERS[model]}"
    expected = _net_files(model, net)
    found = {name: git_blob_id(folder / name) for name in sorted(expected) if (folder / name).is_file()}
    missing = [name for name in sorted(expected) if name not in found]
    changed = [name for name in found if found[name] != expected[name]]
    if changed:
        clone = folder.parent.parent if folder.parent.name == "models" else "<clone>"
        also = f" ({len(missing)} more are missing: {', '.join(missing)})" if missing else ""
        raise ReleaseError(
            f"{folder} is not the authors' release of {model} ({REPOSITORY} at {COMMIT[:7]}, {released}): "
            + "; ".join(f"{name} has git blob {found[name]}, expected {expected[name]}" for name in changed)
            + f"{also}. Restore the file(s) from the authors' repository: git -C {clone} checkout {COMMIT[:7]} -- "
            + " ".join(f"{released}/{name}" for name in changed) + f", or clone it again (git clone {REPOSITORY})")
    convs_total = convs_loaded = None
    if net == "D":
        convs_total, convs_loaded = _d_convs(model, None if jl in missing else folder / jl)
    if missing:
        lacks = f"{folder} lacks {len(missing)} of the {len(expected)} files of {model}'s {net}: {', '.join(missing)}"
        clone = f"clone the complete release (git clone {REPOSITORY}; the files are plain git objects, in {released})"
        if net == "G":
            even = f" (not even with {name} in {section}.allow_partial)" if allow_partial else ""
            raise ReleaseError(f"{lacks}. A partial G is never usable{even}: {clone}")
        if not convs_loaded:
            raise ReleaseError(f"{lacks}. Not even D's first conv layer is complete, so no part of D is usable: "
                               f"{clone}")
        if not allow_partial:
            raise ReleaseError(f"{lacks}. Either {clone}, or allow a partial release explicitly: add {name} to "
                               f"{section}.allow_partial (features then come only from D's first {convs_loaded} of "
                               f"{convs_total} conv layers, whose arrays are all present)")
        log.warning("%s; using D's first %d of %d conv layers (%s.allow_partial)", lacks, convs_loaded, convs_total,
                    section)
    log.info("verified %d files of %s's %s in %s against %s at %s", len(found), model, net, folder, REPOSITORY,
             COMMIT[:7])
    return {"repository": REPOSITORY, "commit": COMMIT, "model": model, "net": net, "epoch": EPOCHS[model],
            "folder": str(folder), "jl": jl, "complete": not missing, "files_verified": len(found),
            "missing": missing, "convs_total": convs_total, "convs_loaded": convs_loaded, "verified_blobs": found}


def load_discriminator(path: io.PathLike, model: str, *, allow_partial: bool = False, key: str | None = None
                       ) -> tuple[nn.Module, dict[str, Any]]:
    """The authors' D of ``model`` in our net, after :func:`verify`: the whole D, or from a partial release (only
    with ``allow_partial``) its first complete conv layers (:class:`~dcgan_repro.theano_weights.DiscriminatorPrefix`).
    Returns (net on the CPU in eval mode, manifest)."""
    manifest = verify(path, model, "D", allow_partial=allow_partial, key=key)
    n_convs = None if manifest["complete"] else manifest["convs_loaded"]
    jl = Path(manifest["folder"]) / manifest["jl"]
    return theano_weights.load_discriminator(jl, model, n_convs=n_convs), manifest


def load_generator(path: io.PathLike, model: str, *, key: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The authors' G of ``model`` in our net, after :func:`verify` (a G must be complete). Returns (net, manifest)."""
    manifest = verify(path, model, "G", key=key)
    return theano_weights.load_generator(Path(manifest["folder"]) / manifest["jl"], model), manifest
