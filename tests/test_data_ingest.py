"""dcgan_repro.data.ingest: the real loaders on small local copies (torchvision datasets, image folders, the LSUN
LMDB and its resumable download), their error paths, and bad input of every kind through both curation stages.

Nothing here reaches the internet: torchvision's download functions are monkeypatched to fail, and the LSUN
download is served from a loopback HTTP server. Real MNIST and a CIFAR-10 subset (../shared/data) are used when
present.
"""

from __future__ import annotations

import collections
import http.server
import os
import pickle
import shutil
import threading
import zipfile
from io import BytesIO

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import no_download
from dcgan_repro import images, io
from dcgan_repro.data import demo, download, ingest



def reference_resize_crop(img: Image.Image, size: int) -> np.ndarray:
    """torchvision's own Resize + CenterCrop pipeline (what pytorch/examples uses for LSUN)."""
    from torchvision import transforms

    return np.asarray(transforms.Compose([transforms.Resize(size), transforms.CenterCrop(size)])(img))


def jpeg_bytes(img: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


def photo_crop(name: str, h: int, w: int) -> np.ndarray:
    return np.ascontiguousarray(demo.demo_photo(name)[:h, :w])


# --- resizing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("h, w, size", [(256, 340, 64), (300, 256, 64), (64, 64, 64), (50, 50, 64), (120, 90, 32),
                                        (64, 200, 32), (201, 77, 32), (33, 32, 32), (257, 256, 64), (41, 97, 64)])
def test_resize_center_crop_is_torchvision_resize_and_center_crop(h, w, size):
    """images.resize_center_crop (Pillow alone) equals torchvision Resize(size) + CenterCrop(size) on PIL images
    (down- and upscaling, portrait, landscape, square, already the size, odd margins), from a PIL image or an
    array."""
    img = Image.fromarray(photo_crop("chelsea", h, w))
    ref = reference_resize_crop(img, size)
    assert ref.shape == (size, size, 3)
    assert np.array_equal(images.resize_center_crop(img, size), ref)
    assert np.array_equal(images.resize_center_crop(np.asarray(img), size), ref)


# --- config errors ---------------------------------------------------------------------------------------------


def test_unknown_source_names_the_key_and_the_choices(tmp_path):
    cfg = {"source": "demoo", "path": "unused", "category": "bedroom", "image_size": 64, "max_images": 0}
    with pytest.raises(download.DataError, match=r"'data\.lsun\.source'.*'demoo'.*download, path, demo"):
        ingest.ingest("lsun_raw", cfg, tmp_path / "x", seed=0)
    assert not (tmp_path / "x").exists()


def test_a_foreign_folder_is_never_replaced(tmp_path):
    """An output folder that holds files but no meta.json is not one ingest wrote: it is left as it is."""
    out = tmp_path / "mnist"
    out.mkdir()
    (out / "notes.txt").write_text("mine\n")
    with pytest.raises(download.DataError, match=r"not an ingested dataset \(no meta\.json\).*data\.root"):
        ingest.ingest("mnist", {"source": "demo", "path": "unused"}, out, seed=0)
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and not list(tmp_path.glob(".mnist*"))


@pytest.mark.parametrize("path", [None, "missing"])
def test_imagenet_without_a_folder_says_what_to_set(tmp_path, path):
    cfg = {"source": "path", "path": path and str(tmp_path / path), "image_size": 32, "max_images": 0}
    with pytest.raises(download.DataError, match=r"data\.imagenet\.path") as e:
        ingest.ingest("imagenet", cfg, tmp_path / "imagenet", seed=0)
    assert ("not set" in str(e.value) and "ImageNet-1k train folder" in str(e.value)) if path is None \
        else str(tmp_path / path) in str(e.value)
    assert not (tmp_path / "imagenet").exists() and not list(tmp_path.glob(".imagenet*"))


