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


def fake_cifar10_download(root, arrays, monkeypatch) -> str:
    """A CIFAR-10 download folder in torchvision's pickle layout (cifar-10-batches-py/, data_batch_1..5 in the
    official order, test_batch, batches.meta) holding ``arrays`` (x_train, y_train, x_test, y_test, class_names);
    the md5 checks are patched to pass (our files are not the official ones). Returns the root as a string."""
    import torchvision.datasets.cifar as tv_cifar

    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    to_rows = lambda x: x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # noqa: E731 (N,32,32,3) -> (N, 3072) CHW
    parts = np.array_split(np.arange(len(arrays["x_train"])), len(tv_cifar.CIFAR10.train_list))
    for (f, _), part in zip(tv_cifar.CIFAR10.train_list, parts):
        (base / f).write_bytes(pickle.dumps({"data": to_rows(arrays["x_train"][part]),
                                             "labels": arrays["y_train"][part].tolist()}))
    (base / "test_batch").write_bytes(pickle.dumps({"data": to_rows(arrays["x_test"]),
                                                   "labels": arrays["y_test"].tolist()}))
    (base / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in arrays["class_names"]]}))
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_download)  # must not be needed
    monkeypatch.setattr(download, "md5_ok", lambda *a, **k: True)
    return str(root)


@pytest.mark.shared_data
def test_cifar10_loader_matches_the_official_arrays(shared_data, tmp_path, monkeypatch):
    """The torchvision CIFAR-10 pickle layout -> our NHWC arrays, checked on real CIFAR-10 images."""
    ref = np.load(shared_data / "cifar10" / "cifar10_subset.npz")
    root = fake_cifar10_download(tmp_path / "c", ref, monkeypatch)
    meta = ingest.ingest("cifar10", {"source": "download", "path": root}, tmp_path / "out", seed=0)
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


# --- official subsets (train_images / test_images) and the npz source (cifar10, svhn) --------------------------


def official_arrays(n_train: int, n_test: int, seed: int = 0, index: bool = True) -> dict[str, np.ndarray]:
    """Random CIFAR-10-shaped arrays as an npz source holds them (with train_index/test_index = 0..N-1 by default)."""
    rng = np.random.default_rng(seed)
    out = {"x_train": rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
           "y_train": rng.integers(0, 10, n_train).astype(np.int64),
           "x_test": rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
           "y_test": rng.integers(0, 10, n_test).astype(np.int64),
           "class_names": np.array(ingest.CIFAR10_CLASSES)}
    if index:
        out |= {"train_index": np.arange(n_train), "test_index": np.arange(n_test)}
    return out


def subset_cfg(source: str, path, train: int = 0, test: int = 0) -> dict:
    return {"source": source, "path": str(path), "train_images": train, "test_images": test}


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_npz_source_keeps_the_first_n_official_images_and_records_the_subset(tmp_path, name):
    arrays = official_arrays(30, 12)
    npz = tmp_path / "official.npz"
    np.savez(npz, **arrays)
    meta = ingest.ingest(name, subset_cfg("npz", npz, train=20, test=5), tmp_path / "out", seed=0)
    assert meta["splits"] == {"train": 20, "test": 5} and meta["stand_in"] is None and meta["n_classes"] == 10
    assert meta["subset"] == {"train_images": 20, "test_images": 5, "order": "official"}
    assert "the first 20 train images and the first 5 test images, in the official order" in meta["source"]
    assert meta["class_names"] == list(ingest.CIFAR10_CLASSES)
    assert meta["provenance"]["inputs"]["npz"] == {str(npz): io.checksum(npz)}  # "sha256:<hex>"
    assert io.read_meta(tmp_path / "out")["subset"] == meta["subset"]
    io.check_dataset(tmp_path / "out")
    for split, n in (("train", 20), ("test", 5)):
        x, y = io.read_dataset(tmp_path / "out", split)
        assert np.array_equal(x, arrays[f"x_{split}"][:n]) and np.array_equal(y, arrays[f"y_{split}"][:n])
    whole = ingest.ingest(name, subset_cfg("npz", npz), tmp_path / "whole", seed=0)  # 0 = every row of the file
    assert whole["splits"] == {"train": 30, "test": 12}
    assert whole["subset"] == {"train_images": 30, "test_images": 12, "order": "official"}  # not the whole split


