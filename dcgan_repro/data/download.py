"""Downloads and checksums for dataset ingest (:mod:`dcgan_repro.data.ingest`), and the package's errors.

- :func:`download_file`: a resumable HTTP download (``Range`` requests through ``<dest>.part``), size- and
  optionally sha256-checked, renamed into place only when complete.
- :func:`md5_of`, :func:`md5_ok`, :func:`check_files`: md5 checks of the files torchvision datasets publish
  checksums for. A file that fails in a folder the user chose is named with both checksums and left in place.
- :func:`verify_first_seen`: for data with no published checksum (LSUN), a ledger of each file's full sha256 at
  its first use, checked at every later use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable

from dcgan_repro import io

log = logging.getLogger(__name__)


class DataError(RuntimeError):
    """A dataset cannot be ingested; the message names the setting or file and what to do."""


class DownloadError(DataError):
    """A download failed; the message names the URL and where to place the file by hand."""


class ChecksumError(DataError):
    """A file in a user's folder fails its checksum; it is left in place, the message says what to do."""


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def md5_ok(path: Path, md5: str) -> bool:
    """True when ``path`` exists and its md5 is ``md5``."""
    return path.is_file() and md5_of(path) == md5


def check_files(folder: Path, files: Iterable[tuple[str, str]], key: str, what: str, root: Path) -> None:
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
