"""FID of the 64x64 runs (faces, LSUN) through torch-fidelity, with the standard Inception weights.

Protocol: torch-fidelity's ``inception-v3-compat`` feature extractor (the TensorFlow Inception network of Heusel
et al. 2017, ported bit for bit, 2048-d pool3 features) on uint8 RGB images, ``fid=True``; generated samples
against as many training images (config ``ablation.fid``). The weights file is the one torch-fidelity itself uses
(``weights-inception-2015-12-05-6726825d.pth``): :func:`ensure_weights` downloads it on first use to the configured
path (config ``ablation.fid.weights``, never a hidden cache) and checks its sha256 against the prefix in its release
name (``6726825d``, the check ``torch.hub`` applies to it); the full digest goes into the result's provenance. On a
machine without internet and without the file, it fails with :class:`FidWeightsUnavailable`, which says where to
put the file. Any registered torch-fidelity feature extractor can stand in for Inception (``extractor``): the tests
run the whole path offline with a small stand-in network.
"""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dcgan_repro import io

log = logging.getLogger(__name__)

INCEPTION_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")
INCEPTION_SHA256_PREFIX = "6726825d"
INCEPTION = "inception-v3-compat"
FID_KEY = "frechet_inception_distance"


class FidWeightsUnavailable(RuntimeError):
    """The Inception weights are neither on disk nor downloadable (offline), or the file fails its checksum."""


def verify(path: io.PathLike, prefix: str = INCEPTION_SHA256_PREFIX) -> str:
    """sha256 of the weights file; raises :class:`FidWeightsUnavailable` unless it starts with ``prefix``."""
    digest = io.sha256_file(path)
    if not digest.startswith(prefix):
        raise FidWeightsUnavailable(f"{path}: sha256 {digest} does not start with {prefix}, the digest prefix of the "
                                    f"standard Inception weights ({INCEPTION_URL}); delete the file and rerun, or "
                                    "place the correct file there (config key 'ablation.fid.weights')")
    return digest


def ensure_weights(path: io.PathLike, url: str = INCEPTION_URL, prefix: str = INCEPTION_SHA256_PREFIX,
                   timeout: float = 60.0) -> dict[str, str]:
    """The verified weights file at ``path``, downloaded from ``url`` first if absent: {path, sha256, url}."""
    path = Path(path)
    if not path.is_file():
        log.info("downloading the Inception weights for FID: %s -> %s", url, path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, io.atomic_path(path) as tmp, open(tmp, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise FidWeightsUnavailable(
                f"FID needs the standard Inception weights at {path} (config key 'ablation.fid.weights'), and "
                f"downloading them from {url} failed ({e}); this machine looks offline. Download that file on a "
                "machine with internet and copy it to that path, then rerun.") from None
    return {"path": str(path), "sha256": verify(path, prefix), "url": url}


class _Images(torch.utils.data.Dataset):
    """uint8 (N, H, W, C) images as the (C, H, W) uint8 tensors torch-fidelity reads (grey repeated to RGB)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(self.x[i])).permute(2, 0, 1)   # (C, H, W)
        return t.expand(3, -1, -1).contiguous() if t.shape[0] == 1 else t


def fid(generated: np.ndarray, real: np.ndarray, *, extractor: str = INCEPTION, weights: io.PathLike | None = None,
        batch_size: int = 64, cuda: bool = False) -> float:
    """FID between two uint8 (N, H, W, C) image sets through torch-fidelity (no disk cache)."""
    import torch_fidelity

    for name, x in (("generated", generated), ("real", real)):
        if x.dtype != np.uint8 or x.ndim != 4 or len(x) < 2:
            raise ValueError(f"{name} images must be uint8 N x H x W x C with N >= 2, got {x.dtype} {x.shape}")
    kw: dict[str, Any] = {}
    if weights is not None:
        kw["feature_extractor_weights_path"] = str(weights)
    metrics = torch_fidelity.calculate_metrics(
        input1=_Images(generated), input2=_Images(real), fid=True, feature_extractor=extractor,
        batch_size=batch_size, cuda=cuda, cache=False, verbose=False, save_cpu_ram=True, samples_shuffle=False, **kw)
    return float(metrics[FID_KEY])
