"""Evaluation harness for the face stage (Sec. 4.2): OpenCV's Haar cascade on faces at known places and sizes.

Two real-data checks (``../shared/data/faces``, not part of the project):

1. ``composite_faces256.npz``: 300 RGB 256x256 images, one real face photo pasted at a random scale (21-146 px
   face boxes) and place on a real scene photo, with its box. Reported: recall at IoU >= 0.5 over all faces and
   over faces >= ``min_size`` (the "sufficiently high resolution" rule drops smaller ones by design), recall by
   face size, false detections per image (kept detections matching no face), mean IoU of found faces and time
   per image; at the config defaults and at a few other settings (one change at a time), which is how the
   defaults were chosen. Caveat: the boxes come from the same cascade run on the source photo, so this is a
   consistency check of detect -> map back, not independent ground truth.
2. ``lfw_crops90_jpg.tar``: all 13,233 Labeled Faces in the Wild crops (90x90 JPEG, one tight face each).
   Reported: how many decode (skip reasons otherwise), and the detection rate (crops with a kept detection,
   side >= ``min_size``) at the defaults, at smaller ``min_size`` and with 24 px of mirrored context added
   around each crop. Tight crops leave the cascade little context, which is why ``faces.detect: false`` exists
   for pre-cropped sets.

    python benchmarks/eval_faces.py                        # ~2-3 min on 2 shared CPU cores
    python benchmarks/eval_faces.py --lfw-limit 2000       # a seeded random subset of the LFW crops
"""

from __future__ import annotations

import argparse
import json
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dcgan_repro import faces, images  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
DEFAULT = dict(cascade="haarcascade_frontalface_default.xml", scale_factor=1.1, min_neighbors=5, min_size=64,
               max_side=2048)  # config.yaml faces: defaults
SETTINGS: dict[str, dict[str, Any]] = {  # one change at a time from DEFAULT
    "default": {},
    "scale_factor=1.05": {"scale_factor": 1.05},
    "scale_factor=1.2": {"scale_factor": 1.2},
    "min_neighbors=3": {"min_neighbors": 3},
    "min_neighbors=8": {"min_neighbors": 8},
    "min_size=48": {"min_size": 48},
    "min_size=32": {"min_size": 32},
    "alt2 cascade": {"cascade": "haarcascade_frontalface_alt2.xml"},
}
SIZE_BINS = ((0, 48), (48, 64), (64, 100), (100, 1000))


def eval_composites(path: Path, settings: list[str]) -> dict[str, Any]:
    d = np.load(path)
    images, boxes = d["images"], d["boxes_xywh"]
    sides = np.minimum(boxes[:, 2], boxes[:, 3])
    print(f"\n== composites: {len(images)} images {images.shape[1:]}, face sides "
          f"{sides.min():.0f}-{sides.max():.0f} px, "
          f"{int((sides >= 64).sum())} faces >= 64 px ==")
    print(f"{'setting':20s} {'recall':>7s} {'rec>=min':>8s} {'min_size':>8s} {'FD/img':>7s} {'IoU':>5s} "
          f"{'ms/img':>7s}   "
          + " ".join(f"rec{lo}-{hi if hi < 1000 else ''}" for lo, hi in SIZE_BINS))
    out = {}
    for name in settings:
        cfg = {**DEFAULT, **SETTINGS[name]}
        t0 = time.perf_counter()
        parts = {}  # the size bins partition the images (one face each): score each bin, then add them up
        for lo, hi in SIZE_BINS:
            sel = np.flatnonzero((sides >= lo) & (sides < hi))
            parts[f"{lo}-{hi}"] = faces.evaluate_detector(images[sel], boxes[sel], **cfg)
        ms = 1000 * (time.perf_counter() - t0) / len(images)
        tot = {k: sum(r[k] for r in parts.values()) for k in ("images", "faces", "found", "faces_eligible",
                                                              "false_detections")}
        eligible_found = sum(r["recall_eligible"] * r["faces_eligible"] for r in parts.values()
                             if r["faces_eligible"])
        iou_sum = sum((r["mean_iou_found"] or 0) * r["found"] for r in parts.values())
        r = {**tot, "recall": tot["found"] / tot["faces"], "recall_eligible": eligible_found / tot["faces_eligible"],
             "false_detections_per_image": tot["false_detections"] / tot["images"],
             "mean_iou_found": iou_sum / tot["found"], "settings": cfg}
        by_size = {k: (v["recall"], v["faces"]) for k, v in parts.items()}
        r.update(ms_per_image=ms, recall_by_face_side=by_size)
        out[name] = r
        bins = " ".join(f"{v:.2f}({n})".rjust(10) if v is not None else "n/a".rjust(10) for v, n in by_size.values())
        print(f"{name:20s} {r['recall']:7.3f} {r['recall_eligible']:8.3f} {cfg['min_size']:8d} "
              f"{r['false_detections_per_image']:7.3f} {r['mean_iou_found']:5.2f} {ms:7.1f}   {bins}", flush=True)
    return out


