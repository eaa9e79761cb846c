"""Frechet distance of generated MNIST digits in the feature space of an MNIST classifier the workflow trains.

FID (Heusel et al. 2017) compares Gaussian fits of Inception features; Inception features of 28x28 digits say
little, so for MNIST the same distance is taken in the penultimate layer (128 units, after ReLU) of a small CNN
classifier trained here on the 50,000-image training split (the validation split stays held out, as for Table 3).
Its test accuracy goes into its result file and the table, so the feature space can be judged.

``FD = |mu_g - mu_r|^2 + tr(S_g + S_r - 2 (S_g S_r)^(1/2))`` between the generated samples (balanced labels) and the
10,000 real test images.
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg
from torch import Tensor, nn

from dcgan_repro import io, models
from dcgan_repro.splits import validation_split

log = logging.getLogger(__name__)
FEATURES = 128


class MnistClassifier(nn.Module):
    """conv 3x3 (w) -> ReLU -> maxpool 2 -> conv 3x3 (2w) -> ReLU -> maxpool 2 -> FC 128 -> ReLU [features] -> FC 10."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.width = width
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)                  # (N, 1, 28, 28) -> (N, w, 28, 28)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)          # (N, w, 14, 14) -> (N, 2w, 14, 14)
        self.fc = nn.Linear(2 * width * 7 * 7, FEATURES)                # (N, 2w*49) -> (N, 128)
        self.out = nn.Linear(FEATURES, 10)

    def features(self, x: Tensor) -> Tensor:
        """(N, 1, 28, 28) in [0, 1] -> (N, 128)."""
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)                      # (N, w, 14, 14)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)                      # (N, 2w, 7, 7)
        return F.relu(self.fc(h.flatten(1)))                            # (N, 128)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.features(x))                               # (N, 10) logits


def _unit(x_uint8: np.ndarray) -> Tensor:
    """uint8 (N, 28, 28, 1) -> float32 (N, 1, 28, 28) in [0, 1]."""
    return models.to_model_input(np.asarray(x_uint8), "sigmoid")


def train_classifier(data_dir: io.PathLike, cfg: dict[str, Any], holdout: dict[str, Any], out_model: io.PathLike,
                     out_json: io.PathLike, common: dict[str, Any]) -> dict[str, Any]:
    """Rule ``ablation_classifier``: train on the training split (``holdout``: the validation split left out),
    report test accuracy; writes the weights and a result JSON with provenance."""
    t0 = time.time()
    torch.manual_seed(int(cfg["seed"]))
    x, y = io.read_dataset(data_dir, "train")
    keep, _ = validation_split(len(x), holdout["validation_size"], holdout["split_seed"])
    keep = np.sort(keep)
    x, y = np.asarray(x[keep]), np.asarray(y[keep]).astype(np.int64)
    net = MnistClassifier(int(cfg["width"]))
    opt = torch.optim.Adam(net.parameters(), lr=float(cfg["lr"]))
    rng = np.random.default_rng(int(cfg["seed"]))
    bs = int(cfg["batch_size"])
    net.train()
    for epoch in range(int(cfg["epochs"])):
        order = rng.permutation(len(x))
        total = 0.0
        for b in range(0, len(x) - bs + 1, bs):
            idx = np.sort(order[b:b + bs])
            loss = F.cross_entropy(net(_unit(x[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss)
        log.info("classifier epoch %d: mean training loss %.4f", epoch + 1, total / max(1, len(x) // bs))
    net.eval()
    tx, ty = io.read_dataset(data_dir, "test")
    acc = float((predict(net, tx) == np.asarray(ty)).mean() * 100)
    with io.atomic_path(out_model) as tmp:
        torch.save({"state_dict": net.state_dict(), "width": net.width}, tmp)
    meta = io.read_meta(data_dir)
    out = {"test_accuracy_pct": acc, "n_train": len(x), "n_test": len(tx), "features": FEATURES,
           "stand_in": meta.get("stand_in"),
           "provenance": io.provenance(config={"classifier": cfg, "holdout": holdout, "common": common},
                                       seed=int(cfg["seed"]), inputs={"data": data_dir}, started=t0)}
    io.write_json(out_json, out)
    log.info("MNIST classifier: test accuracy %.2f%% (%d training images)", acc, len(x))
    return out


def load_classifier(path: io.PathLike) -> MnistClassifier:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    net = MnistClassifier(int(ck["width"]))
    net.load_state_dict(ck["state_dict"])
    return net.eval()


@torch.no_grad()
def predict(net: MnistClassifier, x_uint8: np.ndarray, batch: int = 1000) -> np.ndarray:
    return np.concatenate([net(_unit(x_uint8[i:i + batch])).argmax(1).numpy() for i in range(0, len(x_uint8), batch)])


@torch.no_grad()
def features(net: MnistClassifier, x_uint8: np.ndarray, batch: int = 1000) -> np.ndarray:
    """(N, 28, 28, 1) uint8 -> (N, 128) float64."""
    return np.concatenate([net.features(_unit(x_uint8[i:i + batch])).double().numpy()
                           for i in range(0, len(x_uint8), batch)])


def gaussian(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) (ddof 1) of features (N, D)."""
    return feats.mean(0), np.cov(feats, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, eps: float = 1e-6) -> float:
    """``|mu1 - mu2|^2 + tr(s1 + s2 - 2 sqrtm(s1 s2))``; a singular product gets ``eps`` on the diagonals (as the
    reference FID code does)."""
    with warnings.catch_warnings():          # a singular product is handled below, not reported
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            off = np.eye(len(s1)) * eps
            covmean = linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def fd_of_generator(netG: nn.Module, z_dist: str, classifier: MnistClassifier, data_dir: io.PathLike, n: int,
                    seed: int, batch_size: int, device: str | torch.device = "cpu") -> dict[str, Any]:
    """FD between ``n`` samples of a class-conditional G (balanced labels, seeded) and the real test images."""
    from dcgan_repro.mnist_eval.protocol import balanced_labels

    labels = balanced_labels(int(n), netG.n_classes, int(seed))
    gen = models.generate(netG, int(n), z_dist=z_dist, seed=int(seed), labels=labels, batch_size=batch_size,
                          device=device)                                       # (n, 28, 28, 1) uint8
    tx, _ = io.read_dataset(data_dir, "test")
    fg, fr = features(classifier, gen), features(classifier, np.asarray(tx))
    acc = float((predict(classifier, gen) == labels).mean() * 100)
    return {"fd": frechet_distance(*gaussian(fg), *gaussian(fr)), "n_generated": int(n), "n_real": len(tx),
            "classifier_accuracy_on_samples_pct": acc}