def test_download_keeps_the_first_n_official_images_and_records_the_subset(tmp_path, monkeypatch):
    """The same first N from the torchvision-format CIFAR-10 download as from an npz of it: identical arrays."""
    arrays = official_arrays(40, 10)
    root = fake_cifar10_download(tmp_path / "dl", arrays, monkeypatch)
    meta = ingest.ingest("cifar10", subset_cfg("download", root, train=23), tmp_path / "out", seed=0)
    assert meta["splits"] == {"train": 23, "test": 10}
    assert meta["subset"] == {"train_images": 23, "test_images": 10, "order": "official"}
    assert "the first 23 train images" in meta["source"] and "torchvision.datasets.CIFAR10" in meta["source"]
    x, y = io.read_dataset(tmp_path / "out", "train")
    assert np.array_equal(x, arrays["x_train"][:23]) and np.array_equal(y, arrays["y_train"][:23])
    npz = tmp_path / "official.npz"
    np.savez(npz, **arrays)
    from_npz = ingest.ingest("cifar10", subset_cfg("npz", npz, train=23), tmp_path / "npz", seed=0)
    assert from_npz["subset"] == meta["subset"]
    for split in ("train", "test"):
        for a, b in zip(io.read_dataset(tmp_path / "out", split), io.read_dataset(tmp_path / "npz", split)):
            assert np.array_equal(a, b)


def test_whole_official_split_is_recorded_as_null(tmp_path, monkeypatch):
    """A split that holds every official image (sizes as torchvision's CIFAR-10) is recorded as null: the whole."""
    monkeypatch.setitem(ingest.OFFICIAL_SIZES, "cifar10", {"train": 40, "test": 10})
    arrays = official_arrays(40, 10)
    root = fake_cifar10_download(tmp_path / "dl", arrays, monkeypatch)
    meta = ingest.ingest("cifar10", subset_cfg("download", root, test=4), tmp_path / "out", seed=0)
    assert meta["subset"] == {"train_images": None, "test_images": 4, "order": "official"}
    assert "the whole train split and the first 4 test images" in meta["source"]
    whole = ingest.ingest("cifar10", subset_cfg("download", root), tmp_path / "whole", seed=0)
    assert whole["subset"] == {"train_images": None, "test_images": None, "order": "official"}
    assert "the whole official train and test splits" in whole["source"]


def test_svhn_download_keeps_the_first_n(tmp_path, monkeypatch):
    import scipy.io
    import torchvision.datasets.svhn as tv_svhn

    rng = np.random.default_rng(1)
    root = tmp_path / "s"
    root.mkdir()
    want = {}
    for split, n in (("train", 9), ("test", 7)):
        imgs, digits = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10
        scipy.io.savemat(root / tv_svhn.SVHN.split_list[split][1],
                         {"X": imgs.transpose(1, 2, 3, 0), "y": np.where(digits == 0, 10, digits)[:, None]})
        want[split] = imgs, digits
    monkeypatch.setattr(tv_svhn, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_svhn, "download_url", lambda *a, **k: None)
    monkeypatch.setattr(download, "md5_ok", lambda *a, **k: True)
    meta = ingest.ingest("svhn", subset_cfg("download", root, train=4, test=7), tmp_path / "out", seed=0)
    assert meta["splits"] == {"train": 4, "test": 7}
    assert meta["subset"] == {"train_images": 4, "test_images": 7, "order": "official"}
    x, y = io.read_dataset(tmp_path / "out", "train")
    assert np.array_equal(x, want["train"][0][:4]) and np.array_equal(y, want["train"][1][:4])
    with pytest.raises(download.DataError, match=r"'data\.svhn\.test_images': 8 is larger than the test split.*"
                                                 r"holds 7 images"):
        ingest.ingest("svhn", subset_cfg("download", root, test=8), tmp_path / "big", seed=0)


