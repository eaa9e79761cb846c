"""Fetching and verifying the datasets the workflow downloads, separate from their ingest.

Rule ``data_download`` (a local rule: under SLURM it runs on the submit host, where the network is) calls
:func:`fetch_dataset` once per dataset the config downloads: it adds the missing files to the user's
``data.<name>.path``, verifies every file and writes a record of what it checked to
``<data.root>/checksums/download_<name>.json``, the rule's output. Rule ``data_ingest`` then reads only local files:
:mod:`dcgan_repro.data.ingest` calls the same functions with ``download=False``, which verify and never fetch, and
name the download step when a file is missing.

What is verified, per dataset (``data.<name>.source``):

- ``mnist`` (download): the md5 of each uncompressed IDX file (:data:`MNIST_RAW_MD5`); a missing one is fetched like
  torchvision's MNIST.download (each mirror in turn, the .gz md5-checked, then unpacked).
- ``cifar10`` (download): the md5 of every extracted batch file as torchvision publishes them, else the md5 of
  ``cifar-10-python.tar.gz`` (then extracted).
- ``svhn`` (download): the md5 of ``train_32x32.mat`` and ``test_32x32.mat``.
- ``lsun`` (download): the zip has no published checksum: its full sha256 is recorded at first sight in the
  first-seen ledger (:func:`dcgan_repro.data.download.verify_first_seen`) and checked against it later; the CRC of
  every zip member is checked before unzipping. The LMDB's sha256 joins the ledger at its first ingest.
- ``faces`` (celeba): the md5 of every CelebA file torchvision lists (from Google Drive through ``gdown``, which
  often refuses with a quota error: the error then lists each file, its md5 and where it goes).

A file that fails its checksum in the user's folder is named with both checksums and left in place
(:func:`dcgan_repro.data.download.check_files`); nothing in the folder is deleted or rewritten.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Mapping

from dcgan_repro import io
from dcgan_repro.data import download as dl  # the module; ``download`` is the functions' keyword
from dcgan_repro.data.download import DataError, DownloadError
from dcgan_repro.data.supply import CELEBA_URL, FETCHED_SOURCES

log = logging.getLogger(__name__)

# md5 of the uncompressed MNIST IDX files (the values in common use; torchvision itself checks only the .gz files).
MNIST_RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
# fyu/lsun download.py: http://dl.yf.io/lsun/scenes/{category}_{set}_lmdb.zip (no checksums are published).
LSUN_URL = "http://dl.yf.io/lsun/scenes/{category}_train_lmdb.zip"
# What the user runs where the network is, named by every "not fetched yet" error.
DOWNLOAD_STEP = ("run the download step first, where there is internet: `snakemake --until data_download` (add your "
                 "usual options; under SLURM rule data_download runs on the submit host)")

FileRecord = dict[str, Any]


def needs_fetch(name: str, cfg: Mapping[str, Any]) -> bool:
    """Whether config ``data.<name>`` (``cfg``) is a source the workflow downloads (rule ``data_download``)."""
    return FETCHED_SOURCES.get(name) == cfg.get("source")


def fetch_dataset(name: str, cfg: Mapping[str, Any], record_path: str | os.PathLike, *,
                  ledger: str | os.PathLike) -> dict[str, Any]:
    """Rule ``data_download``: fetch what is missing of dataset ``name`` into ``cfg["path"]``, verify every file,
    and write the record (what was checked, how, and which files this run fetched) to ``record_path``.

    ``ledger`` is LSUN's first-seen sha256 ledger (``<data.root>/checksums/lsun_raw.json``, shared with the ingest).
    """
    t0 = time.time()
    if not needs_fetch(name, cfg):
        raise DataError(f"config key 'data.{name}.source': {cfg.get('source')!r} is not a source the workflow "
                        f"downloads (those are: {', '.join(f'{k}: {v}' for k, v in FETCHED_SOURCES.items())})")
    files = fetch(name, cfg, ledger=Path(ledger), download=True)
    record = {"dataset": name, "config_key": f"data.{name}", "source": cfg["source"], "path": str(cfg["path"]),
              "files": files, "fetched_now": [f["path"] for f in files if f["fetched_now"]],
              "provenance": io.provenance(config=dict(cfg), seed=None, started=t0)}
    io.write_json(record_path, record)
    log.info("%s: %d files verified in %s (%d fetched now), %.1f s", name, len(files), cfg["path"],
             len(record["fetched_now"]), time.time() - t0)
    return record


def fetch(name: str, cfg: Mapping[str, Any], *, ledger: Path, download: bool,
          lsun_url: str | None = None) -> list[FileRecord]:
    """Verify dataset ``name``'s files in ``cfg["path"]`` (and with ``download`` fetch the missing ones first);
    return one record per file. Without ``download`` a missing file raises :class:`DataError` naming it and the
    download step. ``lsun_url`` overrides :data:`LSUN_URL` (its ``{category}`` filled in)."""
    root, key = Path(cfg["path"]), f"data.{name}"
    if name == "mnist":
        return mnist(root, key, download=download)
    if name == "cifar10":
        return cifar10(root, key, download=download)
    if name == "svhn":
        return svhn(root, key, download=download)
    if name == "lsun":
        return lsun(root, cfg["category"], key, ledger, download=download, url=lsun_url or LSUN_URL)[1]
    if name == "faces":
        return celeba(root, key, download=download)
    raise DataError(f"unknown dataset {name!r} to fetch; allowed: {', '.join(FETCHED_SOURCES)}")


def _record(path: Path, before: bool, **checksum: str) -> FileRecord:
    return {"path": str(path), "bytes": path.stat().st_size, **checksum, "fetched_now": not before}


def _not_fetched(what: str, missing: list[Path], key: str, root: Path) -> DataError:
    names = ", ".join(map(str, missing))
    return DataError(f"{what}: {names} {'is' if len(missing) == 1 else 'are'} missing, and ingest reads only local "
                     f"files: {DOWNLOAD_STEP}; or place the files by hand (docs/PAPER_SCALE.md lists each file and "
                     f"its md5) in config key '{key}.path' = {root}")


# ------------------------------------------------------------------------------------------------------------
# MNIST, CIFAR-10, SVHN: torchvision's files and published md5s
# ------------------------------------------------------------------------------------------------------------


def mnist(root: Path, key: str, *, download: bool) -> list[FileRecord]:
    """MNIST's four IDX files in ``<root>/MNIST/raw``, each md5-checked; missing ones fetched one by one (so an
    error names the exact file) when ``download``."""
    from torchvision.datasets import mnist as tv_mnist

    raw = root / "MNIST" / "raw"
    dl.check_files(raw, MNIST_RAW_MD5.items(), key, "MNIST", root)
    before = {f: (raw / f).is_file() for f in MNIST_RAW_MD5}
    missing = [raw / f for f, present in before.items() if not present]
    if missing and not download:
        raise _not_fetched("MNIST", missing, key, root)
    gz_md5 = dict(tv_mnist.MNIST.resources)
    for fname, md5 in MNIST_RAW_MD5.items():
        if before[fname]:
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
        if not dl.md5_ok(raw / fname, md5):
            raise DataError(f"MNIST: {raw / fname} unpacked from {raw / gz} fails its md5 check (expected {md5}); "
                            "delete both and run again")
    return [_record(raw / f, before[f], md5=m) for f, m in MNIST_RAW_MD5.items()]


def cifar10(root: Path, key: str, *, download: bool) -> list[FileRecord]:
    """CIFAR-10's extracted batch files in ``<root>/cifar-10-batches-py``, each md5-checked; when any is missing,
    ``cifar-10-python.tar.gz`` is md5-checked (fetched first when ``download``) and extracted."""
    from torchvision import datasets

    C = datasets.CIFAR10
    base = root / C.base_folder
    batches = [*C.train_list, *C.test_list, (C.meta["filename"], C.meta["md5"])]
    dl.check_files(base, batches, key, "CIFAR-10", root)
    before = {f: (base / f).is_file() for f, _ in batches}
    if not all(dl.md5_ok(base / f, m) for f, m in batches):  # torchvision then reads the archive
        dl.check_files(root, [(C.filename, C.tgz_md5)], key, "CIFAR-10", root)
        if not download:
            raise _not_fetched("CIFAR-10", [base / f for f, present in before.items() if not present], key, root)
        try:
            C(str(root), train=True, download=True)  # fetches (unless the tar.gz is already good) and extracts
        except (RuntimeError, OSError) as e:
            raise DownloadError(
                f"CIFAR-10: downloading {C.url} failed: {e}\nWithout internet, fetch it elsewhere and place "
                f"{C.filename} (md5 {C.tgz_md5}) in {root}/, or its extracted folder as {root / C.base_folder}/ "
                f"(config key '{key}.path' = {root})") from e
        bad = [f for f, m in batches if not dl.md5_ok(base / f, m)]
        if bad:
            raise DataError(f"CIFAR-10: {', '.join(str(base / f) for f in bad)} extracted from {root / C.filename} "
                            "fail their md5 check; delete them and the archive, and run again")
    return [_record(base / f, before[f], md5=m) for f, m in batches]


def svhn(root: Path, key: str, *, download: bool) -> list[FileRecord]:
    """SVHN's ``train_32x32.mat`` and ``test_32x32.mat`` in ``root``, md5-checked (``extra`` is not used)."""
    from torchvision.datasets import svhn as tv_svhn

    records = []
    for split in ("train", "test"):
        url, fname, md5 = tv_svhn.SVHN.split_list[split]
        path = root / fname
        dl.check_files(root, [(fname, md5)], key, "SVHN", root)
        before = path.is_file()
        if not before:
            if not download:
                raise _not_fetched("SVHN", [path], key, root)
            try:
                tv_svhn.download_url(url, str(root), fname, md5)
            except (RuntimeError, OSError) as e:
                raise DownloadError(f"SVHN: downloading {url} failed: {e}\nWithout internet, fetch it elsewhere and "
                                    f"place {fname} (md5 {md5}) in {root}/ (config key '{key}.path' = {root})") from e
            if not dl.md5_ok(path, md5):
                raise DataError(f"SVHN: {path} fails its md5 check after downloading (expected {md5}); delete it "
                                "and run again")
        records.append(_record(path, before, md5=md5))
    return records


