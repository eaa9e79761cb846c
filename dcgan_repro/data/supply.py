"""What a user must supply or fetch by hand, found when the workflow is parsed (``snakemake -n`` included).

The workflow downloads MNIST, CIFAR-10, SVHN, LSUN and CelebA itself (rule ``data_download``,
:mod:`dcgan_repro.data.fetch`). What it cannot fetch is a **missing supply**: ImageNet-1k (it needs an account),
any ``data.<name>.path`` of a user-supplied source (``path``, ``folder``, ``npz``) that does not exist, and CelebA
when its files are absent and ``gdown`` (torchvision's Google Drive client) is not installed.
:func:`missing_supplies` lists them; workflow/rules/common.smk prints :func:`notice` on stderr and leaves the
targets that need them out of rule ``all``, so every other table and figure still builds.

The exact files, checksums and layouts are facts of the datasets, written here so that the parse stays fast (no
torch or torchvision import); tests/test_paper_scale.py checks them against torchvision's own lists.
"""

from __future__ import annotations

import importlib.util
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

# torchvision.datasets.CelebA.file_list: (file name, md5), in <data.faces.path>/celeba/. img_align_celeba.zip may
# be unzipped instead, to <data.faces.path>/celeba/img_align_celeba/ (202,599 JPEG files 000001.jpg ...).
CELEBA_FILES = (
    ("img_align_celeba.zip", "00d2c5bc6d35e252742224ab0c1e8fcb"),
    ("list_attr_celeba.txt", "75e246fa4810816ffd6ee81facbd244c"),
    ("identity_CelebA.txt", "32bd1bd63d3c78cd57e08160ec5ed1e2"),
    ("list_bbox_celeba.txt", "00566efa6fedff7a56946cd1c10f1c16"),
    ("list_landmarks_align_celeba.txt", "cc24ecafdb5b50baae59b03474781f8c"),
    ("list_eval_partition.txt", "d32c9cbf5e040fd4025c592c306e6668"),
)
CELEBA_FOLDER = "celeba"  # torchvision.datasets.CelebA.base_folder
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
# torchvision.datasets.imagenet.ARCHIVE_META["train"]: the archive image-net.org serves (138 GB) behind a login.
IMAGENET_TRAIN_TAR = ("ILSVRC2012_img_train.tar", "1d675b47d978889d74fa0da5fadfb00e")
IMAGENET_URL = "https://image-net.org/download-images.php"
# Sources the workflow fetches itself (config data.<key>.source), and those a user points data.<key>.path at.
FETCHED_SOURCES = {"mnist": "download", "cifar10": "download", "svhn": "download", "lsun": "download",
                   "faces": "celeba"}
USER_SOURCES = ("path", "folder", "npz")
WIDTH = 110  # the notice's line width


@dataclass(frozen=True)
class Supply:
    """One dataset the workflow cannot get by itself: the config key to set, why, and what to place where."""

    dataset: str                  # config data.<dataset>
    key: str                      # the config key to set, e.g. data.imagenet.path
    problem: str                  # what is wrong now
    files: tuple[str, ...]        # each file or folder to place, with its checksum where one is published
    how: str                      # where to get it and what to set


def gdown_installed() -> bool:
    """Whether ``gdown`` (torchvision's Google Drive client, needed for the CelebA download) can be imported."""
    return importlib.util.find_spec("gdown") is not None


def celeba_present(root: str | os.PathLike) -> bool:
    """Whether every CelebA file torchvision reads is in ``<root>/celeba`` (the images as zip or unzipped folder).

    Presence only (no md5: the parse must stay fast); rule ``data_download`` checks the md5s."""
    base = Path(root) / CELEBA_FOLDER
    texts = all((base / f).is_file() for f, _ in CELEBA_FILES if not f.endswith(".zip"))
    return texts and ((base / "img_align_celeba").is_dir() or (base / "img_align_celeba.zip").is_file())


def missing_supplies(config: Mapping[str, Any], *, can_fetch_celeba: bool | None = None) -> list[Supply]:
    """Every dataset of ``config["data"]`` that the workflow can neither find nor download, in config order.

    ``can_fetch_celeba``: whether the CelebA download can run (``gdown`` importable where the job runs; default:
    importable here). Demo sources and sources the workflow downloads are never missing: a failed download names
    its files when it runs.
    """
    data = config["data"]
    out = []
    for name in ("mnist", "cifar10", "svhn", "lsun", "imagenet", "faces"):
        cfg = data[name]
        source, path = cfg["source"], cfg.get("path")
        key = f"data.{name}.path"
        if name == "imagenet" and source == "path" and not (path and Path(path).is_dir()):
            out.append(_imagenet(key, path))
        elif source in USER_SOURCES and not (path and _usable(Path(path), source, name)):
            out.append(_user_path(name, cfg, key))
        elif name == "faces" and source == "celeba" and not celeba_present(path):
            fetchable = gdown_installed() if can_fetch_celeba is None else can_fetch_celeba
            if not fetchable:
                out.append(_celeba(key, path))
    return out


