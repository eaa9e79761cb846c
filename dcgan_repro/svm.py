"""L2-SVM protocols on discriminator features (Tables 1 and 2) and the supervised CNN baseline (Table 2).

The classifier is the authors' (``svhn/svhn_semisup_analysis.py``, Newmu/dcgan_code ee12b2d):
``sklearn.svm.LinearSVC(C=c)`` with defaults, i.e. one-vs-rest squared hinge ("L2-SVM"), L2 penalty, an
intercept, no feature scaling. :func:`fit_l2svm` is the one place the solver lives (swap it for a GPU solver
with the same ``(W, b)`` result); everything else scores linear models ``argmax(X W^T + b)`` by streaming
feature rows from memory maps, one pass over a split for many models at once.

Protocols (rule ``fit_svm``, wildcard ``protocol``; REFERENCE.md Sec. 4):

* ``svm_svhn_1000`` (Table 2): SVHN train shuffled with ``svm.seed``; the first ``validation_size`` images are
  the validation set, the rest the labelled pool. C is chosen from ``c_grid`` by the mean validation error over
  ``selection_draws`` random draws of ``svhn_labels_per_class`` labels per class; then ``final_draws`` fresh
  draws with that C are scored on the test set: mean error and 1.96 x std (numpy std, ddof 0, as the code).
  The code drew new labels for every C; here every C sees the same selection draws (a paired comparison, so
  the choice of C is less noisy); the final draws are fresh.
* ``svm_cifar10_400pc`` (Table 1, "400 per class"): the same on CIFAR-10 with ``cifar10_labels_per_class``.
* ``svm_cifar10_all`` (Table 1, "accuracy"): C chosen by fitting on the pool (train minus validation) and
  scoring the validation set; then one fit with that C on *all* training images, validation included (the
  paper's 82.8% uses all 50,000 training images), and one test score (``test_error_ci95_pct`` is null).

The test set is read once, after C is fixed.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC
from torch import nn

from dcgan_repro import io, models, runtime

log = logging.getLogger(__name__)

SCORE_BLOCK_ROWS = 2048  # feature rows per streamed block when scoring (2048 x 28,672 float32 = 235 MB)


@dataclass(frozen=True)
class Protocol:
    """One registered evaluation protocol (its name is the rule wildcard and the result file name)."""

    name: str
    dataset: str  # labelled dataset the features describe
    features_run: str  # the training run whose D gives the features (common.smk FEATURE_SETS)
    labels_key: str | None  # svm config key with labels per class; None = all training labels
    paper: str  # what it reproduces


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("svm_svhn_1000", "svhn", "svhn", "svhn_labels_per_class", "Table 2: SVHN, 1000 labels"),
    Protocol("svm_cifar10_400pc", "cifar10", "imagenet32", "cifar10_labels_per_class",
             "Table 1: CIFAR-10, 400 labels per class"),
    Protocol("svm_cifar10_all", "cifar10", "imagenet32", None, "Table 1: CIFAR-10, all training labels"),
]}

LinearModel = tuple[np.ndarray, np.ndarray]  # (W (K, F) float32, b (K,) float32); predict argmax(X W^T + b)


# --- the solver (the one swappable piece) ----------------------------------------------------------


def fit_l2svm(X: np.ndarray, y: np.ndarray, C: float, *, n_classes: int, max_iter: int = 1000,
              seed: int = 0) -> LinearModel:
    """One-vs-rest L2-SVM (squared hinge, L2 penalty, intercept): ``sklearn.svm.LinearSVC(C=C)``, as the code.

    ``X``: (N, F) features, ``y``: (N,) labels in [0, n_classes). Returns ``(W, b)`` with one row per class
    (W (n_classes, F), b (n_classes,)); a class absent from ``y`` gets W = 0, b = -inf (never predicted).
    liblinear keeps a float64 copy of ``X`` plus its own sparse copy (~3x the float32 size): fine for the
    labelled draws, too big for 50,000 x 28,672 (a GPU solver is to replace it there).
    """
    _check_liblinear_memory(X)
    clf = LinearSVC(C=C, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(X, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("LinearSVC(C=%g) did not converge in svm.max_iter = %d iterations (N=%d, F=%d)", C,
                    max_iter, *X.shape)
    coef, icpt = clf.coef_, clf.intercept_  # (K', F), (K',); K' = 1 for two classes
    if len(clf.classes_) == 2:
        coef, icpt = np.concatenate([-coef, coef]), np.concatenate([-icpt, icpt])  # (2, F), (2,)
    W = np.zeros((n_classes, X.shape[1]), np.float32)  # (K, F)
    b = np.full(n_classes, -np.inf, np.float32)  # (K,)
    W[clf.classes_], b[clf.classes_] = coef, icpt
    return W, b


def _check_liblinear_memory(X: np.ndarray) -> None:
    """Refuse, with the numbers, a fit that cannot fit in memory (instead of being killed by the OOM killer)."""
    need = X.shape[0] * X.shape[1] * (8 + 16)  # float64 copy + liblinear feature_node (int index + double)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return
    if need > avail:
        raise MemoryError(f"LinearSVC on {X.shape[0]} x {X.shape[1]} features needs about {need / 2**30:.1f} GiB "
                          f"(float64 copy plus liblinear's own copy) but {avail / 2**30:.1f} GiB are available; "
                          "use fewer labels, or a machine with more memory")


def predict(X: np.ndarray, model: LinearModel) -> np.ndarray:
    """Class predictions argmax(X W^T + b) for an in-memory (N, F) block."""
    W, b = model
    return np.argmax(X @ W.T + b, axis=1)  # (N, K) -> (N,)


def error_pct(X: np.ndarray, y: np.ndarray, models: Sequence[LinearModel],
              block_rows: int = SCORE_BLOCK_ROWS) -> np.ndarray:
    """Error (%) of each linear model on (X, y), in one streamed pass over the rows of X (a memmap is fine)."""
    W = np.concatenate([m[0] for m in models])  # (M*K, F)
    b = np.concatenate([m[1] for m in models])  # (M*K,)
    n_models, n_classes = len(models), len(models[0][1])
    wrong = np.zeros(n_models, np.int64)
    for start in range(0, len(X), block_rows):
        xb = np.asarray(X[start:start + block_rows], np.float32)  # (B, F)
        scores = (xb @ W.T + b).reshape(len(xb), n_models, n_classes)  # (B, M, K)
        wrong += (scores.argmax(2) != np.asarray(y[start:start + block_rows])[:, None]).sum(0)  # (M,)
    return 100.0 * wrong / len(X)


# --- splits and label draws -------------------------------------------------------------------------


def split_train_validation(n_train: int, validation_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle the training indices with ``seed``; first ``validation_size`` = validation, rest = labelled pool.

    Returns (validation indices sorted, pool indices sorted) (SVHN code: seed-42 shuffle, first 10,000).
    """
    if not 0 < validation_size < n_train:
        raise ValueError(f"svm.validation_size = {validation_size} must be between 1 and the number of training "
                         f"images minus one ({n_train - 1})")
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[:validation_size]), np.sort(perm[validation_size:])