# ------------------------------------------------------------------------------------------------------------
# CelebA (Google Drive through gdown) and LSUN (plain HTTP, no published checksum)
# ------------------------------------------------------------------------------------------------------------


def celeba(root: Path, key: str, *, download: bool) -> list[FileRecord]:
    """CelebA's aligned images and annotation files in ``<root>/celeba``, md5-checked, as torchvision reads them
    (``img_align_celeba.zip`` is unzipped to ``img_align_celeba/``; the zip may be gone once it is)."""
    from torchvision import datasets

    C = datasets.CelebA
    base = root / C.base_folder
    listed = [(fname, md5) for _, md5, fname in C.file_list]
    dl.check_files(base, listed, key, "CelebA", root)
    before = {f: (base / f).is_file() for f, _ in listed}
    images = base / "img_align_celeba"
    complete = images.is_dir() and all(before[f] for f, _ in listed if not f.endswith(".zip"))
    if not complete:
        if not download:
            missing = [base / f for f, _ in listed if not before[f] and not f.endswith(".zip")]
            raise _not_fetched("CelebA", missing or [images], key, root)
        try:
            C(str(root), split="all", target_type=[], download=True)  # skips files whose md5 is already right
        except (RuntimeError, OSError) as e:
            files = "\n".join(f"  {base / fname}  (md5 {md5})" for fname, md5 in listed)
            raise DownloadError(
                f"CelebA: download failed: {e}\ntorchvision fetches CelebA from Google Drive through gdown (pinned "
                f"in requirements.txt and envs/torch.yaml), which often refuses with a quota error. Download these "
                f"files by hand from {CELEBA_URL} (Google Drive or Baidu links, 'Align&Cropped Images' and "
                f"'Anno'/'Eval') and place them as:\n{files}\n(img_align_celeba.zip may instead be unzipped to "
                f"{images}/; config key '{key}.path' = {root}), then run again") from e
    return [_record(base / f, before[f], md5=m) for f, m in listed if (base / f).is_file()]


