"""dcgan_repro.data.demo: the demo stand-ins follow the dataset contract, are deterministic from the seed, and hold
what the curation stages must find (planted near-duplicates, planted faces, broken files).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from dcgan_repro import images, io
from dcgan_repro.data import demo, ingest

CONTRACT_KEYS = {"name", "splits", "image_shape", "n_classes", "class_names", "source", "stand_in", "provenance"}
DEMO_CFG = {
    "mnist": {"source": "demo", "path": "unused"},
    "cifar10": {"source": "demo", "path": "unused"},
    "svhn": {"source": "demo", "path": "unused"},
    "lsun_raw": {"source": "demo", "path": "unused", "category": "bedroom", "image_size": 64, "max_images": 0},
    "imagenet": {"source": "demo", "path": None, "image_size": 32, "max_images": 0},
    "faces_raw": {"source": "demo", "path": "unused", "max_images": 0, "link": "hardlink"},
}
# name -> (splits, image shape, n_classes)
DEMO_EXPECT = {
    "mnist": ({"train": 1497, "test": 300}, [28, 28, 1], 10),
    "cifar10": ({"train": 2000, "test": 500}, [32, 32, 3], 10),
    "svhn": ({"train": 1497, "test": 300}, [32, 32, 3], 10),
    "lsun_raw": ({"train": 1501}, [64, 64, 3], 0),
    "imagenet": ({"train": 1500}, [32, 32, 3], 15),
}
HAAR = dict(scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory):
    """Every demo dataset, ingested once: name -> folder."""
    root = tmp_path_factory.mktemp("demo")
    for name, cfg in DEMO_CFG.items():
        ingest.ingest(name, cfg, root / name, seed=0)
    return {name: root / name for name in DEMO_CFG}


# --- demo stand-ins ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DEMO_EXPECT))
def test_demo_arrays_follow_the_contract(demo_dirs, name):
    meta = io.read_meta(demo_dirs[name])
    splits, shape, n_classes = DEMO_EXPECT[name]
    assert CONTRACT_KEYS <= set(meta) and meta["name"] == name
    assert meta["splits"] == splits and meta["image_shape"] == shape and meta["n_classes"] == n_classes
    assert "standing in for" in meta["stand_in"] and meta["provenance"]["seed"] == 0
    assert (meta["class_names"] is None) == (n_classes == 0)
    for split, n in splits.items():
        x, y = io.read_dataset(demo_dirs[name], split)
        assert x.dtype == np.uint8 and x.shape == (n, *shape)
        assert y.dtype == np.int64 and y.shape == (n,)
        if n_classes:
            assert set(np.unique(y)) == set(range(n_classes))
        else:
            assert (y == -1).all()
        assert 20 < x.mean() < 235 and x.std() > 20  # real image content, not blank


def test_demo_mnist_is_load_digits_upscaled_and_stratified(demo_dirs):
    from sklearn.datasets import load_digits

    digits = load_digits()
    xtr, ytr = io.read_dataset(demo_dirs["mnist"], "train")
    xte, yte = io.read_dataset(demo_dirs["mnist"], "test")
    assert np.bincount(yte).min() >= 29 and np.bincount(yte).max() <= 31  # stratified 300
    assert sorted([*ytr, *yte]) == sorted(digits.target)
    assert not np.asarray(xtr)[:, :4].any() and not np.asarray(xtr)[:, -4:].any()  # MNIST-like 4 px frame
    # every training image, shrunk back to 8x8, matches some load_digits image of the same label
    small = np.stack([cv2.resize(np.asarray(im[4:24, 4:24, 0], np.float32), (8, 8), interpolation=cv2.INTER_AREA)
                      for im in xtr[:50]]) * 16 / 255
    dist = ((small[:, None] - digits.images[None]) ** 2).sum(axis=(2, 3))  # (50, 1797)
    assert (digits.target[dist.argmin(1)] == ytr[:50]).all()
    assert dist.min(1).max() < 0.1 * dist.mean()


def test_demo_is_deterministic_from_the_seed(demo_dirs, tmp_path):
    again = ingest.ingest("svhn", DEMO_CFG["svhn"], tmp_path / "a", seed=0)
    other = ingest.ingest("svhn", DEMO_CFG["svhn"], tmp_path / "b", seed=1)
    assert again["splits"] == other["splits"]
    x0 = np.asarray(io.read_dataset(demo_dirs["svhn"], "train")[0])
    assert np.array_equal(x0, io.read_dataset(tmp_path / "a", "train")[0])
    assert not np.array_equal(x0, io.read_dataset(tmp_path / "b", "train")[0])


def test_demo_lsun_planted_duplicates_are_the_near_duplicates(demo_dirs):
    meta = io.read_meta(demo_dirs["lsun_raw"])
    pairs = np.asarray(meta["planted_duplicates"])
    kinds = meta["planted_duplicate_kinds"]
    assert len(pairs) == 136 and set(kinds) == set(demo.DUPLICATE_KINDS)
    assert len(set(pairs[:, 0])) == len(pairs) and not set(pairs[:, 0]) & set(pairs[:, 1])
    x = np.asarray(io.read_dataset(demo_dirs["lsun_raw"], "train")[0])
    for (d, o), kind in zip(pairs, kinds):
        diff = x[d].astype(int) - x[o].astype(int)
        if kind == "exact":
            assert not diff.any()
        elif kind == "brightness":
            assert 10 <= abs(np.median(diff)) <= 30
        elif kind == "jpeg":
            assert 0 < np.abs(diff).mean() < 12  # measured max 10.4 (quality 50 on fine texture)
        else:  # shift: content moved by 1-2 px; aligned at the best offset it matches (measured max 6.5)
            best = min(np.abs(x[d, 2 + dy:62 + dy, 2 + dx:62 + dx].astype(int) - x[o, 2:62, 2:62]).mean()
                       for dy in range(-2, 3) for dx in range(-2, 3))
            assert 0 < best < 8 and np.abs(diff).mean() > 0
    # on 16x16 thumbnails (brightness removed), each planted duplicate's nearest neighbour is its original, and
    # no unplanted pair is as close as the typical planted one: the dedup stage has exactly these to find
    thumbs = np.stack([cv2.resize(im, (16, 16), interpolation=cv2.INTER_AREA) for im in x]).reshape(len(x), -1)
    t = thumbs.astype(np.float32)
    t -= t.mean(1, keepdims=True)
    d2 = (t * t).sum(1)[:, None] + (t * t).sum(1)[None] - 2 * t @ t.T
    np.fill_diagonal(d2, np.inf)
    assert (d2[pairs[:, 0]].argmin(1) == pairs[:, 1]).mean() > 0.95
    planted = np.zeros_like(d2, dtype=bool)
    planted[pairs[:, 0], pairs[:, 1]] = planted[pairs[:, 1], pairs[:, 0]] = True
    typical = np.median(d2[planted])
    assert (d2[~planted] < typical).sum() / 2 <= 2


def test_demo_faces_files_manifest_and_detector(demo_dirs):
    folder = demo_dirs["faces_raw"]
    meta = io.read_meta(folder)
    names = (folder / "manifest.txt").read_text().splitlines()
    assert len(names) == meta["n_images"] == 40 and all((folder / n).is_file() for n in names)
    assert {Path(n).suffix for n in names} == {".jpg", ".png"}
    empty, truncated = meta["planted_broken"]
    assert (folder / empty).stat().st_size == 0
    assert images.decode_image(folder / truncated, pillow_only=True) == (None, "truncated")
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = {"astronaut": [], "lfw": []}
    for name, boxes in meta["planted_faces"].items():
        img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        # minSize below the smallest planted face finds the same boxes as minSize 24, with fewer scales to scan
        small = int(0.6 * min(b[2] for b in boxes))
        dets = cascade.detectMultiScale(img, **{**HAAR, "minSize": (small, small)})
        for x, y, w, h, src in boxes:
            assert 0 <= x and x + w <= img.shape[1] and 0 <= y and y + h <= img.shape[0]
            hit = any(abs(dx - x) < w / 3 and abs(dy - y) < h / 3 and 0.6 < dw / w < 1.6 for dx, dy, dw, _ in dets)
            found["astronaut" if src == "astronaut" else "lfw"].append(hit)
    assert len(found["astronaut"]) == 14 and len(found["lfw"]) == 18
    assert np.mean(found["astronaut"]) >= 0.9  # measured: 14 / 14
    assert np.mean(found["lfw"]) >= 0.7  # measured: 18 / 18 (LFW 25x25 crops enlarged to 90-160 px)
    for name in meta["faceless"]:
        img = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        assert len(cascade.detectMultiScale(img, **HAAR)) == 0, name


def test_astronaut_face_box_is_what_the_cascade_finds():
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    gray = cv2.cvtColor(demo.demo_photo("astronaut"), cv2.COLOR_RGB2GRAY)
    assert [tuple(map(int, b)) for b in cascade.detectMultiScale(gray, **HAAR)] == [demo.ASTRONAUT_FACE]


def test_every_dataset_has_a_demo_builder_and_its_own_random_stream():
    assert tuple(demo.BUILDERS) == ingest.DATASETS
    assert demo._DEMO_SUBSEED == {name: i for i, name in enumerate(ingest.DATASETS)}  # the streams demo sets use


def test_demo_photos_all_load():
    for name in demo.DEMO_POOL:
        img = demo.demo_photo(name)
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and min(img.shape[:2]) >= 300, name
    assert demo.demo_photo("motorcycle_left").shape == (500, 741, 3)