def class_pools(y: np.ndarray, pool: np.ndarray, n_classes: int, labels_per_class: int,
                class_names: Sequence[str] | None = None, where: str = "the labelled pool",
                setting: str = "labels per class") -> list[np.ndarray]:
    """Indices of each class within ``pool``; an error naming every class with fewer than ``labels_per_class``
    (and the config ``setting`` that asked for them)."""
    pools = [pool[y[pool] == k] for k in range(n_classes)]
    short = [(k, len(p)) for k, p in enumerate(pools) if len(p) < labels_per_class]
    if short:
        names = [f"class {k}" + (f" ({class_names[k]})" if class_names else "") + f" has {n}"
                 for k, n in short]
        raise ValueError(f"cannot draw {labels_per_class} labels per class from {where}: "
                         f"{'; '.join(names)} images (lower {setting} or svm.validation_size)")
    return pools


def draw_labelled(pools: Sequence[np.ndarray], labels_per_class: int, rng: np.random.Generator) -> np.ndarray:
    """One draw of ``labels_per_class`` distinct indices from every class pool, returned sorted."""
    return np.sort(np.concatenate([rng.choice(p, labels_per_class, replace=False) for p in pools]))


# --- protocols --------------------------------------------------------------------------------------


def _open_features(path: io.PathLike, n_rows: int) -> np.ndarray:
    """Memory-mapped float32 (N, F) feature file whose rows must be the split's images."""
    x = io.load_npy(path)
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"feature file {path}: expected float32 N x F, got {x.dtype} {x.shape}")
    if len(x) != n_rows:
        raise ValueError(f"feature file {path} has {len(x)} rows but its dataset split has {n_rows} labelled "
                         "images; re-run extract_features")
    return x


