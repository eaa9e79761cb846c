"""Table 2's supervised CNN baseline: the SVHN D architecture trained supervised on the SVM's labelled draw.

Rule ``svm_supervised_cnn`` (:func:`train`; the paper's "supervised CNN with the same
architecture", 28.87%): D's convolutional trunk with a class head (:class:`SupervisedCNN`), trained on one draw
of ``svm.svhn_labels_per_class`` labels per class from the L2-SVM protocols' split
(:mod:`dcgan_repro.svm.protocols`); a random search over lr, dropout and weight decay (:func:`sample_hparams`,
:func:`train_cnn_trial`) is scored on that split's validation set, and the best trial once on the test set.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan_repro import io, models, runtime
from dcgan_repro.svm import protocols

log = logging.getLogger(__name__)


class SupervisedCNN(nn.Module):
    """D's convolutional trunk with a ``n_classes``-way linear head in place of its 1-logit head (Table 2).

    ``forward``: x (N, C, H, W) -> netD.features(x)[-1] (N, C_L, H_L, W_L) -> flatten -> dropout -> Linear
    -> logits (N, n_classes). The trunk's own 1-logit head is left unused.
    """

    def __init__(self, netD: nn.Module, n_classes: int, dropout: float):
        super().__init__()
        self.trunk = netD
        c, h, w = netD.image_shape
        with torch.no_grad():
            was = netD.training
            netD.eval()
            flat = netD.features(torch.zeros(2, c, h, w, device=next(netD.parameters()).device))[-1][0].numel()
            netD.train(was)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(flat, n_classes)  # (C_L*H_L*W_L) -> n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.trunk.features(x)[-1].flatten(1)  # (N, C_L*H_L*W_L); (N, 4096) for svhn32 at ndf=64
        return self.head(self.drop(h))  # (N, n_classes)


def sample_hparams(rng: np.random.Generator, cfg: dict) -> dict[str, float]:
    """One random-search point: lr and weight decay log-uniform, dropout uniform (ranges from config)."""
    for key in ("lr_range", "dropout_range", "weight_decay_range"):
        if cfg[key][0] > cfg[key][1]:
            raise ValueError(f"config key 'supervised_cnn.{key}': {cfg[key]} must be [low, high] with low <= high")

    def log_uniform(lo: float, hi: float) -> float:
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    return {"lr": log_uniform(*cfg["lr_range"]), "dropout": float(rng.uniform(*cfg["dropout_range"])),
            "weight_decay": log_uniform(*cfg["weight_decay_range"])}


def _cnn_error_pct(net: nn.Module, images: np.ndarray, labels: np.ndarray, output_range: str,
                   device: torch.device, batch: int = 1000) -> float:
    net.eval()
    wrong = 0
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = models.to_model_input(np.asarray(images[s:s + batch]), output_range).to(device)  # (B, C, H, W)
            wrong += int((net(x).argmax(1).cpu().numpy() != labels[s:s + batch]).sum())
    return 100.0 * wrong / len(images)


def train_cnn_trial(run: dict, hparams: dict[str, float], x: np.ndarray, y: np.ndarray, *, n_classes: int,
                    epochs: int, batch_size: int, seed: int, device: torch.device,
                    precision: str = "fp32") -> nn.Module:
    """Train one :class:`SupervisedCNN` (built by ``models.build_models(run)``) with Adam(lr, beta1 of the run,
    weight decay added to the gradient) and cross-entropy, minibatches in a seeded order; returns it in eval mode.
    """
    runtime.seed_everything(seed)
    _, netD = models.build_models(run)
    net = SupervisedCNN(netD.to(device), n_classes, hparams["dropout"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=hparams["lr"], betas=(run["beta1"], 0.999),
                           weight_decay=hparams["weight_decay"])
    gen = torch.Generator().manual_seed(seed)
    xs = models.to_model_input(x, netD.output_range).to(device)  # (N, C, H, W): the labelled draw fits in memory
    ys = torch.as_tensor(y, dtype=torch.long, device=device)  # (N,)
    net.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xs), generator=gen).split(batch_size):
            if len(idx) < 2:  # BN needs two samples
                continue
            idx = idx.to(device)
            with runtime.autocast(device, precision):
                loss = F.cross_entropy(net(xs[idx]), ys[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def train(data_dir: io.PathLike, out_path: io.PathLike, cnn_cfg: dict, svm_cfg: dict, run: dict,
          common: dict) -> dict[str, Any]:
    """Rule ``svm_supervised_cnn`` (Table 2: "supervised CNN with the same architecture", 28.87%).

    The split is the SVM's (``svm.seed`` shuffle, first ``svm.validation_size`` = validation); one draw of
    ``svm.svhn_labels_per_class`` labels per class from the pool (seeded by ``supervised_cnn.seed``) is the
    training set. ``supervised_cnn.trials`` random hyperparameter sets (:func:`sample_hparams`) are each trained
    ``epochs`` epochs and scored on validation; the best trial is then scored once on the test set.
    """
    t0 = time.time()
    device = runtime.resolve_device(common["device"])
    precision = runtime.job_precision(common, device)
    meta = io.read_meta(data_dir)
    xtr, ytr = io.read_dataset(data_dir, "train")
    xte, yte = io.read_dataset(data_dir, "test")
    n_classes = int(meta.get("n_classes") or int(ytr.max()) + 1)
    lpc = svm_cfg["svhn_labels_per_class"]
    val, pool = protocols.split_train_validation(len(ytr), svm_cfg["validation_size"], svm_cfg["seed"])
    seeds = np.random.SeedSequence(cnn_cfg["seed"]).spawn(3)
    pools = protocols.class_pools(ytr, pool, n_classes, lpc, meta.get("class_names"),
                                  f"the labelled pool of {data_dir}", "svm.svhn_labels_per_class")
    lab = protocols.draw_labelled(pools, lpc, np.random.default_rng(seeds[0]))
    x_lab, y_lab = np.asarray(xtr[lab]), ytr[lab]
    x_val, y_val = np.asarray(xtr[val]), ytr[val]
    hp_rng = np.random.default_rng(seeds[1])
    trial_seeds = seeds[2].generate_state(cnn_cfg["trials"])
    log.info("supervised CNN: %d labelled, %d validation, %d trials x %d epochs on %s", len(lab), len(val),
             cnn_cfg["trials"], cnn_cfg["epochs"], device)
    trials, best, best_state = [], None, None
    for t in range(cnn_cfg["trials"]):
        hp = sample_hparams(hp_rng, cnn_cfg)
        net = train_cnn_trial(run, hp, x_lab, y_lab, n_classes=n_classes, epochs=cnn_cfg["epochs"],
                              batch_size=cnn_cfg["batch_size"], seed=int(trial_seeds[t]), device=device,
                              precision=precision)
        err = _cnn_error_pct(net, x_val, y_val, net.trunk.output_range, device)
        trials.append({"hparams": hp, "validation_error_pct": err, "seed": int(trial_seeds[t])})
        log.info("trial %d/%d %s: validation error %.2f%%", t + 1, cnn_cfg["trials"], hp, err)
        if best is None or err < trials[best]["validation_error_pct"]:
            best, best_state = t, copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)  # same architecture for every trial (dropout has no parameters)
    test_err = _cnn_error_pct(net, xte, yte, net.trunk.output_range, device)  # the only use of the test set
    log.info("best trial %d: validation %.2f%%, test %.2f%%", best + 1, trials[best]["validation_error_pct"],
             test_err)
    result = {
        "protocol": "supervised_cnn_svhn_1000",
        "validation_error_pct": trials[best]["validation_error_pct"],
        "test_error_pct": test_err,
        "best_trial": best,
        "labels_per_class": lpc,
        "n_validation": len(val),
        "trials": trials,
        "stand_in": meta.get("stand_in"),
        "provenance": io.provenance(config={"supervised_cnn": cnn_cfg, "svm": svm_cfg, "model": run, **common},
                                    seed=cnn_cfg["seed"], inputs={"data": data_dir}, started=t0),
    }
    io.write_json(out_path, result)
    return result
