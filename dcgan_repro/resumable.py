"""Resumable training checkpoints: nets, optimisers, the z generator, every RNG and the loop state, written
atomically as ``<checkpoint_dir>/step<NNNNNNNNN>.pt`` and loaded back so a stopped run continues bit for bit.

:func:`load_newest` resumes from the newest checkpoint that loads: one that does not (cut short by a crash or a full
disk) is renamed ``.corrupt`` with a warning and the next older one is tried; a folder written under other
trajectory-deciding settings (:func:`fingerprint_of`) is moved aside to ``<dir>.stale-<hash>``, never resumed nor
overwritten. :func:`save` prunes older ones only after the new one is in place. Used by :mod:`dcgan_repro.train`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import io, models

log = logging.getLogger("dcgan_repro.train")

# Settings that may change between a stop and a resume without changing the trajectory (snapshot_epochs is
# derived from snapshot_every: which generators are kept, not how they are trained).
RESUME_FREE_KEYS = frozenset({"max_steps", "checkpoint_every", "checkpoint_minutes", "sample_every", "log_every",
                              "snapshot_every", "snapshot_epochs"})
KEEP = 2          # newest resumable checkpoints kept on disk


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "python": random.getstate()}


def set_rng_state(s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    v, internal, gauss = s["python"]
    random.setstate((v, tuple(internal), gauss))


_CHECKPOINT_NAME = re.compile(r"step(\d{9,})\.pt")     # not .step*.tmp.pt (atomic writes) nor *.pt.corrupt*
_CHECKPOINT_KEYS = ("netG", "netD", "optG", "optD", "zgen", "rng", "state", "fingerprint")


def files(d: Path) -> list[Path]:
    """Resumable checkpoints in ``d`` (exactly ``step<digits>.pt``), newest (highest step) first."""
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _CHECKPOINT_NAME.fullmatch(p.name))]
    return [p for _, p in sorted(found, key=lambda sp: sp[0], reverse=True)]


def fingerprint_of(run: dict[str, Any], x: np.ndarray) -> dict[str, Any]:
    """What a checkpoint must agree on to be resumed: the trajectory-deciding config and the data's shape."""
    return {"run": {k: v for k, v in sorted(run.items()) if k not in RESUME_FREE_KEYS},
            "data_shape": list(x.shape)}


def save(d: Path, netG, netD, optG, optD, zgen: torch.Generator, state: Any,
                    fingerprint: dict[str, Any]) -> None:
    obj = {"netG": models.cpu_state(netG), "netD": models.cpu_state(netD), "optG": optG.state_dict(),
           "optD": optD.state_dict(), "zgen": zgen.get_state(), "rng": rng_state(),
           "state": {"step": state.step, "snapshots": dict(state.snapshots), "low_d_steps": state.low_d_steps,
                     "train_time_s": state.train_time_s},
           "fingerprint": fingerprint}
    with io.atomic_path(d / f"step{state.step:09d}.pt") as tmp:
        torch.save(obj, tmp)
    # only now that the new file is in place (a failed save raises above and prunes nothing): the older kept one
    # is still there should the new one turn out unreadable on the next start
    for old in files(d)[KEEP:]:
        old.unlink()