def _rows(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.asarray(X[np.sort(idx)], np.float32)  # sorted: memmap reads in file order


def _fit_draws(Xtr: np.ndarray, ytr: np.ndarray, draws: Sequence[np.ndarray], cs: Sequence[float], n_classes: int,
               cfg: dict) -> list[list[LinearModel]]:
    """models[i][j]: C = cs[i] fitted on draw j (each draw's rows are read once for every C)."""
    models: list[list[LinearModel]] = [[] for _ in cs]
    for j, idx in enumerate(draws):
        X = _rows(Xtr, idx)  # (n_draw, F)
        for i, c in enumerate(cs):
            models[i].append(fit_l2svm(X, ytr[idx], c, n_classes=n_classes, max_iter=cfg["max_iter"],
                                       seed=cfg["seed"]))
        log.info("draw %d/%d fitted (%d labels, %d values of C)", j + 1, len(draws), len(idx), len(cs))
    return models


def _labels(data_dir: io.PathLike, split: str) -> np.ndarray:
    y = io.read_dataset(data_dir, split)[1]
    if len(y) and y.min() < 0:
        raise ValueError(f"dataset {data_dir} split {split} has unlabelled images (label -1); the SVM needs labels")
    return y


def fit_and_score(protocol: str, train_feats_path: io.PathLike, test_feats_path: io.PathLike,
                  data_dir: io.PathLike, svm_cfg: dict, out_path: io.PathLike, common: dict) -> dict[str, Any]:
    """Rule ``fit_svm``: run one protocol of :data:`PROTOCOLS`, write its JSON (docs/CONTRACTS.md) and return it.

    ``svm_cfg`` is config ``svm``; ``data_dir`` the labelled dataset whose train/test splits the feature files'
    rows describe (labels and ``stand_in`` are read from it).
    """
    t0 = time.time()
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown SVM protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    proto = PROTOCOLS[protocol]
    meta = io.read_meta(data_dir)
    if meta.get("name", proto.dataset) != proto.dataset:
        raise ValueError(f"protocol {protocol} needs dataset {proto.dataset!r} but {data_dir} holds "
                         f"{meta.get('name')!r}")
    ytr, yte = _labels(data_dir, "train"), _labels(data_dir, "test")
    n_classes = int(meta.get("n_classes") or int(max(ytr.max(), yte.max())) + 1)
    class_names = meta.get("class_names")
    Xtr = _open_features(train_feats_path, len(ytr))
    dim = Xtr.shape[1]
    cs = [float(c) for c in svm_cfg["c_grid"]]
    val, pool = split_train_validation(len(ytr), svm_cfg["validation_size"], svm_cfg["seed"])
    Xva = _rows(Xtr, val)  # (n_val, F): held in memory, scored for every model
    select_rng, final_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(svm_cfg["seed"]).spawn(2))
    lpc = svm_cfg[proto.labels_key] if proto.labels_key else None
    log.info("%s: %d train (%d validation, %d pool), %d test, %d features, %d classes, C grid %s", protocol,
             len(ytr), len(val), len(pool), len(yte), dim, n_classes, cs)

    # 1. choose C on the validation split (the test set is not opened yet)
    if lpc is not None:
        pools = class_pools(ytr, pool, n_classes, lpc, class_names, f"the {len(pool)}-image labelled pool of "
                            f"{data_dir} (train minus svm.validation_size)", f"svm.{proto.labels_key}")
        sel = [draw_labelled(pools, lpc, select_rng) for _ in range(svm_cfg["selection_draws"])]
    else:
        sel = [pool]
    models = _fit_draws(Xtr, ytr, sel, cs, n_classes, svm_cfg)
    val_err = error_pct(Xva, ytr[val], [m for per_c in models for m in per_c]).reshape(len(cs), len(sel))
    mean_val = val_err.mean(1)
    best = int(np.argmin(mean_val))  # ties: the smaller C (grid order)
    C = cs[best]
    for c, e in zip(cs, val_err):
        log.info("C=%g: validation error %.2f%% +- %.2f", c, e.mean(), 1.96 * e.std())
    log.info("chosen C = %g", C)
    if len(cs) > 1 and best in (0, len(cs) - 1):
        log.warning("chosen C = %g is at the edge of svm.c_grid %s: the best C may lie beyond it", C, cs)
    del Xva, models

    # 2. final fits with that C, then the only read of the test set
    if lpc is not None:
        final = [draw_labelled(pools, lpc, final_rng) for _ in range(svm_cfg["final_draws"])]
    else:
        final = [np.arange(len(ytr))]  # all training images, validation included (paper: all 50,000)
    final_models = _fit_draws(Xtr, ytr, final, [C], n_classes, svm_cfg)[0]
    Xte = _open_features(test_feats_path, len(yte))
    if Xte.shape[1] != dim:
        raise ValueError(f"feature files {train_feats_path} ({dim} dims) and {test_feats_path} ({Xte.shape[1]} "
                         "dims) come from different models; re-run extract_features")
    test_err = error_pct(Xte, yte, final_models)
    log.info("test error %.2f%% +- %.2f over %d fits", test_err.mean(), 1.96 * test_err.std(), len(test_err))

    result = {
        "protocol": protocol,
        "dataset": proto.dataset,
        "features": proto.features_run,
        "feature_dim": dim,
        "labels_per_class": lpc,
        "C": C,
        "validation_error_pct": {f"{c:g}": float(e) for c, e in zip(cs, mean_val)},
        "test_error_pct": float(test_err.mean()),
        "test_error_ci95_pct": float(1.96 * test_err.std()) if lpc is not None else None,
        "test_accuracy_pct": float(100.0 - test_err.mean()),
        "draws": len(test_err),
        "stand_in": meta.get("stand_in"),
        "paper": proto.paper,
        "solver": "sklearn.svm.LinearSVC (liblinear; squared hinge, one-vs-rest, L2, intercept)",
        "n_validation": len(val),
        "n_labelled_pool": len(pool),
        "n_test": len(yte),
        "final_fit": "fresh label draws" if lpc is not None else "all training images, validation included",
        "provenance": io.provenance(config={"protocol": protocol, "svm": svm_cfg, **common}, seed=svm_cfg["seed"],
                                    inputs={"train_features": train_feats_path, "test_features": test_feats_path,
                                            "data": data_dir}, started=t0),
    }
    io.write_json(out_path, result)
    return result