def _usable(path: Path, source: str, name: str) -> bool:
    """Whether a user-supplied ``path`` is there: an .npz file, an LSUN LMDB folder, or a folder of images."""
    if source == "npz":
        return path.is_file()
    return (path / "data.mdb").is_file() if name == "lsun" else path.is_dir()


def _imagenet(key: str, path: str | None) -> Supply:
    tar, md5 = IMAGENET_TRAIN_TAR
    problem = f"config key '{key}' is null" if not path else f"config key '{key}': {path} is not a folder"
    return Supply(
        "imagenet", key, problem,
        (f"{tar}  (md5 {md5}, 138 GB)",),
        f"ImageNet-1k needs an account at {IMAGENET_URL}; unpack {tar} and each of the 1,000 class archives in it "
        f"(train/n01440764/*.JPEG, ...) and set {key} to that train folder (ImageFolder layout: one subfolder per "
        "class), or set data.imagenet.source: demo")


def _user_path(name: str, cfg: Mapping[str, Any], key: str) -> Supply:
    what = {"npz": "an .npz file holding x_train, y_train, x_test, y_test",
            "folder": "a folder of photos or face crops (searched recursively)",
            "path": f"the unzipped {cfg.get('category', 'bedroom')}_train_lmdb folder (holding data.mdb)"}
    source = cfg["source"]
    path = cfg.get("path")
    problem = f"config key '{key}' is not set" if not path else f"config key '{key}': {path} does not exist"
    return Supply(name, key, f"{problem} (data.{name}.source: {source})", (what[source],),
                  f"set {key} to {what[source]}, or data.{name}.source to "
                  f"{FETCHED_SOURCES.get(name, 'demo')} to let the workflow fetch it")


def _celeba(key: str, path: str) -> Supply:
    base = Path(path) / CELEBA_FOLDER
    files = tuple(f"{base / f}  (md5 {m})" for f, m in CELEBA_FILES)
    return Supply(
        "faces", key,
        f"CelebA is not in {base} and gdown (torchvision's Google Drive client) is not installed here",
        files,
        f"pip install gdown==6.5.1 (pinned in requirements.txt and envs/torch.yaml), or download the files from "
        f"{CELEBA_URL} ('Align&Cropped Images' and 'Anno', Google Drive or Baidu) and place them as listed "
        f"(img_align_celeba.zip may instead be unzipped to {base / 'img_align_celeba'}/); "
        "or set data.faces: {source: folder, path: ...} to any folder of photos")


def notice(missing: list[Supply], dropped: Mapping[str, list[str]]) -> str:
    """The warning printed when the workflow is parsed: per missing supply, what to set and place, and the targets
    of rule ``all`` left out for it (``dropped``: dataset -> targets). Empty when nothing is missing."""
    if not missing:
        return ""
    lines = ["", "=" * WIDTH, "dcgan-repro: data you must supply before some targets can be built", "=" * WIDTH]
    for s in missing:
        targets = dropped.get(s.dataset, [])
        lines += textwrap.wrap(f"* {s.dataset}: {s.problem}.", WIDTH, subsequent_indent="  ")
        lines += textwrap.wrap(f"What to do: {s.how}.", WIDTH, initial_indent="  ", subsequent_indent="  ")
        lines.append("  Files:")
        lines += [f"    {f}" for f in s.files]
        if targets:
            lines.append("  Left out of rule all until then (the other targets still run):")
            lines += [f"    {t}" for t in _compact(targets)]
    lines += ["Details: docs/PAPER_SCALE.md, 'What you supply'.", "=" * WIDTH, ""]
    return "\n".join(lines)


def _compact(targets: list[str]) -> list[str]:
    """results/x.{png,pdf} instead of two lines: one line per output stem, the extensions in braces."""
    stems: dict[str, list[str]] = {}
    for t in targets:
        stem, dot, ext = t.rpartition(".")
        stems.setdefault(stem if dot else t, []).append(ext if dot else "")
    return [f"{s}.{{{','.join(e)}}}" if len(e) > 1 else (f"{s}.{e[0]}" if e[0] else s) for s, e in stems.items()]
