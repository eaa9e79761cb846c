"""Face detection and cropping with OpenCV's Haar cascade (paper Sec. 4.2).

The paper: "We scraped images containing human faces from random web image queries of people's names. [...]
We run an OpenCV face detector on these images, keeping the detections that are sufficiently high
resolution, which gives us approximately 350,000 face boxes." No code for this step was released, so the
detector settings and the "sufficiently high resolution" rule are config keys under ``faces:``.

Per image (:func:`process_image`):

1. :func:`dcgan_repro.images.decode_image` decodes the file with ``cv2.imdecode`` and falls back to Pillow for
   what OpenCV cannot read; every result is 8-bit RGB (grayscale is replicated to 3 channels, 16-bit is scaled by
   1/257, CMYK and palette images are converted, EXIF orientation is applied). Unreadable inputs are never a crash
   and never a silent drop: they get a skip reason from :data:`SKIP_REASONS`, counted in every shard and in the
   summary.
2. :func:`detect_faces` runs ``detectMultiScale`` on the grayscale image with ``scale_factor``,
   ``min_neighbors`` and ``minSize = min_size``, then keeps boxes whose side is at least ``min_size`` pixels of
   the original image (the "sufficiently high resolution" rule). No histogram equalisation: on the 300
   composites of ``../shared/data/faces`` it made recall and false detections slightly worse (< 1 point).
   Images whose longest side exceeds ``faces.max_side`` are area-downscaled to that side for detection only,
   and the boxes are mapped back; since the cascade window is 24 px, the default 2048 loses no face of 64 px
   or more in images up to 2048 * 64 / 24 = 5461 px on the long side.
3. :func:`crop_faces` cuts each kept box out of the full-resolution image with ``margin`` x side extra pixels
   on every side. Near the image border the margin shrinks, equally on all four sides, to what fits, so every
   crop stays a square centred on the detection and nothing is padded or stretched. Crops are resized to
   ``image_size`` with ``INTER_AREA`` (``INTER_LINEAR`` when a crop is smaller than ``image_size``, which only
   happens when ``min_size < image_size``: ``INTER_AREA`` enlarges like nearest neighbour).

Pre-cropped face sets (``faces.detect: false``, e.g. the LFW 90x90 crops): every source image is already one
tight face, so :func:`whole_image_box` takes its centred square as the single box instead of running the
cascade (which needs context around a face: on the LFW crops it fires on only ~17% of them at the defaults).
The ``min_size`` rule and the cropping/resizing above apply unchanged.

Rules: ``faces_detect_shard`` -> :func:`detect_shard`, ``faces_gather`` -> :func:`gather`;
:func:`crops_from_boxes` redoes a shard's crops from its boxes JSON without detection (audit, another margin).
Ingest (:mod:`dcgan_repro.data.ingest`) uses the same decoder with ``pillow_only=True``: the same skip reasons and
8-bit RGB conversion, Pillow only, so its pixels match torchvision's loaders.
:func:`evaluate_detector` scores the detector against known boxes (recall at IoU >= 0.5, false detections per
image) for tests and benchmarks. At the defaults, on those 300 composites (faces 21-146 px pasted on real
scenes; their boxes come from the same cascade on the source photo, so this is a consistency check): recall
0.97 over the 156 faces of >= 64 px (0.64 over all, the rest being too small by design), 0.03 false
detections per image, mean IoU 0.85 of found faces.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dcgan_repro import images, io

log = logging.getLogger(__name__)

# Skip reasons: the decoder's (dcgan_repro.images.SKIP_REASONS) and one of the face stage's own.
SKIP_REASONS = {
    **images.SKIP_REASONS,
    "detector_error": "OpenCV raised an error while detecting faces in the decoded image",
}


# --- detection and cropping -------------------------------------------------------------------------


@lru_cache(maxsize=4)
def load_cascade(name: str) -> cv2.CascadeClassifier:
    """A Haar cascade from ``cv2.data.haarcascades`` (or a path); an error names the file when it is unusable."""
    path = Path(name) if Path(name).is_file() else Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        shipped = sorted(p.name for p in Path(cv2.data.haarcascades).glob("haarcascade_*.xml"))
        raise ValueError(f"config key 'faces.cascade': could not load {path}; cascades shipped with OpenCV: "
                         f"{', '.join(shipped)}")
    return cascade


def detect_faces(rgb: np.ndarray, *, cascade: str = "haarcascade_frontalface_default.xml",
                 scale_factor: float = 1.1, min_neighbors: int = 5, min_size: int = 64, max_side: int = 2048
                 ) -> tuple[np.ndarray, int]:
    """Haar face boxes in an RGB uint8 image (H, W, 3); returns ``(kept boxes (k, 4) int [x, y, w, h], found)``.

    ``found`` counts every detection; ``kept`` are those with both sides >= ``min_size`` original pixels.
    Images longer than ``max_side`` (0 = never) are downscaled for detection and boxes mapped back.
    """
    h, w = rgb.shape[:2]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # (H, W) uint8
    scale = max(h, w) / max_side if max_side and max(h, w) > max_side else 1.0
    if scale > 1.0:
        gray = cv2.resize(gray, (max(1, round(w / scale)), max(1, round(h / scale))),
                          interpolation=cv2.INTER_AREA)  # (H/s, W/s)
    det_min = max(1, int(np.floor(min_size / scale)))
    found = load_cascade(cascade).detectMultiScale(gray, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                                   minSize=(det_min, det_min))
    boxes = np.asarray(found, dtype=np.float64).reshape(-1, 4) * scale  # (k, 4) in original pixels
    boxes = np.rint(boxes).astype(np.int64)
    boxes[:, 0] = np.clip(boxes[:, 0], 0, w - 1)
    boxes[:, 1] = np.clip(boxes[:, 1], 0, h - 1)
    boxes[:, 2] = np.minimum(boxes[:, 2], w - boxes[:, 0])
    boxes[:, 3] = np.minimum(boxes[:, 3], h - boxes[:, 1])
    kept = boxes[(boxes[:, 2] >= min_size) & (boxes[:, 3] >= min_size)]  # "sufficiently high resolution"
    return kept, len(boxes)


def whole_image_box(rgb: np.ndarray, *, min_size: int = 64) -> tuple[np.ndarray, int]:
    """``faces.detect: false``: the centred square of a pre-cropped face image as its one box, in the shape of
    :func:`detect_faces`'s answer: ``(kept boxes (0 or 1, 4) [x, y, w, h], found = 1)``; kept when the square's
    side is at least ``min_size``."""
    h, w = rgb.shape[:2]
    side = min(h, w)
    box = np.array([[(w - side) // 2, (h - side) // 2, side, side]], dtype=np.int64)  # (1, 4)
    return (box if side >= min_size else box[:0]), 1


def crop_faces(rgb: np.ndarray, boxes: np.ndarray, *, margin: float = 0.0, image_size: int = 64) -> np.ndarray:
    """Square crops (k, image_size, image_size, 3) uint8 of boxes (k, 4) [x, y, w, h] in an RGB image.

    ``margin`` x side pixels are added on every side, shrunk equally on all sides to what fits inside the
    image, so the crop stays a square centred on the box (nothing padded or stretched).
    """
    h, w = rgb.shape[:2]
    out = np.empty((len(boxes), image_size, image_size, 3), np.uint8)
    for k, (x, y, bw, bh) in enumerate(np.asarray(boxes, dtype=np.int64).reshape(-1, 4)):
        room = min(x, y, w - (x + bw), h - (y + bh))  # pixels free around the box on its tightest side
        m = max(0, min(int(round(margin * max(bw, bh))), room))
        crop = rgb[y - m:y + bh + m, x - m:x + bw + m]  # (bh+2m, bw+2m, 3)
        interp = cv2.INTER_AREA if min(crop.shape[:2]) >= image_size else cv2.INTER_LINEAR
        out[k] = cv2.resize(crop, (image_size, image_size), interpolation=interp)  # (S, S, 3)
    return out


def process_image(path: str | Path, faces: Mapping[str, Any]) -> tuple[dict[str, Any], np.ndarray, int]:
    """Read, detect, crop one image: returns (JSON record, crops (k, S, S, 3), detections found)."""
    size = faces["image_size"]
    rgb, status = images.decode_image(path)
    if rgb is None:
        return {"status": status, "boxes": []}, np.zeros((0, size, size, 3), np.uint8), 0
    if not faces.get("detect", True):   # pre-cropped faces (faces.detect: false): the image is the face
        boxes, found = whole_image_box(rgb, min_size=faces["min_size"])
        crops = crop_faces(rgb, boxes, margin=0.0, image_size=size)
        return ({"status": "ok", "size": [int(rgb.shape[1]), int(rgb.shape[0])], "boxes": boxes.tolist(),
                 "found": found}, crops, found)
    try:
        boxes, found = detect_faces(rgb, **_detector_args(faces))
    except cv2.error as e:
        log.warning("%s: face detection failed: %s", path, " ".join(str(e).split())[-300:])
        return {"status": "detector_error", "boxes": []}, np.zeros((0, size, size, 3), np.uint8), 0
    crops = crop_faces(rgb, boxes, margin=faces["margin"], image_size=size)
    record = {"status": "ok", "size": [int(rgb.shape[1]), int(rgb.shape[0])], "boxes": boxes.tolist(),
              "found": found}
    return record, crops, found


def _detector_args(faces: Mapping[str, Any]) -> dict[str, Any]:
    return {"cascade": faces["cascade"], "scale_factor": faces["scale_factor"],
            "min_neighbors": faces["min_neighbors"], "min_size": faces["min_size"],
            "max_side": faces["max_side"]}


# --- rules ------------------------------------------------------------------------------------------


def read_manifest(source_dir: str | Path) -> list[str]:
    """Image paths (relative to ``source_dir``) listed in ``source_dir/manifest.txt``, blank lines skipped."""
    path = Path(source_dir) / "manifest.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: a faces_raw folder needs manifest.txt (one image path "
                                "per line, relative to the folder), the images and meta.json")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def shard_items(items: Sequence[str], shard: int, shards: int) -> list[str]:
    """Shard ``shard`` of ``shards`` of ``items`` (:func:`dcgan_repro.io.shard_range`)."""
    start, stop = io.shard_range(len(items), shard, shards, setting="faces.shards")
    return list(items[start:stop])


def detect_shard(source_dir: str | Path, shard: int, shards: int, faces: Mapping[str, Any],
                 boxes_path: str | Path, crops_path: str | Path, threads: int = 1) -> dict[str, Any]:
    """Rule ``faces_detect_shard``: detect and crop the faces of shard ``shard`` of the manifest.

    Writes ``boxes_path`` (JSON: ``images`` = {image path: {"status": "ok" | skip reason, "boxes": [[x, y, w,
    h], ...] kept, "found": detections before the size rule, "size": [w, h]}}, ``counts``, provenance; crops
    follow the manifest order and, within an image, the order of its boxes) and ``crops_path`` ((N, S, S, 3)
    uint8, N = total kept boxes, possibly 0). ``threads``: OpenCV's worker threads (the job's cores; shards are
    the parallelism). Returns the JSON record.
    """
    t0 = time.time()
    cv2.setNumThreads(max(1, int(threads)))
    load_cascade(faces["cascade"])  # a bad cascade name fails before any image is read
    paths = shard_items(read_manifest(source_dir), shard, shards)
    size = faces["image_size"]
    images: dict[str, Any] = {}
    crops, status, found_total = [], Counter(), 0
    for rel in paths:
        record, c, found = process_image(Path(source_dir) / rel, faces)
        images[rel] = record
        status[record["status"]] += 1
        found_total += found
        crops.append(c)
        if record["status"] != "ok":
            log.warning("%s: skipped (%s)", rel, record["status"])
    x = np.concatenate(crops) if crops else np.zeros((0, size, size, 3), np.uint8)  # (N, S, S, 3)
    counts = {"images": len(paths), "status": dict(sorted(status.items())),
              "images_with_faces": sum(1 for r in images.values() if r["boxes"]),
              "faces_found": found_total, "faces_kept": len(x)}
    result = {"shard": shard, "shards": shards, "counts": counts, "images": images,
              "provenance": io.provenance(config={"faces": dict(faces), "shard": shard, "shards": shards},
                                          seed=None, inputs={"manifest": str(Path(source_dir) / "manifest.txt")},
                                          started=t0)}
    io.save_npy(crops_path, x)
    io.write_json(boxes_path, result)
    log.info("shard %d/%d: %d images, %d faces kept of %d found, skipped %s, %.2f s", shard, shards, len(paths),
             len(x), found_total, {k: v for k, v in status.items() if k != "ok"}, time.time() - t0)
    return result


def crops_from_boxes(source_dir: str | Path, boxes_path: str | Path, *, margin: float, image_size: int
                     ) -> np.ndarray:
    """Redo a shard's crops from its boxes JSON without running the detector (e.g. with another ``margin`` or
    ``image_size``, or to audit them): (N, S, S, 3) uint8 in the order :func:`detect_shard` wrote them.

    An image that no longer decodes to the size recorded with its boxes is an error naming it.
    """
    rec = io.read_json(boxes_path)
    parts = []
    for rel, r in rec["images"].items():
        if not r["boxes"]:
            continue
        rgb, status = images.decode_image(Path(source_dir) / rel)
        if rgb is None or [rgb.shape[1], rgb.shape[0]] != r["size"]:
            got = status if rgb is None else f"size {[rgb.shape[1], rgb.shape[0]]}"
            raise ValueError(f"{boxes_path}: {Path(source_dir) / rel} had size {r['size']} when its boxes were "
                             f"found, now {got}; rerun rule faces_detect_shard")
        parts.append(crop_faces(rgb, np.asarray(r["boxes"]), margin=margin, image_size=image_size))
    return np.concatenate(parts) if parts else np.zeros((0, image_size, image_size, 3), np.uint8)


def gather(source_dir: str | Path, box_paths: Sequence[str | Path], crop_paths: Sequence[str | Path],
           out_dir: str | Path, summary_path: str | Path, faces: Mapping[str, Any], preset: str
           ) -> dict[str, Any]:
    """Rule ``faces_gather``: concatenate shard crops into the ``faces`` dataset and write a summary.

    ``out_dir`` gets ``train_x.npy`` (N, S, S, 3) uint8, ``train_y.npy`` (all -1) and ``meta.json``
    (``stand_in`` copied from the faces_raw meta), written beside it and renamed into place when complete.
    """
    t0 = time.time()
    if len(box_paths) != len(crop_paths):
        raise ValueError(f"{len(box_paths)} box files but {len(crop_paths)} crop files")
    size = faces["image_size"]
    parts, status, totals = [], Counter(), Counter()
    for bp, cp in zip(box_paths, crop_paths):
        rec = io.read_json(bp)
        x = io.load_npy(cp, mmap=False)
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (size, size, 3):
            raise ValueError(f"{cp}: crops must be uint8 N x {size} x {size} x 3 (faces.image_size), got "
                             f"{x.dtype} {x.shape}; rerun rule faces_detect_shard")
        n_boxes = sum(len(r["boxes"]) for r in rec["images"].values())
        if n_boxes != len(x):
            raise ValueError(f"{bp} lists {n_boxes} kept boxes but {cp} holds {len(x)} crops")
        parts.append(x)
        status.update(rec["counts"]["status"])
        totals.update({k: rec["counts"][k] for k in ("images", "images_with_faces", "faces_found", "faces_kept")})
    x = np.concatenate(parts) if parts else np.zeros((0, size, size, 3), np.uint8)  # (N, S, S, 3)
    src_meta = io.read_meta(source_dir)
    stand_in = src_meta.get("stand_in")
    meta = {
        "name": "faces", "splits": {"train": len(x)}, "image_shape": [size, size, 3], "n_classes": 0,
        "class_names": None,
        "source": (f"{src_meta.get('source', source_dir)}; faces found by OpenCV {faces['cascade']} (Sec. 4.2), "
                   f"boxes >= {faces['min_size']} px kept, cropped with margin {faces['margin']} and resized to "
                   f"{size}x{size}") if faces.get("detect", True) else (
                  f"{src_meta.get('source', source_dir)}; pre-cropped faces (faces.detect: false): no detection, "
                  f"each image's centred square (side >= {faces['min_size']} px) resized to {size}x{size}"),
        "stand_in": stand_in, "faces": dict(faces),
    }
    with io.staged_folder(out_dir) as stage:
        io.write_dataset(stage, "train", x)
        io.write_json(stage / "meta.json", meta)
    skipped = {k: v for k, v in sorted(status.items()) if k != "ok"}
    summary = {
        "images_seen": totals["images"], "images_decoded": status.get("ok", 0), "skipped": skipped,
        "skipped_total": sum(skipped.values()), "skip_reasons": {k: SKIP_REASONS.get(k, k) for k in
                                                                sorted({*skipped, *src_meta.get("skipped", {})})},
        # files the ingest of faces_raw (source: folder) already found undecodable, by the same reasons, and
        # files it did not list for want of an image extension: every input is accounted for
        "skipped_at_ingest": src_meta.get("skipped", {}),
        "other_files_at_ingest": src_meta.get("other_files_by_extension", {}),
        "images_with_faces": totals["images_with_faces"], "faces_found": totals["faces_found"],
        "faces_kept": totals["faces_kept"], "crops": len(x), "image_size": size, "stand_in": stand_in,
        "preset": preset,
        "provenance": io.provenance(config={"faces": dict(faces), "preset": preset}, seed=None,
                                    inputs={"boxes": [str(p) for p in box_paths],
                                            "crops": [str(p) for p in crop_paths]}, started=t0),
    }
    io.write_json(summary_path, summary)
    log.info("faces: %d images seen, %d skipped %s, %d faces kept of %d found", summary["images_seen"],
             summary["skipped_total"], skipped, summary["faces_kept"], summary["faces_found"])
    return summary


# --- evaluation -------------------------------------------------------------------------------------


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def evaluate_detector(images: Sequence[np.ndarray] | np.ndarray, true_boxes: Sequence[Any] | np.ndarray, *,
                      cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                      min_neighbors: int = 5, min_size: int = 64, max_side: int = 2048,
                      iou_threshold: float = 0.5) -> dict[str, Any]:
    """Score :func:`detect_faces` on RGB images with known face boxes.

    ``true_boxes``: per image one [x, y, w, h] box or a (k, 4) array of boxes. Each true box is matched
    greedily to the unmatched kept detection of highest IoU; it counts as found when that IoU >=
    ``iou_threshold``. Returns recall over all true faces, ``recall_eligible`` over true faces whose side is
    >= ``min_size`` (smaller ones are dropped by design), false detections (kept detections matching no true
    face) per image, and the mean IoU of matched faces.
    """
    tp = tp_eligible = n_true = n_eligible = false = 0
    ious: list[float] = []
    for img, tb in zip(images, true_boxes):
        truth = np.asarray(tb, dtype=np.float64).reshape(-1, 4)
        det, _ = detect_faces(np.asarray(img), cascade=cascade, scale_factor=scale_factor,
                              min_neighbors=min_neighbors, min_size=min_size, max_side=max_side)
        unmatched = list(range(len(det)))
        for t in truth:
            eligible = bool(min(t[2], t[3]) >= min_size)
            n_true += 1
            n_eligible += eligible
            scores = [(iou(t, det[j]), j) for j in unmatched]
            best, j = max(scores, default=(0.0, -1))
            if best >= iou_threshold:
                unmatched.remove(j)
                tp += 1
                tp_eligible += eligible
                ious.append(best)
        false += len(unmatched)
    n_img = len(true_boxes)
    return {
        "images": n_img, "faces": n_true, "found": tp, "recall": tp / n_true if n_true else None,
        "faces_eligible": n_eligible, "recall_eligible": tp_eligible / n_eligible if n_eligible else None,
        "false_detections": false, "false_detections_per_image": false / n_img if n_img else None,
        "mean_iou_found": float(np.mean(ious)) if ious else None, "iou_threshold": iou_threshold,
        "settings": {"cascade": cascade, "scale_factor": scale_factor, "min_neighbors": min_neighbors,
                     "min_size": min_size, "max_side": max_side},
    }


def check(composites_path: io.PathLike, faces_cfg: dict[str, Any], out_path: io.PathLike,
                common: dict[str, Any]) -> dict[str, Any]:
    """Rule ``faces_check``: the detector of config ``faces`` on images with one face pasted at a known box
    (``checks.faces.composites``): recall at IoU >= 0.5 over all faces and over faces of at least ``min_size`` px
    (smaller ones are dropped by design), false detections per image, mean IoU; write the JSON."""
    t0 = time.time()
    with np.load(composites_path, allow_pickle=False) as npz:
        missing = [k for k in ("images", "boxes_xywh") if k not in npz.files]
        if missing:
            raise ValueError(f"config key 'checks.faces.composites': {composites_path} lacks {missing} (images: uint8 "
                             "N x H x W x 3; boxes_xywh: N x 4, the face in each image)")
        images, boxes = npz["images"], npz["boxes_xywh"]
    if len(images) != len(boxes):
        raise ValueError(f"config key 'checks.faces.composites': {composites_path} has {len(images)} images but "
                         f"{len(boxes)} boxes")
    settings = {k: faces_cfg[k] for k in ("cascade", "scale_factor", "min_neighbors", "min_size", "max_side")}
    scores = evaluate_detector(images, boxes, **settings)
    sides = np.minimum(boxes[:, 2], boxes[:, 3])
    result = {"check": "faces", **scores, "face_side_px": [float(sides.min()), float(sides.max())],
              "stand_in": f"real faces pasted at known boxes into real scenes ({Path(composites_path).name}), "
                          "standing in for the paper's web images",
              "provenance": io.provenance(config={"faces": faces_cfg, **common}, seed=None,
                                          inputs={"composites": composites_path}, started=t0)}
    io.write_json(out_path, result)
    log.info("faces check: recall %.3f (%.3f of faces >= %d px), %.3f false detections per image",
             scores["recall"], scores["recall_eligible"] or 0, settings["min_size"],
             scores["false_detections_per_image"])
    return result