# --- Table 2 baseline: the SVHN D architecture trained supervised -----------------------------------


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


def train_supervised_cnn(data_dir: io.PathLike, out_path: io.PathLike, cnn_cfg: dict, svm_cfg: dict, run: dict,
                         common: dict) -> dict[str, Any]:
    """Rule ``train_supervised_cnn`` (Table 2: "supervised CNN with the same architecture", 28.87%).

    The split is the SVM's (``svm.seed`` shuffle, first ``svm.validation_size`` = validation); one draw of
    ``svm.svhn_labels_per_class`` labels per class from the pool (seeded by ``supervised_cnn.seed``) is the
    training set. ``supervised_cnn.trials`` random hyperparameter sets (:func:`sample_hparams`) are each trained
    ``epochs`` epochs and scored on validation; the best trial is then scored once on the test set.
    """
    t0 = time.time()
    device = runtime.resolve_device(common["device"])
    meta = io.read_meta(data_dir)
    xtr, ytr = io.read_dataset(data_dir, "train")
    xte, yte = io.read_dataset(data_dir, "test")
    n_classes = int(meta.get("n_classes") or int(ytr.max()) + 1)
    lpc = svm_cfg["svhn_labels_per_class"]
    val, pool = split_train_validation(len(ytr), svm_cfg["validation_size"], svm_cfg["seed"])
    seeds = np.random.SeedSequence(cnn_cfg["seed"]).spawn(3)
    pools = class_pools(ytr, pool, n_classes, lpc, meta.get("class_names"), f"the labelled pool of {data_dir}",
                        "svm.svhn_labels_per_class")
    lab = draw_labelled(pools, lpc, np.random.default_rng(seeds[0]))
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
                              precision=common.get("precision", "fp32"))
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