def read(path: Path) -> dict[str, Any]:
    """A resumable checkpoint's contents; raises on anything that is not one (truncated, empty, garbage, ...)."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(ck, dict):
        raise ValueError(f"holds a {type(ck).__name__}, not a checkpoint dict")
    missing = [k for k in _CHECKPOINT_KEYS if k not in ck]
    if missing:
        raise ValueError(f"missing keys {missing}")
    fp = ck["fingerprint"]
    if not (isinstance(fp, dict) and isinstance(fp.get("run"), dict) and "data_shape" in fp):
        raise ValueError("malformed fingerprint")
    return ck


def move_aside(path: Path) -> Path:
    """Rename a checkpoint that does not load to ``<name>.corrupt`` (``.corrupt.1``, ... if taken): it no longer
    matches ``files``, so it is never resumed nor pruned, and never overwrites an earlier one."""
    dest, n = path.with_name(f"{path.name}.corrupt"), 0
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.corrupt.{n}")
    path.rename(dest)
    return dest


def error_text(e: BaseException) -> str:
    """``Type: first sentence`` of an error (torch's load errors go on for lines, with advice that does not apply
    here, e.g. to load with ``weights_only=False``)."""
    text = str(e).strip().split("\n", 1)[0]
    text = text.split(". ", 1)[0].rstrip(".")
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def load_newest(d: Path, name: str, netG, netD, optG, optD, zgen: torch.Generator, state: Any,
            fingerprint: dict[str, Any]) -> None:
    """Load the newest checkpoint in ``d`` that loads into the nets/optimisers/RNGs/state, if there is one.

    A checkpoint that fails to load or apply (truncated, empty, garbage, wrong structure) is renamed to
    ``<name>.corrupt`` with a warning and the next older one is tried; if none loads, nothing is changed (the
    run starts from step 0, exactly as a fresh one). Checkpoints made under a different config (or data) are
    moved aside to ``<d>.stale-<hash>``, never silently resumed nor overwritten.
    """
    moved: list[Path] = []
    initial = None
    for path in files(d):
        stale = False
        try:
            ck = read(path)
            stale = ck["fingerprint"] != fingerprint
            if not stale:
                if initial is None:   # what a failed half-way apply is rolled back to
                    initial = training_state(netG, netD, optG, optD, zgen)
                apply(ck, netG, netD, optG, optD, zgen, state)
        except MemoryError:
            raise
        except Exception as e:   # noqa: BLE001 - any failure to load means: not resumable, try the older one
            if initial is not None:
                restore_training_state(initial, netG, netD, optG, optD, zgen)
            size = path.stat().st_size
            dest = move_aside(path)
            moved.append(dest)
            log.warning("run %s: checkpoint %s (%d bytes) cannot be resumed (%s); moved it to %s and trying the "
                        "next older checkpoint", name, path, size, error_text(e), dest)
            continue
        if stale:   # the newest checkpoint that loads was made with other settings: the whole folder goes
            move_stale(d, name, ck["fingerprint"], fingerprint)
            return
        log.info("run %s: resumed from %s (step %d)", name, path, state.step)
        return
    if moved:
        log.warning("run %s: no checkpoint in %s could be resumed (moved aside: %s); starting from step 0",
                    name, d, ", ".join(map(str, moved)))


def training_state(netG, netD, optG, optD, zgen: torch.Generator) -> dict[str, Any]:
    return {"netG": {k: v.detach().clone() for k, v in netG.state_dict().items()},
            "netD": {k: v.detach().clone() for k, v in netD.state_dict().items()},
            "optG": copy.deepcopy(optG.state_dict()), "optD": copy.deepcopy(optD.state_dict()),
            "zgen": zgen.get_state(), "rng": rng_state()}


def restore_training_state(s: dict[str, Any], netG, netD, optG, optD, zgen: torch.Generator) -> None:
    netG.load_state_dict(s["netG"])
    netD.load_state_dict(s["netD"])
    optG.load_state_dict(copy.deepcopy(s["optG"]))
    optD.load_state_dict(copy.deepcopy(s["optD"]))
    zgen.set_state(s["zgen"])
    set_rng_state(s["rng"])


def apply(ck: dict[str, Any], netG, netD, optG, optD, zgen: torch.Generator, state: Any) -> None:
    s = ck["state"]
    step, low_d_steps, train_time_s = int(s["step"]), int(s["low_d_steps"]), float(s["train_time_s"])
    snapshots = {int(k): v for k, v in s["snapshots"].items()}
    netG.load_state_dict(ck["netG"])
    netD.load_state_dict(ck["netD"])
    optG.load_state_dict(ck["optG"])
    optD.load_state_dict(ck["optD"])
    zgen.set_state(ck["zgen"])
    set_rng_state(ck["rng"])
    state.step, state.low_d_steps, state.train_time_s, state.snapshots = step, low_d_steps, train_time_s, snapshots
    state.resumed_from = step


def move_stale(d: Path, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    """Move the checkpoint folder ``d`` (made with fingerprint ``old``) aside to ``<d>.stale-<hash>``."""
    diff = {k: (old["run"].get(k), new["run"].get(k)) for k in old["run"].keys() | new["run"].keys()
            if old["run"].get(k) != new["run"].get(k)}
    if old["data_shape"] != new["data_shape"]:
        diff["data_shape"] = (old["data_shape"], new["data_shape"])
    tag = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:10]
    stale = d.with_name(f"{d.name}.stale-{tag}")
    log.warning("run %s: checkpoints in %s were made with different settings (checkpoint, now): %s; moving "
                "them to %s and starting from step 0", name, d, diff, stale)
    if stale.exists():
        shutil.rmtree(stale)
    d.rename(stale)