# --- real MNIST (../shared/data) ---------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_mnist_real_files(shared_data, tmp_path, monkeypatch):
    import torchvision.datasets.mnist as tv_mnist

    monkeypatch.setattr(tv_mnist, "download_and_extract_archive", no_download)  # must not be needed
    meta = ingest.ingest("mnist", {"source": "download", "path": str(shared_data / "mnist")}, tmp_path / "m", seed=0)
    assert meta["splits"] == {"train": 60000, "test": 10000} and meta["stand_in"] is None
    x, y = io.read_dataset(tmp_path / "m", "train")
    assert x.shape == (60000, 28, 28, 1) and x.dtype == np.uint8 and y[0] == 5
    assert abs(x.mean() / 255 - 0.1307) < 1e-4
    assert np.bincount(y).tolist()[:3] == [5923, 6742, 5958]
    assert io.read_dataset(tmp_path / "m", "test")[1][0] == 7


# --- torchvision datasets: conversion ---------------------------------------------------------------------------


@pytest.mark.shared_data
def test_cifar10_loader_matches_the_official_arrays(shared_data, tmp_path, monkeypatch):
    """The torchvision CIFAR-10 pickle layout -> our NHWC arrays, checked on real CIFAR-10 images."""
    import torchvision.datasets.cifar as tv_cifar

    ref = np.load(shared_data / "cifar10" / "cifar10_subset.npz")
    base = tmp_path / "c" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    to_rows = lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # noqa: E731 (N,32,32,3) -> (N, 3072) CHW
    for i, (f, _) in enumerate(tv_cifar.CIFAR10.train_list):
        part = slice(i * 800, (i + 1) * 800)
        (base / f).write_bytes(pickle.dumps({"data": to_rows(ref["x_train"][part]),
                                             "labels": ref["y_train"][part].tolist()}))
    (base / "test_batch").write_bytes(pickle.dumps({"data": to_rows(ref["x_test"]), "labels": ref["y_test"].tolist()}))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in ref["class_names"]]}))
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)  # our files are not the official md5s
    monkeypatch.setattr(download, "md5_ok", lambda *a, **k: True)
    meta = ingest.ingest("cifar10", {"source": "download", "path": str(tmp_path / "c")}, tmp_path / "out", seed=0)
    assert meta["splits"] == {"train": 4000, "test": 1000}
    for split in ("train", "test"):
        x, y = io.read_dataset(tmp_path / "out", split)
        assert np.array_equal(x, ref[f"x_{split}"]) and np.array_equal(y, ref[f"y_{split}"])


