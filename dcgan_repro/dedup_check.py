"""The dedup hash (Sec. 4.1.1) checked on real photos with a known truth (rule ``dedup_check``; the face
detector's check is :func:`dcgan_repro.faces.check`).

LSUN cannot be checked directly (the paper reports only an estimated false-positive rate "under 1 in 100"), so
the truth is planted: duplicates of known kinds (:data:`KINDS`, made by :mod:`dcgan_repro.dedup_planting`) are
  planted among 64x64 views of real photographs (each photo's full view and 5 crops whose windows are >= 8 px
  apart: near in content but different images, so a bucket holding two of them is a false merge). The hash of
  config ``dedup`` (autoencoder, threshold) is trained on the collection and scored: precision and recall of the
  removals against the planted truth (:func:`dcgan_repro.dedup.planted_scores`), the false-positive rate =
  wrongly removed / removed (the paper's quantity), recall by kind, the collision rate among crops of one photo,
  over several autoencoder seeds. Photos that repeat (a source set reusing another's image) are dropped first.

``benchmarks/eval_dedup.py`` uses the same functions to compare settings.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from dcgan_repro import dedup, io
from dcgan_repro.dedup_planting import WINDOW_OPS, Kind, Window, plant

log = logging.getLogger(__name__)

SIZE = 64  # side of the collection's images (the LSUN training size)
VIEWS_PER_PHOTO = 5  # crops per photo besides its full view
# Planted duplicate kinds: name -> operation and parameter (dcgan_repro.dedup_planting; crop4 is a 1.14x zoom)
KINDS = {
    "exact": Kind("exact"), "jpeg95": Kind("jpeg", 95), "jpeg85": Kind("jpeg", 85), "jpeg75": Kind("jpeg", 75),
    "jpeg50": Kind("jpeg", 50), "shift1": Kind("shift", 1), "shift2": Kind("shift", 2), "crop4": Kind("crop", 4),
    "bright0.9": Kind("gain", 0.9), "bright1.1": Kind("gain", 1.1), "plus20": Kind("offset", 20),
    "minus20": Kind("offset", 20, signs=(-1,)), "contrast0.8": Kind("contrast", 0.8),
}
REPEAT_MAX_DIFF = 5.0  # two photos are one when their 32x32 versions differ by < this many grey levels on average


def drop_repeated_photos(photos: np.ndarray, max_diff: float = REPEAT_MAX_DIFF) -> tuple[np.ndarray, list[int]]:
    """The photos less any that repeats an earlier one (mean |difference| < ``max_diff`` grey levels at 32x32),
    and the indices dropped. Left in, the hash rightly buckets the two together, which the truth calls a false
    merge."""
    small = np.stack([cv2.resize(p, (32, 32), interpolation=cv2.INTER_AREA) for p in photos])
    small = small.reshape(len(photos), -1).astype(np.float32)
    keep: list[int] = []
    dropped: list[int] = []
    for i in range(len(photos)):
        if keep and np.abs(small[keep] - small[i]).mean(1).min() < max_diff:
            dropped.append(i)
        else:
            keep.append(i)
    return photos[keep], dropped


def build_collection(photos: np.ndarray, per_kind: int, seed: int) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """Distinct views of each photo plus ``per_kind`` planted duplicates of every kind in :data:`KINDS`.

    Returns ``(x (N, 64, 64, 3) uint8, records [{"index", "original", "kind"}], photo id of each image (N,))``;
    the distinct views come first.
    """
    rng = np.random.default_rng(seed)
    views, windows, photo_of = [], [], []
    for p_id, p in enumerate(photos):
        half = cv2.resize(p, (2 * SIZE, 2 * SIZE), interpolation=cv2.INTER_AREA)  # (128, 128, 3)
        views.append(cv2.resize(p, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
        windows.append(None)
        photo_of.append(p_id)
        taken: list[tuple[int, int]] = []
        while len(taken) < VIEWS_PER_PHOTO:  # windows >= 8 px apart, 4 px from the border (room for shifts, crops)
            i, j = (int(v) for v in rng.integers(4, SIZE - 4, 2))
            if all(max(abs(i - a), abs(j - b)) >= dedup.MIN_OFFSET for a, b in taken):
                taken.append((i, j))
                views.append(half[i:i + SIZE, j:j + SIZE])
                windows.append(Window(half, j, i, SIZE))
                photo_of.append(p_id)
    x = list(views)
    records = []
    crop_views = [k for k, w in enumerate(windows) if w is not None]
    for kind, spec in KINDS.items():  # shifts and crops move a crop window, so their originals are crop views
        pool = crop_views if spec.op in WINDOW_OPS else range(len(views))
        for o in rng.choice(pool, per_kind, replace=False):
            x.append(plant(spec, views[o], rng, windows[o]))
            records.append({"index": len(x) - 1, "original": int(o), "kind": kind})
            photo_of.append(photo_of[o])
    return np.stack(x), records, np.asarray(photo_of)


def score_hash(codes: np.ndarray, records: list[dict], photo_of: np.ndarray, n_distinct: int) -> dict[str, Any]:
    """Scores of one hashing of the collection (packed codes (N, B)) against the planted truth."""
    bucket, _ = dedup.bucket_codes(codes)
    s = dedup.planted_scores(records, bucket, [r["kind"] for r in records])
    b, p = bucket[:n_distinct], photo_of[:n_distinct]
    same_photo_pairs = merged = 0  # pairs of distinct crops of one photo, and those sharing a bucket
    for pid in np.unique(p):
        bb = b[p == pid]
        same_photo_pairs += len(bb) * (len(bb) - 1) // 2
        _, counts = np.unique(bb, return_counts=True)
        merged += int((counts * (counts - 1) // 2).sum())
    return {"precision": s["precision"], "recall": s["recall"],
            "false_positive_rate": None if s["precision"] is None else 1 - s["precision"],
            "removed": s["removed"], "false_merges": s["false_merges"],
            "hard_negative_collision_rate": merged / same_photo_pairs if same_photo_pairs else None,
            "recall_by_kind": {k: v["recall"] for k, v in s["recall_by_kind"].items()}}


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def run(photos_path: io.PathLike, dedup_cfg: dict[str, Any], check: dict[str, Any], out_path: io.PathLike,
                common: dict[str, Any]) -> dict[str, Any]:
    """Rule ``dedup_check``: the hash of config ``dedup`` on real photos with planted duplicates; write the JSON.

    ``check`` is config ``checks.dedup`` (per_kind, epochs: the autoencoder's epochs on this ~2,000-image
    collection, seeds). Every seed trains its own autoencoder; the result holds each seed's scores and their mean.
    """
    t0 = time.time()
    with np.load(photos_path, allow_pickle=False) as npz:
        if "images" not in npz.files:
            raise ValueError(f"config key 'checks.dedup.photos': {photos_path} holds {npz.files}, not 'images' "
                             "(uint8 N x H x W x 3 photographs)")
        photos = npz["images"]
    if photos.dtype != np.uint8 or photos.ndim != 4 or photos.shape[-1] != 3 or min(photos.shape[1:3]) < 2 * SIZE:
        raise ValueError(f"config key 'checks.dedup.photos': {photos_path} 'images' is {photos.dtype} "
                         f"{photos.shape}; expected uint8 (N, H, W, 3) colour photographs of at least "
                         f"{2 * SIZE} x {2 * SIZE} px")
    photos, dropped = drop_repeated_photos(photos)
    x, records, photo_of = build_collection(photos, check["per_kind"], seed=check["seeds"][0])
    n_distinct = len(x) - len(records)
    log.info("dedup check: %d distinct images of %d photos (%d repeats dropped) + %d planted duplicates", n_distinct,
             len(photos), len(dropped), len(records))
    runs = []
    for seed in check["seeds"]:
        model, _ = dedup.train_autoencoder(
            x, crop=dedup_cfg["crop"], code_dim=dedup_cfg["code_dim"], dropout=dedup_cfg["dropout"],
            input_noise=dedup_cfg["input_noise"], normalize=dedup_cfg["normalize"], epochs=check["epochs"],
            batch_size=dedup_cfg["batch_size"], lr=dedup_cfg["lr"], seed=seed)
        codes = dedup.hash_images(model, x, crop=dedup_cfg["crop"], normalize=dedup_cfg["normalize"],
                                  threshold=dedup_cfg["threshold"])
        runs.append({"seed": seed, **score_hash(codes, records, photo_of, n_distinct)})
        log.info("seed %d: precision %s, recall %s", seed, runs[-1]["precision"], runs[-1]["recall"])
    keys = ("precision", "recall", "false_positive_rate", "hard_negative_collision_rate")
    result = {
        "check": "dedup", "photos": len(photos),
        "stand_in": f"crops of {len(photos)} real photographs ({Path(photos_path).name}) with planted duplicates, "
                    "standing in for LSUN bedrooms", "repeated_photos_dropped": dropped, "n_distinct": n_distinct,
        "n_planted": len(records), "per_kind": check["per_kind"], "kinds": list(KINDS),
        "mean": {k: _mean([r[k] for r in runs]) for k in keys},
        "min": {k: min((r[k] for r in runs if r[k] is not None), default=None) for k in keys},
        "max": {k: max((r[k] for r in runs if r[k] is not None), default=None) for k in keys},
        "recall_by_kind": {k: _mean([r["recall_by_kind"][k] for r in runs]) for k in KINDS},
        "runs": runs,
        "provenance": io.provenance(config={"dedup": dedup_cfg, "check": check, **common}, seed=None,  # seeds: check
                                    inputs={"photos": photos_path}, started=t0),
    }
    io.write_json(out_path, result)
    return result
