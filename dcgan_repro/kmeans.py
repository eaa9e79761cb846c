"""Single-layer K-means features: the measured "1 Layer K-means" baseline of Table 1.

The pipeline of Coates, Lee & Ng (2011, "An analysis of single-layer networks in unsupervised feature
learning") that Table 1's first row quotes (80.6 % with 4800 feature maps; Sec. 5.1 of the DCGAN paper), as
their released MATLAB code (``kmeans_demo.m``) does it:

1. ``train_patches`` random ``patch x patch`` colour patches from the training images (pixels 0-255, flattened
   in (C, kh, kw) order);
2. per-patch normalisation: ``(p - mean(p)) / sqrt(var(p) + norm_eps)`` (brightness and contrast; ``norm_eps``
   = 10 in the code, for 0-255 pixels);
3. ZCA whitening fitted on those patches: ``(p - m) @ V diag(1 / sqrt(d + whiten_eps)) V^T`` (``whiten_eps``
   = 0.1 in the code);
4. a dictionary of ``k`` centroids by K-means on the whitened patches. The code runs 50 iterations of batch
   K-means from random centroids; here scikit-learn's ``MiniBatchKMeans`` (k-means++ init on a subsample),
   well kept and fast enough at 400,000 x 108 with k = 4800;
5. encoding of every patch at ``stride`` (27 x 27 positions on 32x32 images with 6x6 patches) by the
   "triangle" activation ``f_k = max(0, mean_j(z_j) - z_k)``, ``z_k = ||x - c_k||``;
6. sum pooling over the four quadrants of the position grid: 4k features per image (quadrant-major);
7. standardisation of every feature with the training set's mean and ``sqrt(var + 0.01)`` (the code does this
   before its L2-SVM; switch ``standardize``).

The features then go through the same L2-SVM protocols as D's features (``dcgan_repro.svm``), so the
baseline row of Table 1 is measured by this pipeline rather than quoted.

Encoding (steps 5-6) runs in torch (``F.unfold`` + one matmul per chunk of images), in float32: ~50,000 x 729
x 4800 distances at paper scale, a few minutes on a GPU. Chunks are sized so one never holds more than
:data:`ENCODE_FLOATS` floats of distances.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import MiniBatchKMeans

from dcgan_repro import io, runtime

log = logging.getLogger(__name__)

ENCODE_FLOATS = 1 << 26  # distances held at once while encoding (256 MB of float32)
STANDARDIZE_EPS = 0.01  # Coates' code: trainXC_sd = sqrt(var(trainXC) + 0.01)
CFG_KEYS = ("k", "patch", "stride", "train_patches", "norm_eps", "whiten_eps", "max_iter", "batch_size",
            "standardize", "seed")


def _check_cfg(cfg: dict[str, Any]) -> None:
    missing = [k for k in CFG_KEYS if k not in cfg]
    if missing:
        raise KeyError(f"config 'kmeans' lacks {missing}; it needs {list(CFG_KEYS)}")
    for key in ("k", "patch", "stride", "train_patches", "max_iter", "batch_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"config key 'kmeans.{key}' must be a positive integer, got {cfg[key]!r}")
    if cfg["train_patches"] < cfg["k"]:
        raise ValueError(f"config key 'kmeans.train_patches' ({cfg['train_patches']}) must be at least "
                         f"kmeans.k ({cfg['k']}): K-means needs more patches than centroids")


def _as_float_nchw(images_uint8_nhwc: np.ndarray) -> torch.Tensor:
    if images_uint8_nhwc.dtype != np.uint8 or images_uint8_nhwc.ndim != 4:
        raise ValueError(f"expected uint8 images N x H x W x C, got {images_uint8_nhwc.dtype} "
                         f"{images_uint8_nhwc.shape}")
    x = torch.from_numpy(np.array(images_uint8_nhwc, copy=True))
    return x.permute(0, 3, 1, 2).float()  # (N, C, H, W), 0-255


def _grid(h: int, w: int, patch: int, stride: int) -> tuple[int, int]:
    if h < patch or w < patch:
        raise ValueError(f"images of {h}x{w} are smaller than kmeans.patch = {patch}")
    return (h - patch) // stride + 1, (w - patch) // stride + 1


def sample_patches(images_uint8_nhwc: np.ndarray, n: int, patch: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random patches (image and position uniform, with replacement): float32 (n, C*patch*patch)."""
    N, H, W, C = images_uint8_nhwc.shape
    img = rng.integers(0, N, n)
    r = rng.integers(0, H - patch + 1, n)
    c = rng.integers(0, W - patch + 1, n)
    out = np.empty((n, C, patch, patch), np.float32)
    order = np.argsort(img, kind="stable")  # read images in order (memmaps)
    for i in order:
        out[i] = images_uint8_nhwc[img[i], r[i]:r[i] + patch, c[i]:c[i] + patch].transpose(2, 0, 1)
    return out.reshape(n, -1)  # (n, C*patch*patch), (C, kh, kw) order = F.unfold's