def test_svhn_labels_are_digits_and_images_nhwc(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets.svhn as tv_svhn

    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    digits = np.arange(12) % 10  # file convention: digit 0 is stored as 10
    root = tmp_path / "s"
    root.mkdir()
    for split in ("train", "test"):
        fname = tv_svhn.SVHN.split_list[split][1]
        file_y = np.where(digits == 0, 10, digits)[:, None]  # (N, 1)
        scipy.io.savemat(root / fname, {"X": imgs.transpose(1, 2, 3, 0), "y": file_y})  # X: (32, 32, 3, N)
    monkeypatch.setattr(tv_svhn, "check_integrity", lambda *a, **k: True)  # our files are not the official md5s
    monkeypatch.setattr(tv_svhn, "download_url", lambda *a, **k: None)  # torchvision would fetch over them
    monkeypatch.setattr(download, "md5_ok", lambda *a, **k: True)
    meta = ingest.ingest("svhn", {"source": "download", "path": str(root)}, tmp_path / "out", seed=0)
    x, y = io.read_dataset(tmp_path / "out", "train")
    assert np.array_equal(x, imgs) and np.array_equal(y, digits) and meta["n_classes"] == 10


# --- image folders: ImageNet (ImageFolder) and faces (folder) -----------------------------------------------------


@pytest.fixture
def image_tree(tmp_path):
    """Two class folders of real photo crops (JPEG and PNG, odd sizes) plus a truncated and an empty JPEG."""
    root = tmp_path / "train"
    shapes = [(120, 90), (64, 200), (50, 50)]
    for cls, photo in (("n001", "coffee"), ("n002", "chelsea")):
        (root / cls).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            img = photo_crop(photo, h, w)
            if i == 1:
                Image.fromarray(img).save(root / cls / f"{i}.png")
            else:
                (root / cls / f"{i}.JPEG").write_bytes(jpeg_bytes(img))
    whole = jpeg_bytes(photo_crop("rocket", 200, 300))
    (root / "n002" / "bad_truncated.JPEG").write_bytes(whole[: len(whole) // 2])
    (root / "n002" / "bad_empty.JPEG").write_bytes(b"")
    return root


def test_imagenet_folder_resizes_like_torchvision_and_counts_bad_files(image_tree, tmp_path):
    cfg = {"source": "path", "path": str(image_tree), "image_size": 32, "max_images": 0}
    meta = ingest.ingest("imagenet", cfg, tmp_path / "out", seed=0, workers=2)
    assert meta["splits"] == {"train": 6} and meta["class_names"] == ["n001", "n002"] and meta["stand_in"] is None
    assert meta["skipped"] == {"truncated": 1, "empty_file": 1}
    x, y = io.read_dataset(tmp_path / "out", "train")
    assert x.shape == (6, 32, 32, 3) and y.tolist() == [0, 0, 0, 1, 1, 1]
    good = [p for p in sorted(image_tree.rglob("*")) if p.is_file() and not p.name.startswith("bad")]
    for i, p in enumerate(good):
        assert np.array_equal(x[i], reference_resize_crop(Image.open(p).convert("RGB"), 32)), p
    sub = ingest.ingest("imagenet", {**cfg, "max_images": 3}, tmp_path / "sub", seed=0)
    assert sub["splits"]["train"] <= 3


@pytest.mark.parametrize("link", ["hardlink", "copy"])
def test_faces_folder_links_readable_images_and_counts_bad_ones(image_tree, tmp_path, link):
    (image_tree / "notes.txt").write_text("not an image")
    cfg = {"source": "folder", "path": str(image_tree), "max_images": 0, "link": link}
    meta = ingest.ingest("faces_raw", cfg, tmp_path / "faces_raw", seed=0)
    out = tmp_path / "faces_raw"
    names = (out / "manifest.txt").read_text().splitlines()
    assert len(names) == meta["n_images"] == 6 and meta["skipped"] == {"truncated": 1, "empty_file": 1}
    assert names[0] == "images/n001/0.JPEG"
    for n in names:
        src = image_tree / n.removeprefix("images/")
        assert (out / n).read_bytes() == src.read_bytes()
        assert os.path.samefile(out / n, src) == (link == "hardlink")


# --- LSUN: LMDB reader and resumable download ------------------------------------------------------------------


@pytest.fixture
def lsun_lmdb(tmp_path):
    """A tiny LMDB in the LSUN export format: JPEG values (short side 256 like LSUN, or odd sizes), plus a
    truncated JPEG and a non-image value. Returns (folder, the decoded good images in key order)."""
    import lmdb

    db = tmp_path / "bedroom_train_lmdb"
    env = lmdb.open(str(db), map_size=1 << 26)
    good = []
    with env.begin(write=True) as txn:
        for i, (photo, h, w) in enumerate([("coffee", 256, 340), ("chelsea", 300, 256), ("rocket", 256, 256),
                                           ("china", 120, 90), ("flower", 256, 400)]):
            enc = jpeg_bytes(photo_crop(photo, h, w), quality=75)
            txn.put(f"{i:04d}".encode(), enc)
            good.append(Image.open(BytesIO(enc)).convert("RGB"))
        whole = jpeg_bytes(photo_crop("retina", 256, 256))
        txn.put(b"0001a", whole[: len(whole) // 3])
        txn.put(b"0002a", b"<html>not an image</html>")
    env.close()
    return db, good


def test_lsun_lmdb_is_decoded_resized_and_bad_values_counted(lsun_lmdb, tmp_path):
    db, good = lsun_lmdb
    cfg = {"source": "path", "path": str(db), "category": "bedroom", "image_size": 64, "max_images": 0}
    meta = ingest.ingest("lsun_raw", cfg, tmp_path / "out", seed=0, workers=2)
    assert meta["splits"] == {"train": 5} and meta["lmdb_entries"] == 7 and meta["stand_in"] is None
    assert meta["skipped"] == {"truncated": 1, "not_an_image": 1}
    assert sorted(r for _, r in meta["skipped_examples"]) == ["not_an_image", "truncated"]
    x, y = io.read_dataset(tmp_path / "out", "train")
    assert x.shape == (5, 64, 64, 3) and (y == -1).all()
    for i, img in enumerate(good):
        assert np.array_equal(x[i], reference_resize_crop(img, 64))
    capped = ingest.ingest("lsun_raw", {**cfg, "max_images": 3}, tmp_path / "cap", seed=0)
    assert capped["splits"] == {"train": 3}
    assert np.array_equal(io.read_dataset(tmp_path / "cap", "train")[0], x[:3])


def test_lsun_path_without_lmdb_names_the_folder(tmp_path):
    cfg = {"source": "path", "path": str(tmp_path), "category": "bedroom", "image_size": 64, "max_images": 0}
    with pytest.raises(download.DataError, match=r"data\.lsun\.path.*no data\.mdb.*bedroom_train_lmdb"):
        ingest.ingest("lsun_raw", cfg, tmp_path / "out", seed=0)


class _RangeServer(http.server.ThreadingHTTPServer):
    """Loopback HTTP server for one payload, honouring 'Range: bytes=N-' like the LSUN server."""

    def __init__(self, payload: bytes):
        self.payload, self.ranges = payload, []
        super().__init__(("127.0.0.1", 0), _RangeHandler)


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server API)
        body, rng = self.server.payload, self.headers.get("Range")
        self.server.ranges.append(rng)
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            body = body[start:]
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    servers = []

    def start(payload: bytes) -> _RangeServer:
        srv = _RangeServer(payload)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_lsun_download_resumes_checks_and_unzips(lsun_lmdb, tmp_path, monkeypatch, serve):
    db, good = lsun_lmdb
    zpath = tmp_path / "lsun.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in db.iterdir():
            zf.write(f, f"bedroom_train_lmdb/{f.name}")
    payload = zpath.read_bytes()
    srv = serve(payload)
    monkeypatch.setattr(ingest, "LSUN_URL", f"http://127.0.0.1:{srv.server_port}/{{category}}_train_lmdb.zip")
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "bedroom_train_lmdb.zip.part").write_bytes(payload[:1000])  # an interrupted earlier download
    cfg = {"source": "download", "path": str(dl), "category": "bedroom", "image_size": 64, "max_images": 0}
    meta = ingest.ingest("lsun_raw", cfg, tmp_path / "out", seed=0)
    assert srv.ranges == ["bytes=1000-"]  # resumed, not restarted
    assert (dl / "bedroom_train_lmdb.zip").read_bytes() == payload
    assert (dl / "bedroom_train_lmdb" / "data.mdb").is_file() and meta["splits"] == {"train": 5}


def test_download_rejects_wrong_checksum_and_corrupt_zip(tmp_path, monkeypatch, serve):
    srv = serve(b"PK not really a zip" * 100)
    url = f"http://127.0.0.1:{srv.server_port}/x.zip"
    with pytest.raises(download.DownloadError, match="sha256"):
        download.download_file(url, tmp_path / "x.zip", sha256="0" * 64)
    assert not list(tmp_path.iterdir())  # rejected and removed
    monkeypatch.setattr(ingest, "LSUN_URL", url.replace("x.zip", "{category}.zip"))
    cfg = {"source": "download", "path": str(tmp_path), "category": "bedroom", "image_size": 64, "max_images": 0}
    with pytest.raises(download.DataError, match="corrupt") as e:
        ingest.ingest("lsun_raw", cfg, tmp_path / "out", seed=0)
    assert "left in place: delete it and run again" in str(e.value)
    assert (tmp_path / "bedroom_train_lmdb.zip").read_bytes() == b"PK not really a zip" * 100  # named, not removed


def test_lsun_is_checked_against_its_first_use(lsun_lmdb, tmp_path, monkeypatch, serve):
    """LSUN has no published checksum: the first download's full sha256 (zip and LMDB) is recorded, and every later
    ingest verifies against it, naming both checksums and leaving the file alone on a mismatch."""
    db, _ = lsun_lmdb
    zpath = tmp_path / "lsun.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for f in db.iterdir():
            zf.write(f, f"bedroom_train_lmdb/{f.name}")
    srv = serve(zpath.read_bytes())
    monkeypatch.setattr(ingest, "LSUN_URL", f"http://127.0.0.1:{srv.server_port}/{{category}}_train_lmdb.zip")
    dl = tmp_path / "dl"
    cfg = {"source": "download", "path": str(dl), "category": "bedroom", "image_size": 64, "max_images": 0}
    ingest.ingest("lsun_raw", cfg, tmp_path / "data" / "lsun_raw", seed=0)
    ledger = io.read_json(tmp_path / "data" / "checksums" / "lsun_raw.json")
    mdb = dl / "bedroom_train_lmdb" / "data.mdb"
    assert set(ledger) == {str((dl / "bedroom_train_lmdb.zip").resolve()), str(mdb.resolve())}
    assert ledger[str(mdb.resolve())]["sha256"] == "sha256:" + io.sha256_file(mdb)
    meta = ingest.ingest("lsun_raw", cfg, tmp_path / "data" / "lsun_raw", seed=0)  # unchanged: passes
    assert meta["provenance"]["inputs"]["lmdb"][str(mdb)] == ledger[str(mdb.resolve())]["sha256"]  # full, not sampled
    with open(mdb, "ab") as f:
        f.write(b"\0")  # the file changes after its first use
    with pytest.raises(download.ChecksumError) as e:
        ingest.ingest("lsun_raw", cfg, tmp_path / "data" / "lsun_raw", seed=0)
    msg = str(e.value)
    assert f"{mdb} has changed since its first use: sha256:{io.sha256_file(mdb)} now, " in msg
    assert ledger[str(mdb.resolve())]["sha256"] + " recorded on" in msg and "delete its entry from" in msg
    assert mdb.is_file()


def test_lsun_download_offline_names_url_and_destination(tmp_path, monkeypatch):
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = srv.server_port
    srv.server_close()  # nothing listens there now: connection refused at once
    monkeypatch.setattr(ingest, "LSUN_URL", f"http://127.0.0.1:{port}/{{category}}_train_lmdb.zip")
    cfg = {"source": "download", "path": str(tmp_path / "dl"), "category": "bedroom", "image_size": 64,
           "max_images": 0}
    with pytest.raises(download.DownloadError) as e:
        ingest.ingest("lsun_raw", cfg, tmp_path / "out", seed=0)
    msg = str(e.value)
    assert f"http://127.0.0.1:{port}/bedroom_train_lmdb.zip" in msg
    assert str(tmp_path / "dl" / "bedroom_train_lmdb.zip") in msg and "source: path" in msg


# --- bad input, both curation stages ---------------------------------------------------------------------------


def _huge_png(w: int, h: int) -> bytes:
    """A real, valid 8-bit grayscale PNG of w x h black pixels, compressed row by row (never w*h bytes at once)."""
    import struct
    import zlib

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    z = zlib.compressobj(1)
    row = bytes(w + 1)  # filter byte 0 + w pixels
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def bad_input_files() -> tuple[dict[str, bytes], dict[str, np.ndarray], dict[str, str]]:
    """Every kind of file a scraped collection holds: (name -> bytes, name -> the 8-bit RGB it must decode to,
    name -> the reason it must be skipped with). Names sort in the order they are listed."""
    import skimage.data

    rgb = np.ascontiguousarray(skimage.data.astronaut())  # (512, 512, 3), a ~100 px face
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # (512, 512)
    big = np.pad(cv2.resize(rgb, (2000, 2000), interpolation=cv2.INTER_LINEAR), ((0, 0), (500, 500), (0, 0)),
                 constant_values=128)  # (2000, 3000, 3): 6 Mpx, large but decoded
    jpg = jpeg_bytes(rgb, 95)
    png = cv2.imencode(".png", rgb[..., ::-1])[1].tobytes()

    def pil(im: Image.Image, fmt: str, **kw) -> bytes:
        b = BytesIO()
        im.save(b, format=fmt, **kw)
        return b.getvalue()

    good = {  # name: (bytes, expected RGB)
        "00_rgb.jpg": (jpg, rgb),
        "01_gray.jpg": (pil(Image.fromarray(gray), "JPEG", quality=95), np.repeat(gray[..., None], 3, 2)),
        "02_cmyk.jpg": (pil(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95), rgb),
        "03_rgb16.png": (cv2.imencode(".png", rgb[..., ::-1].astype(np.uint16) * 257)[1].tobytes(), rgb),
        "04_gray16.png": (pil(Image.fromarray(gray.astype(np.uint16) * 257), "PNG"), np.repeat(gray[..., None], 3, 2)),
        "05_large.jpg": (jpeg_bytes(big, 90), big),
    }
    bad = {  # name: (bytes, reason)
        "06_empty.jpg": (b"", "empty_file"),
        "07_truncated.jpg": (jpg[: len(jpg) // 2], "truncated"),
        "08_truncated.png": (png[: len(png) * 2 // 3], "truncated"),
        "09_corrupt.jpg": (jpg[:200] + bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8)) + b"\xff\xd9",
                           "corrupt"),
        "10_html.jpg": (b"<html><body>403 Forbidden</body></html>\n" * 10, "not_an_image"),
        "11_huge.png": (_huge_png(12000, 12000), "too_large"),  # 144 Mpx > images.MAX_PIXELS, < Pillow's bomb limit
    }
    files = {**{k: v[0] for k, v in good.items()}, **{k: v[0] for k, v in bad.items()}}
    return files, {k: v[1] for k, v in good.items()}, {k: v[1] for k, v in bad.items()}


def test_bad_input_of_every_kind_is_decoded_or_skipped_and_counted_in_both_stages(tmp_path):
    """Corrupt, truncated, zero-byte, grayscale, CMYK, 16-bit, large and huge files planted in an LSUN LMDB (ingest
    -> dedup) and in a folder of web images (ingest -> face detection, and the face stage reading them itself):
    each decodes to the right 8-bit RGB or is skipped, and every summary counts the skips by reason."""
    import json

    import lmdb

    from dcgan_repro import dedup, faces

    files, good, bad = bad_input_files()
    want_skipped = dict(collections.Counter(bad.values()))
    assert set(want_skipped) <= set(images.SKIP_REASONS)
    # --- ingest: LSUN LMDB -> lsun_raw (decoded pixels equal torchvision's pipeline on the expected RGB)
    db = tmp_path / "bedroom_train_lmdb"
    env = lmdb.open(str(db), map_size=1 << 28)
    with env.begin(write=True) as txn:
        for name, b in files.items():
            txn.put(name.encode(), b)
    env.close()
    cfg = {"source": "path", "path": str(db), "category": "bedroom", "image_size": 64, "max_images": 0}
    meta = ingest.ingest("lsun_raw", cfg, tmp_path / "lsun_raw", seed=0, workers=2)
    assert meta["splits"] == {"train": len(good)} and meta["skipped"] == want_skipped
    assert sorted(meta["skipped_examples"]) == sorted([k, r] for k, r in bad.items())
    x, _ = io.read_dataset(tmp_path / "lsun_raw", "train")
    for i, (name, rgb) in enumerate(good.items()):
        ref = reference_resize_crop(Image.fromarray(rgb), 64).astype(int)
        assert np.abs(x[i].astype(int) - ref).mean() < (0.01 if name.endswith(".png") else 3.0), name
    # --- dedup: the gather summary repeats what ingest skipped
    dcfg = dict(enabled=True, crop=32, normalize="image", code_dim=128, dropout=0.5, input_noise=2.0, threshold=0.0,
                train_images=100, epochs=1, batch_size=8, lr=1e-3, shards=2, seed=1)
    common = {"preset": "test", "device": "cpu", "precision": "fp32"}
    dedup.train_job(tmp_path / "lsun_raw", tmp_path / "ae.pt", dcfg, common)
    shards = [tmp_path / f"codes{i}.npz" for i in range(2)]
    for i, s in enumerate(shards):
        dedup.hash_shard(tmp_path / "lsun_raw", tmp_path / "ae.pt", s, i, 2, dcfg, common)
    out = {k: tmp_path / f"dedup_{k}" for k in ("summary.json", "kept.txt", "removed.csv", "sheet.png")}
    summary = dedup.gather(tmp_path / "lsun_raw", shards, tmp_path / "lsun", out["summary.json"],
                           out["kept.txt"], out["removed.csv"], out["sheet.png"], dcfg, "test")
    assert summary["images"] == len(good) and summary["skipped_at_ingest"] == want_skipped
    assert summary["skipped_at_ingest_total"] == len(bad)
    # --- ingest: folder of web images -> faces_raw (undecodable files counted, files of other types too)
    web = tmp_path / "web"
    web.mkdir()
    for name, b in files.items():
        (web / name).write_bytes(b)
    (web / "notes.txt").write_text("not an image\n")
    fcfg = {"source": "folder", "path": str(web), "max_images": 0, "link": "copy"}
    meta = ingest.ingest("faces_raw", fcfg, tmp_path / "faces_raw", seed=0, workers=2)
    assert meta["n_images"] == len(good) and meta["skipped"] == want_skipped
    assert meta["other_files_by_extension"] == {".txt": 1}
    # --- faces: the stage reads every file of a manifest itself (e.g. CelebA, not pre-checked) ...
    listed = tmp_path / "listed"
    shutil.copytree(web, listed)
    io.write_text(listed / "manifest.txt", "".join(f"{n}\n" for n in [*files, "12_missing.jpg"]))
    io.write_json(listed / "meta.json", {"name": "faces_raw", "source": "test", "stand_in": "test files"})
    face_cfg = dict(detect=True, cascade="haarcascade_frontalface_default.xml", scale_factor=1.1, min_neighbors=5,
                    min_size=64, max_side=1024, margin=0.0, image_size=64, shards=2)  # large: downscaled
    for name, rgb in good.items():
        img, status = images.decode_image(listed / name)
        assert status == "ok" and img.shape == rgb.shape, name
        assert np.abs(img.astype(int) - rgb).mean() < (0.01 if name.endswith(".png") else 3.0), name
    for src, skipped_here, skipped_before in ((listed, {**want_skipped, "missing": 1}, {}),
                                              (tmp_path / "faces_raw", {}, want_skipped)):
        parts = [(tmp_path / f"{src.name}_{i}.json", tmp_path / f"{src.name}_{i}.npy") for i in range(2)]
        for i, (b, c) in enumerate(parts):
            faces.detect_shard(src, i, 2, face_cfg, b, c)
        s = faces.gather(src, [b for b, _ in parts], [c for _, c in parts], tmp_path / f"faces_{src.name}",
                         tmp_path / f"faces_{src.name}.json", face_cfg, "test")
        assert s == json.loads((tmp_path / f"faces_{src.name}.json").read_text())
        assert s["images_decoded"] == len(good) and s["skipped"] == skipped_here
        assert s["skipped_at_ingest"] == skipped_before
        assert s["images_seen"] == s["images_decoded"] + s["skipped_total"]  # nothing dropped silently
        assert s["images_with_faces"] == len(good)  # the astronaut, found in every decoded copy