@pytest.mark.parametrize("setting", ["train_images", "test_images"])
def test_too_large_n_is_refused_naming_the_key_and_the_split_size(tmp_path, monkeypatch, setting):
    arrays = official_arrays(30, 12)
    npz = tmp_path / "official.npz"
    np.savez(npz, **arrays)
    size = 30 if setting == "train_images" else 12
    cfg = {**subset_cfg("npz", npz), setting: size + 1}
    with pytest.raises(download.DataError, match=rf"'data\.cifar10\.{setting}': {size + 1} is larger than the "
                                                 rf".*holds {size} images; allowed values: 0 \(all\) to {size}"):
        ingest.ingest("cifar10", cfg, tmp_path / "out", seed=0)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # nothing half-built left
    root = fake_cifar10_download(tmp_path / "dl", arrays, monkeypatch)
    with pytest.raises(download.DataError, match=rf"'data\.cifar10\.{setting}': {size + 1} is larger.*{size} "
                                                 "images"):
        ingest.ingest("cifar10", {**cfg, "source": "download", "path": root}, tmp_path / "out", seed=0)


@pytest.mark.parametrize("name", ["cifar10", "svhn"])
def test_demo_source_refuses_a_subset_naming_the_key(tmp_path, name):
    with pytest.raises(download.DataError, match=rf"'data\.{name}\.train_images': 5 .*demo.*set it to 0"):
        ingest.ingest(name, subset_cfg("demo", "unused", train=5), tmp_path / "out", seed=0)
    with pytest.raises(download.DataError, match=rf"'data\.{name}\.test_images': -1 is not allowed"):
        ingest.ingest(name, subset_cfg("npz", "unused", test=-1), tmp_path / "out", seed=0)
    assert "subset" not in ingest.ingest(name, subset_cfg("demo", "unused"), tmp_path / "ok", seed=0)


def _bad(arrays: dict, **changes) -> dict:
    out = {k: v for k, v in arrays.items() if k not in changes}
    return out | {k: v for k, v in changes.items() if v is not None}


@pytest.mark.parametrize("name, change, match", [
    ("cifar10", {"x_train": "float"}, r"'x_train' is float32 \[6, 32, 32, 3\]; expected uint8 \[N, 32, 32, 3\]"),
    ("cifar10", {"x_test": "nchw"}, r"'x_test' is uint8 \[4, 3, 32, 32\]; expected uint8 \[N, 32, 32, 3\]"),
    ("cifar10", {"x_train": "small"}, r"'x_train' is uint8 \[6, 28, 28, 3\]"),
    ("cifar10", {"y_train": "ten"}, r"'y_train' holds labels 0\.\.10; expected 0\.\.9"),
    ("svhn", {"y_test": "ten"}, r"'y_test' holds labels 0\.\.10; expected 0\.\.9 \(SVHN digit 0 is label 0"),
    ("cifar10", {"y_test": "negative"}, r"'y_test' holds labels -1\.\.\d"),
    ("cifar10", {"y_train": "short"}, r"'y_train' is int64 \[5\]; expected integer labels of shape \[6\]"),
    ("cifar10", {"y_train": "float"}, r"'y_train' is float64 \[6\]; expected integer labels"),
    ("cifar10", {"y_test": None}, r"'y_test' is missing; the file holds"),
    ("cifar10", {"train_index": "short"}, r"'train_index' is int64 \[5\]; expected the official index"),
    ("cifar10", {"test_index": "large"}, r"'test_index' holds indices 0\.\.10000; the official test split has "
                                         r"10000 images"),
    ("cifar10", {"class_names": "few"}, r"'class_names' is <U\d+ \[3\]; expected 10 strings"),
])
def test_bad_npz_is_refused_naming_the_file_and_the_array(tmp_path, name, change, match):
    arrays = official_arrays(6, 4)
    (k, how), = change.items()
    a = arrays.get(k)
    bad_value = None if how is None else {
        "float": lambda: a.astype(np.float32 if k.startswith("x") else np.float64),
        "nchw": lambda: np.ascontiguousarray(a.transpose(0, 3, 1, 2)),
        "small": lambda: a[:, :28, :28],
        "ten": lambda: np.where(np.arange(len(a)) == 0, 10, 0),
        "negative": lambda: np.where(np.arange(len(a)) == 0, -1, a),
        "short": lambda: a[:-1],
        "large": lambda: np.where(np.arange(len(a)) == 0, 10000, 0) + np.zeros(len(a), np.int64),
        "few": lambda: a[:3],
    }[how]()
    npz = tmp_path / "bad.npz"
    np.savez(npz, **_bad(arrays, **{k: bad_value}))
    with pytest.raises(download.DataError, match=match) as e:
        ingest.ingest(name, subset_cfg("npz", npz), tmp_path / "out", seed=0)
    assert str(npz) in str(e.value) and f"'data.{name}.path'" in str(e.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_npz_that_is_missing_or_not_an_npz_is_named(tmp_path):
    with pytest.raises(download.DataError, match=r"'data\.cifar10\.path': .*missing\.npz is not a file"):
        ingest.ingest("cifar10", subset_cfg("npz", tmp_path / "missing.npz"), tmp_path / "out", seed=0)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"<html>403</html>")
    with pytest.raises(download.DataError, match=r"junk\.npz .*'data\.cifar10\.path'.* cannot be read as an \.npz"):
        ingest.ingest("cifar10", subset_cfg("npz", junk), tmp_path / "out", seed=0)
    objects = tmp_path / "objects.npz"
    np.savez(objects, **(official_arrays(6, 4) | {"y_train": np.array([1, "a", None, 0, 0, 0], dtype=object)}))
    with pytest.raises(download.DataError, match="cannot be read as an .npz"):  # pickles are never loaded
        ingest.ingest("cifar10", subset_cfg("npz", objects), tmp_path / "out", seed=0)