def lsun(path: Path, cat: str, key: str, ledger: Path, *, download: bool,
         url: str = LSUN_URL) -> tuple[Path, list[FileRecord]]:
    """The LMDB folder ``<path>/<cat>_train_lmdb`` and the records of what was checked.

    When it is absent and ``download``: fetch ``<cat>_train_lmdb.zip`` resumably (``url``), record or verify its
    sha256 in ``ledger``, check every member's CRC and unzip it beside. A bad zip is named, never removed.
    """
    db = path / f"{cat}_train_lmdb"
    zpath = path / f"{cat}_train_lmdb.zip"
    url = url.format(category=cat)
    had_db, had_zip = (db / "data.mdb").is_file(), zpath.is_file()
    if not had_db:
        if not download:
            raise _not_fetched(f"LSUN {cat}", [db / "data.mdb"], key, path)
        if not had_zip:
            try:
                dl.download_file(url, zpath)
            except DownloadError as e:
                raise DownloadError(f"LSUN {cat}: {e}\nFor example `curl -C - -o {zpath} {url}` on a machine with "
                                    f"internet; or unzip it yourself and set {key}.source: path and {key}.path to "
                                    f"the {cat}_train_lmdb folder") from e
        dl.verify_first_seen(ledger, zpath, url, key)
        _check_zip(zpath, key, path)
        _unzip_lmdb(zpath, db, path)
    records = []
    if zpath.is_file():
        # verified against the ledger just above, or (LMDB already there) at the first use that recorded it
        entry = io.read_json(ledger).get(str(zpath.resolve())) if ledger.is_file() else None
        records.append(_record(zpath, had_zip, sha256=entry["sha256"] if entry else "not recorded",
                               checked=f"first-seen ledger {ledger}; CRC of every member"))
    records.append(_record(db / "data.mdb", had_db,
                           checked=f"full sha256 recorded in {ledger} at its first ingest, checked at every later one"))
    return db, records


def _check_zip(zpath: Path, key: str, path: Path) -> None:
    log.info("checking the CRC of every member of %s", zpath)
    try:
        with zipfile.ZipFile(zpath) as zf:
            bad = zf.testzip()  # name of the first member whose CRC fails, or None
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as e:
        bad = f"the archive ({type(e).__name__}: {e})"
    if bad is not None:
        raise DataError(f"LSUN {zpath} is corrupt ({bad} fails its CRC check). It is left in place: delete it and "
                        f"run again to download it anew (config key '{key}.path' = {path})")


def _unzip_lmdb(zpath: Path, db: Path, path: Path) -> None:
    """Unzip beside, into a hidden folder of our own, then rename the one LMDB in it to ``db``."""
    tmp = path / f".{db.name}.unzip"
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
