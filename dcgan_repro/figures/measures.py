"""Measures of face images that Figs. 7 and 8 check their claims with: smile, glasses and head pose (yaw).

Each works on the figures' 64x64 face samples (other sizes are resized to 64x64 first, ``INTER_AREA`` as the
faces stage) and was checked on real faces, LFW crops prepared exactly as the faces stage prepares them for
training (the centred square resized to 64x64); ``python -m dcgan_repro.figures validate-measures`` repeats every
number below from the labels in ``lfw_measure_labels.csv`` beside this file. All are continuous scores, higher =
more of the attribute; they are meant for ranking and for comparing images with a pool of samples, not as
calibrated probabilities. The regions are fixed fractions of the image: a tight face crop (LFW: face box centred,
eyes at about 1/3 of the height, mouth in the bottom eighth), which is what a faces model trained on such crops
draws.

- :func:`smile_score`: a smile shows teeth: mean luminance of the brightest 30% of the mouth box (rows 7/8-1,
  columns 3/8-5/8) minus the mean of the lower face above it (rows 5/8-7/8, columns 1/4-3/4), in units of the
  face's luminance spread. Real faces, labelled by eye (smile with teeth / slight smile / none): AUC of clear
  smiles vs none 0.944 on the 200 faces the boxes and the variant were chosen on (best of six variants there),
  0.862 on 100 held-out faces (any smile vs none: 0.840, 0.808).
- :func:`glasses_score`: spectacle frames add horizontal edges where skin is smooth: mean absolute vertical
  luminance gradient over the nose bridge between the eyes and under both eyes (the lower rims), divided by its
  mean over the cheeks. Real faces labelled by eye: AUC 0.886 (200 faces, where the boxes were chosen), 0.915 on
  the 100 held-out faces.
- :func:`pose_score`: yaw, > 0 when the nose points toward the image's left (a face 'looking left' as the viewer
  sees it), < 0 toward its right. The projection of the image's left-right antisymmetric local contrast (the
  band-passed luminance minus its mirror image) on a fixed antisymmetric turn template (``pose_template.npy``),
  so mirroring an image flips the sign exactly (a pose measure must; checked on every real face). The template is
  the mean antisymmetric part of LFW crops turned left minus that of crops turned right, the turn taken from
  MediaPipe face-mesh landmarks (nose tip vs the midpoint of the two cheek contour points, in face widths;
  MediaPipe 0.10.14, run once outside this project, its values in the labels file) of the 515 clearly turned
  faces (|yaw| > 0.05) of a random half of the 5,749 people (:func:`fit_pose_template` refits it from the
  file). On 2,000 random faces of the other people: Spearman rho 0.32 with the landmark yaw (most LFW faces are
  near frontal, where both are mostly noise); sign right for turned faces with AUC 0.90 (119 faces with |yaw| >
  0.06) and 0.87 (48 with |yaw| > 0.1). On generated faces it is weaker: on the 1,000 exemplar-pool samples of the
  ``faces_lfw`` model (MediaPipe found 996 of them, upsampled 4.7x), rho 0.21 and sign AUC 0.83 (84 samples with
  |yaw| > 0.06). Lighting from one side and the generator's blotches also make a face antisymmetric, so single
  values are noisy: Fig. 8 reports trends over many faces, beside random directions.

The thresholds (:data:`REAL_FACE_THRESHOLDS`) are the scores above which 5% of the real faces labelled without
the attribute lie: a sample above one scores like a real face with the attribute.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dcgan_repro import io

log = logging.getLogger(__name__)
PathLike = io.PathLike

SIDE = 64                                   # the measures' working size (the faces model's output)
LABELS_FILE = Path(__file__).with_name("lfw_measure_labels.csv")
POSE_TEMPLATE_FILE = Path(__file__).with_name("pose_template.npy")
# (row0, row1, col0, col1) at SIDE = 64, half-open
MOUTH = (56, 64, 24, 40)
TEETH_SHARE = 0.3                           # the brightest 30% of the mouth box (teeth, where they show)
LOWER_FACE = (40, 56, 16, 48)
FACE = (16, 56, 12, 52)
BRIDGE = (16, 32, 26, 38)
RIMS = ((32, 40, 8, 24), (32, 40, 40, 56))
CHEEKS = (42, 54, 8, 56)
POSE_HIGHPASS_SIGMA = 3.0                   # local contrast: luminance minus its Gaussian blur (pixels at 64x64) ...
POSE_SMOOTH_SIGMA = 3.0                     # ... smoothed again (a band-pass: less weight on pixel-level artefacts)
# From `validate-measures` on lfw_measure_labels.csv (module docstring): 95th percentile of the real faces labelled
# without the attribute (all 300 labelled faces).
REAL_FACE_THRESHOLDS = {"smile": 0.9927, "glasses": 2.168}
# Pose score vs MediaPipe landmark yaw on 2,000 random faces of the people the template was not fitted on.
POSE_VALIDATION = {"n": 2000, "spearman_rho": 0.325, "sign_auc_turned_over_0.06": 0.897, "n_turned_over_0.06": 119,
                   "sign_auc_turned_over_0.1": 0.867, "n_turned_over_0.1": 48}


def luminance(images: np.ndarray) -> np.ndarray:
    """float32 (N, 64, 64) luminance (ITU-R 601 weights, 0-255) of uint8 (N, H, W, C) images, resized to 64x64
    when needed (``INTER_AREA``, as the faces stage)."""
    if images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(f"expected (N, H, W, 1|3) images, got {images.shape}")
    x = images.astype(np.float32)
    lum = x[..., 0] if x.shape[3] == 1 else x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (N, H, W)
    if lum.shape[1:] != (SIDE, SIDE):
        lum = np.stack([cv2.resize(m, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for m in lum])
    return lum


def _box_mean(a: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    r0, r1, c0, c1 = box
    return a[:, r0:r1, c0:c1].mean(axis=(1, 2))


def smile_score(images: np.ndarray) -> np.ndarray:
    """Smile (teeth) score per face image (N,): (mean luminance of the brightest :data:`TEETH_SHARE` of the mouth
    box - mean of the lower face) / luminance standard deviation over the face (module docstring)."""
    lum = luminance(images)                                                   # (N, 64, 64)
    n = len(lum)
    r0, r1, c0, c1 = FACE
    spread = lum[:, r0:r1, c0:c1].reshape(n, -1).std(axis=1)
    r0, r1, c0, c1 = MOUTH
    mouth = np.sort(lum[:, r0:r1, c0:c1].reshape(n, -1), axis=1)            # (N, pixels), ascending
    teeth = mouth[:, -max(1, round(TEETH_SHARE * mouth.shape[1])):].mean(axis=1)
    return (teeth - _box_mean(lum, LOWER_FACE)) / np.maximum(spread, 1.0)


def glasses_score(images: np.ndarray) -> np.ndarray:
    """Glasses score per face image (N,): horizontal-edge energy on the nose bridge plus under the eyes,
    relative to the cheeks (module docstring)."""
    lum = luminance(images)
    dy = np.abs(np.diff(lum, axis=1))                                         # (N, 63, 64) vertical gradient
    bridge = _box_mean(dy, BRIDGE)
    rims = np.mean([_box_mean(dy, b) for b in RIMS], axis=0)
    return (bridge + rims) / np.maximum(_box_mean(dy, CHEEKS), 0.5)


def antisymmetric_contrast(images: np.ndarray) -> np.ndarray:
    """(N, 64, 64): local contrast (luminance minus its Gaussian blur, sigma :data:`POSE_HIGHPASS_SIGMA`, blurred
    with sigma :data:`POSE_SMOOTH_SIGMA`, divided by its standard deviation) minus its mirror image; it changes sign
    exactly when the image is mirrored."""
    lum = luminance(images)
    hp = np.stack([cv2.GaussianBlur(m - cv2.GaussianBlur(m, (0, 0), POSE_HIGHPASS_SIGMA), (0, 0), POSE_SMOOTH_SIGMA)
                   for m in lum])                                             # (N, 64, 64) band-passed
    hp /= hp.std(axis=(1, 2), keepdims=True) + 1e-6
    return hp - hp[:, :, ::-1]


def pose_template() -> np.ndarray:
    """The turn template (64, 64), antisymmetric, unit norm (module docstring; :func:`fit_pose_template`)."""
    t = np.load(POSE_TEMPLATE_FILE).astype(np.float32)
    if t.shape != (SIDE, SIDE):
        raise ValueError(f"{POSE_TEMPLATE_FILE}: expected a {SIDE}x{SIDE} template, got {t.shape}")
    return t


def pose_score(images: np.ndarray, template: np.ndarray | None = None) -> np.ndarray:
    """Yaw score per face image (N,): > 0 nose toward the image's left, < 0 toward its right (module
    docstring); ``pose_score(images[:, :, ::-1]) == -pose_score(images)``."""
    t = pose_template() if template is None else template
    return (antisymmetric_contrast(images) * t).sum(axis=(1, 2))


def fit_pose_template(images: np.ndarray, yaw: np.ndarray, *, margin: float = 0.05) -> np.ndarray:
    """The turn template from real faces with a known yaw (> 0 nose toward the image's left): mean
    :func:`antisymmetric_contrast` of the faces with yaw > ``margin`` minus that of those with yaw < -``margin``,
    smoothed (Gaussian, sigma 2 px), made exactly antisymmetric and scaled to unit norm."""
    a = antisymmetric_contrast(images)
    left, right = yaw > margin, yaw < -margin
    if left.sum() < 5 or right.sum() < 5:
        raise ValueError(f"need at least 5 faces turned each way (|yaw| > {margin}); got {left.sum()} left, "
                         f"{right.sum()} right")
    t = cv2.GaussianBlur(a[left].mean(0) - a[right].mean(0), (0, 0), 2.0)
    t = (t - t[:, ::-1]) / 2
    return (t / np.linalg.norm(t)).astype(np.float32)


ATTRIBUTES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"smile": smile_score, "glasses": glasses_score}


def percentile_in(values: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each of ``values`` in ``pool``: the share of the pool strictly below it."""
    pool = np.sort(np.asarray(pool, dtype=np.float64))
    return np.searchsorted(pool, np.asarray(values, dtype=np.float64), side="left") / max(1, len(pool)) * 100


# --- validation on real faces --------------------------------------------------------------------------------


def read_labels(path: PathLike = LABELS_FILE) -> list[dict[str, str]]:
    """Rows of the labels file: ``image`` (path relative to the faces folder), ``split`` (``dev``: the measures'
    regions were chosen on these; ``heldout``: not), ``smile`` (2 teeth, 1 slight, 0 none), ``glasses`` (0/1) for
    the faces labelled by eye, ``yaw`` (MediaPipe landmark yaw, > 0 nose toward the image's left) and
    ``pose_split`` (``template``: the template was fitted on these people; ``test``: not) where measured."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def load_faces(folder: PathLike, names: Sequence[str]) -> np.ndarray:
    """uint8 (N, 64, 64, 3) RGB: each named image's centred square resized to 64x64 (``INTER_AREA``), as the
    faces stage prepares pre-cropped faces (``faces.detect: false``)."""
    out = np.zeros((len(names), SIDE, SIDE, 3), dtype=np.uint8)
    for i, name in enumerate(names):
        bgr = cv2.imread(str(Path(folder) / name), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"validate-measures: cannot read {Path(folder) / name} (is --faces the folder "
                                    "that holds the LFW crops named in the labels file?)")
        h, w = bgr.shape[:2]
        s = min(h, w)
        y0, x0 = (h - s) // 2, (w - s) // 2
        out[i] = cv2.cvtColor(cv2.resize(bgr[y0:y0 + s, x0:x0 + s], (SIDE, SIDE), interpolation=cv2.INTER_AREA),
                              cv2.COLOR_BGR2RGB)
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def validate(folder: PathLike, labels: PathLike = LABELS_FILE) -> dict[str, Any]:
    """Every validation number of the module docstring, from the real faces in ``folder`` and ``labels``: AUCs
    of smile and glasses per split, the 5%-false-positive thresholds, the pose template's rank correlation and
    sign AUC on the people it was not fitted on, and the mirror check of the pose score."""
    from scipy.stats import spearmanr

    rows = read_labels(labels)
    out: dict[str, Any] = {"labels": str(labels), "faces": str(folder)}
    attr = [r for r in rows if r["smile"] != ""]
    imgs = load_faces(folder, [r["image"] for r in attr])
    split = np.array([r["split"] for r in attr])
    smile, glasses = np.array([int(r["smile"]) for r in attr]), np.array([int(r["glasses"]) for r in attr])
    s, g = smile_score(imgs), glasses_score(imgs)
    for name in ("dev", "heldout"):
        m = split == name
        out[name] = {"n": int(m.sum()),
                     "smile_auc_teeth_vs_none": _auc(s[m & (smile == 2)], s[m & (smile == 0)]),
                     "smile_auc_any_vs_none": _auc(s[m & (smile > 0)], s[m & (smile == 0)]),
                     "glasses_auc": _auc(g[m & (glasses == 1)], g[m & (glasses == 0)]),
                     "n_smile_teeth": int((m & (smile == 2)).sum()), "n_glasses": int((m & (glasses == 1)).sum())}
    out["thresholds_5pct_fp"] = {"smile": float(np.quantile(s[smile == 0], 0.95)),
                                 "glasses": float(np.quantile(g[glasses == 0], 0.95))}
    posed = [r for r in rows if r["yaw"] != ""]
    pimgs = load_faces(folder, [r["image"] for r in posed])
    yaw = np.array([float(r["yaw"]) for r in posed])
    test = np.array([r["pose_split"] == "test" for r in posed])
    p = pose_score(pimgs)
    refit = fit_pose_template(pimgs[~test], yaw[~test])
    out["pose"] = {"n_test": int(test.sum()), "spearman_test": float(spearmanr(p[test], yaw[test]).statistic),
                   "mirror_max_abs_error": float(np.abs(p + pose_score(pimgs[:, :, ::-1])).max()),
                   "n_template": int((~test).sum()),
                   "template_refit_max_abs_diff": float(np.abs(refit - pose_template()).max())}
    for thr in (0.06, 0.1):
        m = test & (np.abs(yaw) > thr)
        out["pose"][f"sign_auc_abs_yaw_over_{thr}"] = _auc(p[m & (yaw > 0)], p[m & (yaw < 0)])
        out["pose"][f"n_abs_yaw_over_{thr}"] = int(m.sum())
    return out