def test_npz_rows_not_in_official_order_are_recorded_as_such(tmp_path):
    """train_index/test_index other than 0..N-1: the first N rows of the file are kept, their official indices
    recorded, and meta says they are not the official first N; without index arrays the order is unknown."""
    arrays = official_arrays(8, 4)
    arrays["train_index"] = np.array([5, 0, 1, 2, 3, 4, 6, 7])
    npz = tmp_path / "shuffled.npz"
    np.savez(npz, **arrays)
    meta = ingest.ingest("cifar10", subset_cfg("npz", npz, train=3), tmp_path / "out", seed=0)
    assert meta["subset"] == {"train_images": 3, "test_images": 4, "order": "file",
                              "official_index": {"train": [5, 0, 1], "test": [0, 1, 2, 3]}}
    assert "NOT in the official order" in meta["source"]
    assert np.array_equal(io.read_dataset(tmp_path / "out", "train")[0], arrays["x_train"][:3])
    plain = tmp_path / "plain.npz"
    np.savez(plain, **{k: v for k, v in arrays.items() if not k.endswith("_index")})
    meta = ingest.ingest("cifar10", subset_cfg("npz", plain), tmp_path / "plain", seed=0)
    assert meta["subset"] == {"train_images": 8, "test_images": 4, "order": "file"}
    assert "no train_index/test_index" in meta["source"] and "unknown" in meta["source"]


@pytest.mark.shared_data
def test_shared_cifar10_subset_npz_is_the_official_first_4000_and_1000(shared_data, tmp_path):
    npz = shared_data / "cifar10" / "cifar10_subset.npz"
    ref = np.load(npz)
    meta = ingest.ingest("cifar10", subset_cfg("npz", npz), tmp_path / "out", seed=0)
    assert meta["splits"] == {"train": 4000, "test": 1000}
    assert meta["subset"] == {"train_images": 4000, "test_images": 1000, "order": "official"}
    assert meta["class_names"] == [str(c) for c in ref["class_names"]] and meta["class_names"][0] == "airplane"
    assert meta["provenance"]["inputs"]["npz"] == {str(npz): "sha256:" + io.sha256_file(npz)}
    for split in ("train", "test"):
        x, y = io.read_dataset(tmp_path / "out", split)
        assert np.array_equal(y, ref[f"y_{split}"]) and np.array_equal(x, ref[f"x_{split}"])
    assert io.read_dataset(tmp_path / "out", "train")[1][:5].tolist() == [6, 9, 9, 4, 1]
    first = ingest.ingest("cifar10", subset_cfg("npz", npz, train=400, test=100), tmp_path / "first", seed=0)
    assert first["subset"] == {"train_images": 400, "test_images": 100, "order": "official"}
    assert np.array_equal(io.read_dataset(tmp_path / "first", "train")[1], ref["y_train"][:400])


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