def normalize_patches(p: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-patch brightness and contrast normalisation (rows are patches): (p - mean) / sqrt(var + eps)."""
    mean = p.mean(1, keepdim=True)
    var = p.var(1, keepdim=True)  # unbiased, as MATLAB's var
    return (p - mean) / torch.sqrt(var + eps)


def fit_whitening(p: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """ZCA whitening ``(x - mean) @ P`` of normalised patches (rows): (mean (D,), P (D, D)), in float64."""
    x = p.astype(np.float64)
    mean = x.mean(0)
    cov = np.cov(x, rowvar=False)  # (D, D)
    d, V = np.linalg.eigh(cov)
    P = (V * (1.0 / np.sqrt(np.maximum(d, 0.0) + eps))) @ V.T  # V diag(1/sqrt(d+eps)) V^T
    return mean.astype(np.float32), P.astype(np.float32)


def fit_dictionary(images_uint8_nhwc: np.ndarray, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Steps 1-4: ``{"mean", "whiten", "centroids"}`` from random training patches (the labels are not used)."""
    _check_cfg(cfg)
    t0 = time.time()
    rng = np.random.default_rng(cfg["seed"])
    n = cfg["train_patches"]
    p = torch.from_numpy(sample_patches(images_uint8_nhwc, n, cfg["patch"], rng))
    p = normalize_patches(p, cfg["norm_eps"]).numpy()  # (n, D)
    mean, P = fit_whitening(p, cfg["whiten_eps"])
    pw = (p - mean) @ P  # (n, D)
    km = MiniBatchKMeans(n_clusters=cfg["k"], batch_size=cfg["batch_size"], max_iter=cfg["max_iter"],
                         init="k-means++", init_size=min(n, max(3 * cfg["k"], 3 * cfg["batch_size"])), n_init=1,
                         random_state=cfg["seed"])
    km.fit(pw)
    log.info("K-means dictionary: k=%d on %d whitened %dx%d patches (%d dims), %d steps, inertia/patch %.3f, "
             "%.1f s", cfg["k"], n, cfg["patch"], cfg["patch"], p.shape[1], km.n_steps_, km.inertia_ / n,
             time.time() - t0)
    return {"mean": mean, "whiten": P, "centroids": km.cluster_centers_.astype(np.float32)}


def encode(images_uint8_nhwc: np.ndarray, dictionary: dict[str, np.ndarray], cfg: dict[str, Any], *,
           device: torch.device | str = "cpu", out: np.ndarray | None = None) -> np.ndarray:
    """Steps 5-6: float32 (N, 4k) triangle features, sum-pooled over the 4 quadrants (quadrant-major).

    ``out`` (e.g. a memmap from :func:`dcgan_repro.io.open_npy_writer`) receives the rows if given.
    """
    _check_cfg(cfg)
    device = torch.device(device)
    patch, stride = cfg["patch"], cfg["stride"]
    N, H, W, C = images_uint8_nhwc.shape
    gh, gw = _grid(H, W, patch, stride)
    mean = torch.from_numpy(dictionary["mean"]).to(device)  # (D,)
    P = torch.from_numpy(dictionary["whiten"]).to(device)  # (D, D)
    cent = torch.from_numpy(dictionary["centroids"]).to(device)  # (k, D)
    k, D = cent.shape
    if D != C * patch * patch:
        raise ValueError(f"the dictionary has {D}-dim centroids but {C}-channel {patch}x{patch} patches have "
                         f"{C * patch * patch}: it was fitted with other kmeans settings")
    c2 = cent.square().sum(1)  # (k,)
    hr, hc = math.ceil(gh / 2), math.ceil(gw / 2)  # quadrant split (MATLAB round(27/2) = 14)
    if out is None:
        out = np.empty((N, 4 * k), np.float32)
    elif out.shape != (N, 4 * k):
        raise ValueError(f"out has shape {out.shape}, expected {(N, 4 * k)}")
    chunk = max(1, ENCODE_FLOATS // (gh * gw * k))
    with torch.no_grad():
        for s in range(0, N, chunk):
            x = _as_float_nchw(np.asarray(images_uint8_nhwc[s:s + chunk])).to(device)  # (B, C, H, W)
            B = len(x)
            p = F.unfold(x, patch, stride=stride)  # (B, D, gh*gw), (C, kh, kw) order
            p = p.transpose(1, 2).reshape(B * gh * gw, D)  # (B*gh*gw, D)
            p = (normalize_patches(p, cfg["norm_eps"]) - mean) @ P  # whitened
            z = (p.square().sum(1, keepdim=True) - 2 * p @ cent.T + c2).clamp_min_(0).sqrt_()  # (B*L, k)
            f = (z.mean(1, keepdim=True) - z).clamp_min_(0)  # triangle activation
            f = f.view(B, gh, gw, k)
            q = torch.stack([f[:, :hr, :hc].sum((1, 2)), f[:, :hr, hc:].sum((1, 2)),
                             f[:, hr:, :hc].sum((1, 2)), f[:, hr:, hc:].sum((1, 2))], 1)  # (B, 4, k)
            out[s:s + B] = q.reshape(B, 4 * k).cpu().numpy()
    return out


def feature_stats(x: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and ``sqrt(var + 0.01)`` of rows of ``x`` (streamed, float64 accumulation)."""
    s = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i in range(0, len(x), block):
        b = np.asarray(x[i:i + block], np.float64)
        s[0][:] += b.sum(0)
        s[1][:] += np.square(b).sum(0)
    mean = s[0] / len(x)
    var = np.maximum(s[1] / len(x) - mean ** 2, 0.0) * len(x) / max(len(x) - 1, 1)  # unbiased, as MATLAB
    return mean.astype(np.float32), np.sqrt(var + STANDARDIZE_EPS).astype(np.float32)


def _standardize_inplace(x: np.ndarray, mean: np.ndarray, sd: np.ndarray, block: int = 4096) -> None:
    for i in range(0, len(x), block):
        x[i:i + block] = (x[i:i + block] - mean) / sd


def kmeans_features(data_dir: io.PathLike, train_out: io.PathLike, test_out: io.PathLike,
                    dictionary_out: io.PathLike, cfg: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """Rule ``features_kmeans``: dictionary from the train split's patches (labels unused), then the train and
    test features (float32 N x 4k .npy, CONTRACTS: same format as D's features), standardised with the train
    statistics when ``kmeans.standardize``. ``dictionary_out`` (.npz) keeps the dictionary, the feature
    statistics and the provenance (JSON string under ``provenance``)."""
    t0 = time.time()
    _check_cfg(cfg)
    device = runtime.resolve_device(common.get("device", "auto"))
    xtr, _ = io.read_dataset(data_dir, "train")
    xte, _ = io.read_dataset(data_dir, "test")
    dic = fit_dictionary(xtr, cfg)
    dim = 4 * cfg["k"]
    mean = sd = None
    for split, images, path in (("train", xtr, train_out), ("test", xte, test_out)):
        t1 = time.time()
        out, tmp = io.open_npy_writer(path, (len(images), dim), np.float32)
        try:
            encode(images, dic, cfg, device=device, out=out)
            if cfg["standardize"]:
                if mean is None:
                    mean, sd = feature_stats(out)
                _standardize_inplace(out, mean, sd)
            io.commit_npy(out, tmp, path)
        except BaseException:
            del out
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("%s: %d images -> %d K-means features in %.1f s", split, len(images), dim, time.time() - t1)
    prov = io.provenance(config={"kmeans": cfg, **common}, seed=cfg["seed"], inputs={"data": data_dir},
                         started=t0)
    extra = {} if mean is None else {"feature_mean": mean, "feature_sd": sd}
    with io.atomic_path(dictionary_out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **dic, **extra, provenance=np.array(json.dumps(prov, default=str)))
    return {"feature_dim": dim, "provenance": prov}
