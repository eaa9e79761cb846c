"""dcgan_repro.data.download and the sources' downloads: a file that fails its md5 in a user's folder is named and
left in place, and every download failure says what to fetch and where to place it.

Nothing here reaches the internet: torchvision's download functions are monkeypatched to fail. Real MNIST
(../shared/data) is used when present. The resumable HTTP download is tested with LSUN in test_data_ingest.py.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from conftest import no_download
from dcgan_repro.data import download, ingest



# --- a bad file in the user's folder is named and kept -----------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_mnist_damaged_file_is_named_and_kept(shared_data, tmp_path, monkeypatch, damage):
    import torchvision.datasets.mnist as tv_mnist

    raw = tmp_path / "dl" / "MNIST" / "raw"
    shutil.copytree(shared_data / "mnist" / "MNIST" / "raw", raw)
    victim = raw / "train-labels-idx1-ubyte"
    victim.chmod(0o644)
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:5000])
    else:
        victim.unlink()
    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", no_download)
    with pytest.raises(download.DataError) as e:
        ingest.ingest("mnist", {"source": "download", "path": str(tmp_path / "dl")}, tmp_path / "m", seed=0)
    msg = str(e.value)
    if damage == "truncate":  # a bad file in the user's folder is named and left as it is
        assert isinstance(e.value, download.ChecksumError)
        assert msg.startswith(f"MNIST: {victim} fails its md5 check (expected a25bea736e30d166cdddb491f175f624, got ")
        assert f"config key 'data.mnist.path' = {tmp_path / 'dl'}" in msg and "5,000 bytes" in msg
        assert len(victim.read_bytes()) == 5000
    else:
        assert msg.startswith(f"MNIST: {victim} is missing") and "offline (test)" in msg
        assert "train-labels-idx1-ubyte.gz" in msg and f"in {raw}/" in msg
    assert "images" not in msg  # the intact files are neither named nor fetched again
    assert not (tmp_path / "m").exists() and not list(tmp_path.glob(".m.*"))  # nothing half-written


def _torchvision_file(name: str, root: Path) -> tuple[Path, str]:
    """(where the ingest of ``name`` looks for its first checksummed file under ``root``, its md5)."""
    from torchvision import datasets as D

    if name == "mnist":
        return root / "MNIST" / "raw" / "train-images-idx3-ubyte", ingest.MNIST_RAW_MD5["train-images-idx3-ubyte"]
    if name == "cifar10":
        return root / D.CIFAR10.filename, D.CIFAR10.tgz_md5
    if name == "svhn":
        return root / D.SVHN.split_list["train"][1], D.SVHN.split_list["train"][2]
    _, md5, fname = D.CelebA.file_list[0]
    return root / D.CelebA.base_folder / fname, md5


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn", "faces_raw"])
def test_checksum_mismatch_leaves_a_read_only_user_file_in_place(tmp_path, monkeypatch, name):
    """A file that fails its md5 in the user's data.*.path is named with both checksums and never touched."""
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "urlopen", no_download, raising=False)
    root = tmp_path / "user"
    victim, md5 = _torchvision_file(name, root)
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"not the real file" * 100)
    victim.chmod(0o444)
    before = victim.stat()
    cfg = {"source": "celeba" if name == "faces_raw" else "download", "path": str(root), "max_images": 0,
           "link": "hardlink"}
    with pytest.raises(download.ChecksumError) as e:
        ingest.ingest(name, cfg, tmp_path / "out", seed=0)
    msg = str(e.value)
    got = hashlib.md5(b"not the real file" * 100).hexdigest()
    assert f"{victim} fails its md5 check (expected {md5}, got {got}, 1,700 bytes)" in msg
    key = "faces" if name == "faces_raw" else name
    assert f"config key 'data.{key}.path' = {root}" in msg and "delete it and run again" in msg
    after = victim.stat()
    assert victim.read_bytes() == b"not the real file" * 100
    assert (after.st_ino, after.st_mtime_ns, after.st_mode) == (before.st_ino, before.st_mtime_ns, before.st_mode)


# --- torchvision datasets: download failures ------------------------------------------------------------------


def test_cifar10_download_failure_says_what_to_place_where(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_download)
    with pytest.raises(download.DownloadError) as e:
        ingest.ingest("cifar10", {"source": "download", "path": str(tmp_path / "c")}, tmp_path / "out", seed=0)
    msg = str(e.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in msg
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path / "c") in msg


def test_svhn_download_failure_says_what_to_place_where(tmp_path, monkeypatch):
    import torchvision.datasets.svhn as tv_svhn

    monkeypatch.setattr(tv_svhn, "download_url", no_download)
    with pytest.raises(download.DownloadError, match=r"train_32x32\.mat") as e:
        ingest.ingest("svhn", {"source": "download", "path": str(tmp_path / "s")}, tmp_path / "out", seed=0)
    assert "http://ufldl.stanford.edu/housenumbers/train_32x32.mat" in str(e.value)


def test_celeba_download_failure_lists_every_file(tmp_path, monkeypatch):
    import torchvision.datasets.celeba as tv_celeba

    def refuse(*a, **k):
        raise RuntimeError("Too many users have viewed or downloaded this file recently (test)")

    monkeypatch.setattr(tv_celeba, "download_file_from_google_drive", refuse)
    cfg = {"source": "celeba", "path": str(tmp_path / "f"), "max_images": 0, "link": "hardlink"}
    with pytest.raises(download.DownloadError) as e:
        ingest.ingest("faces_raw", cfg, tmp_path / "out", seed=0)
    msg = str(e.value)
    for _, md5, fname in tv_celeba.CelebA.file_list:
        assert f"{tmp_path / 'f' / 'celeba' / fname}  (md5 {md5})" in msg
    assert "Too many users" in msg