def eval_lfw(path: Path, limit: int, rows: list[tuple[int, int]], seed: int = 0) -> dict[str, Any]:
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith((".jpg", ".jpeg"))]
        if limit and limit < len(members):
            keep = np.sort(np.random.default_rng(seed).choice(len(members), limit, replace=False))
            members = [members[i] for i in keep]
        blobs = [tar.extractfile(m).read() for m in members]
    status: Counter[str] = Counter()
    imgs = []
    t0 = time.perf_counter()
    for b in blobs:
        img, st = images.decode_image(b)
        status[st] += 1
        if img is not None:
            imgs.append(img)
    decode_ms = 1000 * (time.perf_counter() - t0) / len(blobs)
    shapes = Counter(i.shape for i in imgs)
    print(f"\n== LFW crops: {len(blobs)} files, decode status {dict(status)}, shapes {dict(shapes)}, "
          f"{decode_ms:.2f} ms/decode ==")
    print(f"{'min_size':>8s} {'padding':>8s} {'detection rate':>14s} {'ms/img':>7s}")
    out: dict[str, Any] = {"files": len(blobs), "decode_status": dict(status), "rows": []}
    for ms_, pad in rows:
        cfg = {**DEFAULT, "min_size": ms_}
        t0 = time.perf_counter()
        kept = 0
        for img in imgs:
            if pad:  # context around the tight crop: mirrored borders, pad px each side
                img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
            kept += len(faces.detect_faces(img, **cfg)[0]) > 0
        ms = 1000 * (time.perf_counter() - t0) / len(imgs)
        row = {"min_size": ms_, "padding": pad, "detection_rate": kept / len(imgs), "ms_per_image": ms}
        out["rows"].append(row)
        print(f"{ms_:8d} {pad:8d} {row['detection_rate']:14.3f} {ms:7.2f}", flush=True)
    # pre-cropped path (faces.detect: false): the centred square is the box; kept when >= min_size
    whole = sum(len(faces.whole_image_box(i, min_size=DEFAULT["min_size"])[0]) > 0 for i in imgs) \
        if hasattr(faces, "whole_image_box") else None
    if whole is not None:
        print(f"faces.detect: false (centred square, min_size {DEFAULT['min_size']}): {whole / len(imgs):.3f} kept")
        out["detect_false_kept_rate"] = whole / len(imgs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--faces-dir", default=str(SHARED), help="folder with composite_faces256.npz, lfw_crops90_jpg.tar")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--lfw-limit", type=int, default=0, help="0 = all 13,233 crops; else a seeded random subset")
    ap.add_argument("--lfw-rows", nargs="+", default=["64:0", "32:0", "64:24"],
                    help="min_size:padding pairs to score on the LFW crops (padding: mirrored px per side)")
    ap.add_argument("--only", choices=["composites", "lfw"], help="run one of the two checks")
    ap.add_argument("--json", help="write every score here")
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    root = Path(args.faces_dir)
    comp, lfw = root / "composite_faces256.npz", root / "lfw_crops90_jpg.tar"
    if not comp.is_file() and not lfw.is_file():
        print(f"neither {comp} nor {lfw} exists: this harness needs ../shared/data/faces")
        return 2
    result: dict[str, Any] = {}
    if comp.is_file() and args.only != "lfw":
        result["composites"] = eval_composites(comp, args.settings)
    if lfw.is_file() and args.only != "composites":
        rows = [tuple(int(v) for v in r.split(":")) for r in args.lfw_rows]
        result["lfw"] = eval_lfw(lfw, args.lfw_limit, rows)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
