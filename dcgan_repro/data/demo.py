"""Demo stand-ins for every dataset (``data.<key>.source: demo``): offline, small, deterministic from the seed.

Real images shipped inside scikit-learn and scikit-image stand in for the paper's data, so the whole workflow runs
without internet in minutes. ``meta["stand_in"]`` says plainly what stood in; every table and figure repeats it.

- ``mnist``: load_digits (real handwritten digits), 8x8 upscaled to 28x28x1; stratified split 1497 / 300.
- ``svhn``: the same digits drawn in colour on random 32x32 backgrounds with partial neighbours.
- ``cifar10``: 32x32 crops of 10 shipped photos, one class per photo.
- ``imagenet``: crops of 15 shipped photos at ``image_size``, labelled by photo.
- ``lsun_raw``: crops of the same photos with 10 % planted near-duplicates (:data:`DUPLICATE_KINDS`) for the
  dedup stage to find (``meta["planted_duplicates"]``).
- ``faces_raw``: the astronaut's and LFW-subset faces pasted on face-free photos, as JPEG/PNG files with known
  boxes (``meta["planted_faces"]``), face-free images and two broken files for the face stage.

:data:`BUILDERS` maps each dataset to its builder; :func:`dcgan_repro.data.ingest.ingest` calls it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from dcgan_repro import dedup_planting as planting
from dcgan_repro import io
from dcgan_repro.data.download import DataError

# Demo CIFAR-10: one class per shipped colour photo.
DEMO_CIFAR_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "retina", "china", "flower", "motorcycle_left")
# Grayscale photos made colour (gray replicated to 3 channels) widen the LSUN / ImageNet demo pools. Pure
# textures (grass, gravel, brick) are left out: crops of them look alike without being duplicates.
DEMO_GRAY_PHOTOS = ("camera", "coins", "moon", "cell", "clock")
DEMO_POOL = DEMO_CIFAR_PHOTOS + DEMO_GRAY_PHOTOS
# Astronaut's face box (x, y, w, h) as OpenCV's haarcascade_frontalface_default finds it (scaleFactor 1.1,
# minNeighbors 5) in skimage.data.astronaut(); tests/test_data_demo.py re-detects it.
ASTRONAUT_FACE = (177, 66, 95, 95)
# Face-demo backgrounds: shipped photos without people in which that cascade finds no face at 320-640 px (coins,
# flower, cell and immunohistochemistry give false detections), so the planted boxes are the only faces.
FACE_BACKGROUNDS = ("coffee", "chelsea", "rocket", "hubble_deep_field", "retina", "china", "motorcycle_left",
                    "moon", "clock")
# Keeps the datasets' random streams apart: np.random.default_rng([seed, subseed]). Fixed numbers (each dataset's
# place in ingest.DATASETS): changing one changes that demo set.
_DEMO_SUBSEED = {"mnist": 0, "cifar10": 1, "svhn": 2, "lsun_raw": 3, "imagenet": 4, "faces_raw": 5}


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, _DEMO_SUBSEED[name]])


@lru_cache(maxsize=None)
def demo_photo(name: str) -> np.ndarray:
    """A photo shipped with scikit-image or scikit-learn as uint8 (H, W, 3) RGB (gray replicated to colour)."""
    import skimage
    import skimage.data
    import skimage.io
    from sklearn.datasets import load_sample_images

    if name in ("china", "flower"):
        sample = load_sample_images()
        img = sample.images[[Path(f).stem for f in sample.filenames].index(name)]
    elif name == "motorcycle_left":  # shipped as a file, not a skimage.data function
        path = Path(skimage.data.__file__).parent / "motorcycle_left.png"
        if not path.is_file():
            raise DataError(f"demo photo {path} is missing from this scikit-image install "
                            f"({skimage.__version__}); reinstall scikit-image as pinned in requirements.txt")
        img = skimage.io.imread(path)
    else:
        img = getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)  # (H, W) -> (H, W, 3)
    img = img[..., :3]  # drop alpha if any
    if img.dtype != np.uint8 or img.ndim != 3:
        raise DataError(f"demo photo {name}: expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
    img = np.ascontiguousarray(img)
    img.setflags(write=False)  # cached and shared: callers must copy before drawing on it
    return img


def _draw_crops(rng: np.random.Generator, photo: np.ndarray, n: int, frac: tuple[float, float],
                min_side: int, distinct: bool, min_std: float = 12.0) -> np.ndarray:
    """``n`` square crops (x, y, side) of an (H, W, 3) photo, side uniform in ``frac`` of min(H, W) (at least
    ``min_side``). With ``distinct`` no two crops are near-duplicates of each other (centres closer than a
    quarter side with sides within 25 %). Flat crops (grey-level std below ``min_std``: black retina corners,
    empty sky) are redrawn, so the only near-duplicates in a demo set are the planted ones."""
    h, w = photo.shape[:2]
    f = max(1, min(h, w) // 128)  # std is checked on a thumbnail
    thumb = photo[::f, ::f].mean(axis=2)  # (H/f, W/f) grey
    m = min(h, w)
    lo, hi = max(min_side, int(frac[0] * m)), max(min_side, int(frac[1] * m))
    out = np.zeros((n, 3), dtype=np.int64)
    k = tries = 0
    while k < n:
        tries += 1
        if tries > 200 * n:
            raise DataError(f"cannot draw {n} distinct crops from a {h}x{w} photo")
        side = int(rng.integers(lo, hi + 1))
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if thumb[y // f:(y + side) // f, x // f:(x + side) // f].std() < min_std:
            continue
        prev = out[:k] if distinct else out[:0]
        close = ((np.abs(prev[:, 0] + prev[:, 2] / 2 - x - side / 2) < side / 4)
                 & (np.abs(prev[:, 1] + prev[:, 2] / 2 - y - side / 2) < side / 4)
                 & (np.maximum(prev[:, 2], side) < 1.25 * np.minimum(prev[:, 2], side)))
        if not close.any():
            out[k] = (x, y, side)
            k += 1
    return out


def _photo_crops(rng: np.random.Generator, names: tuple[str, ...], per_photo: int, size: int,
                 frac: tuple[float, float], distinct: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``per_photo`` distinct crops of each photo: images (N, size, size, 3), labels (N,), crops (N, 4)
    as (photo index, x, y, side)."""
    xs, ys, params = [], [], []
    for label, name in enumerate(names):
        photo = demo_photo(name)
        for x, y, side in _draw_crops(rng, photo, per_photo, frac, min_side=size // 2, distinct=distinct):
            xs.append(planting.crop(photo, x, y, side, size))
            ys.append(label)
            params.append((label, x, y, side))
    return np.stack(xs), np.asarray(ys, dtype=np.int64), np.asarray(params, dtype=np.int64)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn load_digits: 1797 real handwritten digits, float (N, 8, 8) in 0..16, labels (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32), d.target.astype(np.int64)


def _split_digits(y: np.ndarray, seed: int, test: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train / test index split (sklearn)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(np.arange(len(y)), test_size=test, stratify=y, random_state=seed)


def _demo_mnist(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """load_digits as MNIST-like 28x28x1: each 8x8 digit upscaled bicubically to 20x20 and zero-padded by 4 px,
    the 20x20 box in a 28x28 frame of MNIST. Stratified seeded split, 1497 train / 300 test."""
    imgs, y = _digits()
    big = np.stack([cv2.resize(im * (255 / 16), (20, 20), interpolation=cv2.INTER_CUBIC) for im in imgs])  # (N,20,20)
    x = np.pad(np.clip(np.rint(big), 0, 255).astype(np.uint8), ((0, 0), (4, 4), (4, 4)))[..., None]  # (N,28,28,1)
    tr, te = _split_digits(y, seed, test=300)
    io.write_dataset(stage, "train", x[tr], y[tr])
    io.write_dataset(stage, "test", x[te], y[te])
    meta = dict(splits={"train": len(tr), "test": len(te)}, image_shape=(28, 28, 1), n_classes=10,
                class_names=[str(i) for i in range(10)],
                source="sklearn.datasets.load_digits: 8x8 (0-16) scaled to 0-255, bicubic 8x8 -> 20x20, zero "
                       "padding to 28x28; stratified seeded split 1497 / 300",
                stand_in="scikit-learn load_digits (real handwritten digits, 8x8 upscaled to 28x28) standing in "
                         "for MNIST")
    return meta, {}


def _svhn_render(rng: np.random.Generator, digit: np.ndarray, others: np.ndarray) -> np.ndarray:
    """One 32x32 house-number-like crop: a digit (8x8, 0..16) in a random colour on a random colour gradient,
    with parts of neighbouring digits at the sides (as SVHN's crops have), sensor noise. -> (32, 32, 3) uint8."""
    bg0, bg1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, 32)[:, None, None]  # (32, 1, 1) vertical gradient
    bg = (bg0 * (1 - t) + bg1 * t) * np.ones((1, 32, 1))  # (32, 32, 3)
    lum = bg.mean()
    fg = rng.uniform(0, 255, 3)
    fg = np.clip(fg + (90 if fg.mean() >= lum else -90), 0, 255)  # keep the digit readable
    mask = np.zeros((32, 32), np.float32)
    h = int(rng.integers(20, 29))  # digit height in px
    w = max(10, int(h * rng.uniform(0.6, 0.8)))
    cx, cy = 16 + int(rng.integers(-2, 3)), 16 + int(rng.integers(-2, 3))
    placements = [(digit, cx)]
    for side in (-1, 1):  # neighbouring digits, partly visible
        if rng.random() < 0.5:
            placements.append((others[int(rng.integers(len(others)))], cx + side * int(w * 1.15)))
    for d, x_c in placements:
        glyph = np.clip(cv2.resize(d / 16, (w, h), interpolation=cv2.INTER_CUBIC), 0, 1)  # (h, w)
        x0, y0 = x_c - w // 2, cy - h // 2
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, 32), min(y0 + h, 32)
        if xa < xb and ya < yb:
            mask[ya:yb, xa:xb] = np.maximum(mask[ya:yb, xa:xb], glyph[ya - y0:yb - y0, xa - x0:xb - x0])
    img = bg * (1 - mask[..., None]) + fg * mask[..., None] + rng.normal(0, 4, (32, 32, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _demo_svhn(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """load_digits drawn as colour 32x32 house-number-like crops; stratified seeded split 1497 / 300."""
    rng = _rng(seed, "svhn")
    imgs, y = _digits()
    x = np.stack([_svhn_render(rng, im, imgs) for im in imgs])  # (N, 32, 32, 3)
    tr, te = _split_digits(y, seed, test=300)
    io.write_dataset(stage, "train", x[tr], y[tr])
    io.write_dataset(stage, "test", x[te], y[te])
    meta = dict(splits={"train": len(tr), "test": len(te)}, image_shape=(32, 32, 3), n_classes=10,
                class_names=[str(i) for i in range(10)],
                source="sklearn.datasets.load_digits: each digit bicubically enlarged to 20-28 px, in a random "
                       "colour on a random colour gradient with partial neighbour digits and noise, 32x32; "
                       "stratified seeded split 1497 / 300",
                stand_in="scikit-learn load_digits (real handwritten digits, drawn in colour on random 32x32 "
                         "backgrounds) standing in for SVHN")
    return meta, {}


def _demo_cifar10(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """10 classes = 10 shipped colour photos; each image a random square crop (side 15-70 % of the photo's short
    side) resized to 32x32; 200 train + 50 test per class, shuffled. Train and test crops come from the same
    photos (they may overlap), so accuracies on it are optimistic."""
    rng = _rng(seed, "cifar10")
    x, y, _ = _photo_crops(rng, DEMO_CIFAR_PHOTOS, 250, 32, frac=(0.15, 0.7))
    test = np.zeros(len(y), bool)
    for c in range(len(DEMO_CIFAR_PHOTOS)):
        test[rng.choice(np.flatnonzero(y == c), 50, replace=False)] = True
    for split, mask in (("train", ~test), ("test", test)):
        idx = rng.permutation(np.flatnonzero(mask))
        io.write_dataset(stage, split, x[idx], y[idx])
    meta = dict(splits={"train": int((~test).sum()), "test": int(test.sum())}, image_shape=(32, 32, 3),
                n_classes=10, class_names=list(DEMO_CIFAR_PHOTOS),
                source="random square crops (15-70 % of the short side, area-resized to 32x32) of 10 photos "
                       "shipped with scikit-image / scikit-learn, one class per photo; 200 train + 50 test each",
                stand_in="32x32 crops of 10 photos shipped with scikit-image / scikit-learn, labelled by photo "
                         "(10 classes), standing in for CIFAR-10")
    return meta, {}


def _demo_imagenet(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """100 random crops of each of the 15 shipped photos at image_size (1500 images), labelled by photo."""
    size = int(cfg["image_size"])
    rng = _rng(seed, "imagenet")
    x, y, _ = _photo_crops(rng, DEMO_POOL, 100, size, frac=(0.1, 0.7))
    idx = rng.permutation(len(y))
    io.write_dataset(stage, "train", x[idx], y[idx])
    meta = dict(splits={"train": len(y)}, image_shape=(size, size, 3), n_classes=len(DEMO_POOL),
                class_names=list(DEMO_POOL),
                source=f"random square crops (10-70 % of the short side) resized to {size}x{size} of 15 photos "
                       "shipped with scikit-image / scikit-learn (5 of them grayscale made colour)",
                stand_in=f"{size}x{size} crops of 15 photos shipped with scikit-image / scikit-learn standing in "
                         "for ImageNet-1k")
    return meta, {}


# The demo's planted duplicate kinds, cycled in this order: name -> operation and parameter range (documented in
# dcgan_repro.dedup_planting)
DUPLICATE_KINDS = {
    "exact": planting.Kind("exact"),
    "jpeg": planting.Kind("jpeg", 50, 85),
    "shift": planting.Kind("shift_xy", 1, 2, signs=(-1, 1)),
    "brightness": planting.Kind("offset", 12, 30, signs=(-1, 1)),
}


def _demo_lsun(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """~1500 crops at image_size of the 15 shipped photos, 10 % of them planted near-duplicates of others.

    Base: 91 mutually distinct random crops per photo (1365). Planted: 136 duplicates of distinct base images,
    cycling over :data:`DUPLICATE_KINDS`. Everything is shuffled; meta records ``planted_duplicates`` =
    [[dup_index, original_index], ...] and each one's kind.
    """
    size = int(cfg["image_size"])
    rng = _rng(seed, "lsun_raw")
    base, _, params = _photo_crops(rng, DEMO_POOL, 91, size, frac=(0.12, 0.6), distinct=True)
    n_dup = round(0.1 * len(base))
    originals = rng.choice(len(base), n_dup, replace=False)
    names = list(DUPLICATE_KINDS)
    kinds = [names[j % len(names)] for j in range(n_dup)]
    dups = []
    for kind, o in zip(kinds, originals):
        p, x, y, side = params[o]
        window = planting.Window(demo_photo(DEMO_POOL[p]), x, y, side)
        dups.append(planting.plant(DUPLICATE_KINDS[kind], base[o], rng, window))
    x = np.concatenate([base, np.stack(dups)])  # (N, size, size, 3): base then duplicates
    order = rng.permutation(len(x))  # new position i holds old image order[i]
    where = np.argsort(order)  # old index -> new position
    pairs = sorted([int(where[len(base) + j]), int(where[o])] for j, o in enumerate(originals))
    kind_of = {int(where[len(base) + j]): kinds[j] for j in range(n_dup)}
    io.write_dataset(stage, "train", x[order], None)
    meta = dict(splits={"train": len(x)}, image_shape=(size, size, 3),
                source=f"random square crops (12-60 % of the short side) resized to {size}x{size} of 15 photos "
                       f"shipped with scikit-image / scikit-learn; {n_dup} planted near-duplicates",
                stand_in=f"{size}x{size} crops of 15 photos shipped with scikit-image / scikit-learn, with "
                         f"{n_dup} planted near-duplicates, standing in for LSUN bedrooms",
                planted_duplicates=pairs, planted_duplicate_kinds=[kind_of[d] for d, _ in pairs],
                duplicate_kinds_note=planting.describe(DUPLICATE_KINDS) + " (operations and their parameters: "
                                                                          "dcgan_repro.dedup_planting)")
    return meta, {}


def _paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    canvas[y:y + patch.shape[0], x:x + patch.shape[1]] = patch


def _background(rng: np.random.Generator, long_side: int) -> np.ndarray:
    """A face-free shipped photo (:data:`FACE_BACKGROUNDS`) resized so its long side is ``long_side``."""
    name = FACE_BACKGROUNDS[int(rng.integers(len(FACE_BACKGROUNDS)))]
    photo = demo_photo(name)
    h, w = photo.shape[:2]
    s = long_side / max(h, w)
    return cv2.resize(photo, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA).copy()  # (h', w', 3)


def _place(rng: np.random.Generator, canvas_shape, side: int, taken: list[tuple[int, int, int, int]]):
    """A random top-left corner for a ``side`` square that overlaps none of ``taken`` (x, y, w, h)."""
    h, w = canvas_shape[:2]
    for _ in range(200):
        x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        if all(x + side <= a or a + c <= x or y + side <= b or b + d <= y for a, b, c, d in taken):
            return x, y
    raise DataError("demo faces: no room to paste a face")


def _demo_faces(*, cfg, stage: Path, seed: int, workers: int, key: str):
    """40 source images for the face stage, written as JPEG and PNG files with manifest.txt.

    - 14 with the astronaut's face (skimage.data.astronaut, its face box enlarged 2x as the pasted patch) at face
      sizes 80-200 px, 4 of them also holding an LFW face;
    - 14 with one LFW face (skimage.data.lfw_subset, the first 100 are faces: tight 25x25 grayscale crops,
      bicubically enlarged to 90-160 px);
    - 10 face-free photos;
    - 2 broken files: a zero-byte JPEG and a JPEG cut to half its bytes (for the face stage's bad-input path).
    Faces are pasted (hard edges) at random positions onto :data:`FACE_BACKGROUNDS` photos.
    ``meta["planted_faces"]`` maps each file to its face boxes [x, y, w, h, source].
    """
    import skimage.data

    rng = _rng(seed, "faces_raw")
    astro = demo_photo("astronaut")
    fx, fy, fw, fh = ASTRONAUT_FACE
    m = fw // 2
    astro_patch = astro[fy - m:fy + fh + m, fx - m:fx + fw + m]  # (2*95, 2*95, 3) face box enlarged 2x
    lfw = skimage.data.lfw_subset()[:100]  # (100, 25, 25) float in [0, 1]; first 100 are faces
    lfw_ids = rng.choice(100, 18, replace=False)
    astro_sizes = rng.permutation(np.linspace(80, 200, 14).round().astype(int))
    lfw_sizes = rng.integers(90, 161, 18)
    images: dict[str, np.ndarray] = {}
    planted: dict[str, list] = {}

    def add_astronaut(canvas, size, taken):
        patch = cv2.resize(astro_patch, (2 * size, 2 * size), interpolation=cv2.INTER_AREA)  # face side = size
        x, y = _place(rng, canvas.shape, 2 * size, taken)
        _paste(canvas, patch, x, y)
        taken.append((x, y, 2 * size, 2 * size))
        return [x + size // 2, y + size // 2, size, size, "astronaut"]

    def add_lfw(canvas, k, taken):
        size = int(lfw_sizes[k])
        face = cv2.resize((lfw[lfw_ids[k]] * 255).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
        face = np.repeat(np.clip(np.rint(face), 0, 255).astype(np.uint8)[..., None], 3, axis=2)  # (size, size, 3)
        x, y = _place(rng, canvas.shape, size, taken)
        _paste(canvas, face, x, y)
        taken.append((x, y, size, size))
        return [x, y, size, size, f"lfw_subset[{int(lfw_ids[k])}]"]

    for i in range(14):
        canvas, taken = _background(rng, 640), []
        boxes = [add_astronaut(canvas, int(astro_sizes[i]), taken)]
        if i < 4:
            boxes.append(add_lfw(canvas, 14 + i, taken))
        name = f"images/astronaut_{i:02d}.{'jpg' if i % 2 else 'png'}"
        images[name], planted[name] = canvas, boxes
    for i in range(14):
        canvas, taken = _background(rng, int(rng.integers(400, 641))), []
        name = f"images/lfw_{i:02d}.{'png' if i % 2 else 'jpg'}"
        images[name], planted[name] = canvas, [add_lfw(canvas, i, taken)]
    faceless = []
    for i in range(10):
        name = f"images/noface_{i:02d}.{'jpg' if i % 2 else 'png'}"
        images[name] = _background(rng, int(rng.integers(320, 641)))
        faceless.append(name)
    for name, img in images.items():
        params = [cv2.IMWRITE_JPEG_QUALITY, 92] if name.endswith(".jpg") else []
        ok, buf = cv2.imencode(Path(name).suffix, img[..., ::-1], params)  # RGB -> BGR for OpenCV
        (stage / name).parent.mkdir(parents=True, exist_ok=True)
        (stage / name).write_bytes(buf.tobytes())
    broken = ["images/broken_empty.jpg", "images/broken_truncated.jpg"]
    (stage / broken[0]).write_bytes(b"")
    whole = (stage / "images/lfw_00.jpg").read_bytes()
    (stage / broken[1]).write_bytes(whole[:len(whole) // 2])
    names = sorted([*images, *broken])
    io.write_text(stage / "manifest.txt", "".join(n + "\n" for n in names))
    meta = dict(splits={}, image_shape=None, n_images=len(names), manifest="manifest.txt",
                source="skimage.data.astronaut face and skimage.data.lfw_subset faces (25x25, bicubic to 90-160 "
                       "px) pasted onto photos shipped with scikit-image / scikit-learn; JPEG and PNG files",
                stand_in="the scikit-image astronaut face and 25x25 LFW-subset faces, upscaled and pasted on "
                         "shipped photos (40 files), standing in for the paper's 3M web images of 10K people",
                planted_faces=planted, faceless=faceless, planted_broken=broken)
    return meta, {}


# dataset name -> builder(cfg=, stage=, seed=, workers=, key=) -> (meta fields, inputs), as ingest.ingest calls it
BUILDERS: dict[str, Callable[..., tuple[dict, dict]]] = {
    "mnist": _demo_mnist, "cifar10": _demo_cifar10, "svhn": _demo_svhn, "lsun_raw": _demo_lsun,
    "imagenet": _demo_imagenet, "faces_raw": _demo_faces,
}
