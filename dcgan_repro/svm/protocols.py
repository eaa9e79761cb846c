"""L2-SVM protocols on discriminator features (Tables 1 and 2): split, label draws, choice of C, test score.

Each protocol fits one-vs-rest L2-SVMs with :func:`dcgan_repro.svm.solvers.fit_l2svm` (the authors' LinearSVC
objective) and scores the linear models ``argmax(X W^T + b)`` by streaming feature rows from memory maps, one pass
over a split for many models at once (:func:`error_pct`).

Protocols (rule ``svm_fit``, wildcard ``protocol``, :func:`fit`; docs/REFERENCE.md Sec. 4), registered with what
they read in :data:`PROTOCOLS` (:mod:`dcgan_repro.svm.registry`, the workflow's source too), named
``svm_<dataset>_<features>_<labels>`` (features: ``trained``, ``released``, ``kmeans``, ``pixels``):

* ``svm_svhn_*_1000`` (Table 2): SVHN train shuffled with ``svm.seed``; the first ``validation_size`` images are
  the validation set, the rest the labelled pool. C is chosen from ``c_grid`` by the mean validation error over
  ``selection_draws`` random draws of ``svhn_labels_per_class`` labels per class; then ``final_draws`` fresh
  draws with that C are scored on the test set: mean error and 1.96 x std (numpy std, ddof 0, as the code).
  The code drew new labels for every C; here every C sees the same selection draws (a paired comparison, so
  the choice of C is less noisy); the final draws are fresh.
* ``svm_cifar10_*_400pc`` (Table 1, "400 per class"): the same on CIFAR-10 with ``cifar10_labels_per_class``.
* ``svm_cifar10_*_all`` (Table 1, "accuracy"): C chosen by fitting on the pool (train minus validation) and
  scoring the validation set; then one fit with that C on *all* training images, validation included (the
  paper's 82.8% uses all 50,000 training images), and one test score (``test_error_ci95_pct`` is null). On a
  subset of at most 10 x 400 images this is the only possible "400 per class" draw (Table 1 shows it there).

The test set is read once, after C is fixed. The split and label draws (:func:`split_train_validation`,
:func:`class_pools`, :func:`draw_labelled`) are also those of Table 2's supervised CNN baseline
(:mod:`dcgan_repro.svm.supervised_cnn`).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Sequence

import numpy as np
import torch

from dcgan_repro import features, io, models, runtime
from dcgan_repro.svm import dual_cd, solvers
from dcgan_repro.svm.registry import PROTOCOLS, Protocol  # noqa: F401 (the registry, re-exported)

log = logging.getLogger(__name__)


# --- scoring ----------------------------------------------------------------------------------------


def error_pct(X: np.ndarray, y: np.ndarray, models: Sequence[solvers.LinearModel],
              block_rows: int = solvers.SCORE_BLOCK_ROWS) -> np.ndarray:
    """Error (%) of each linear model on (X, y), in one streamed pass over the rows of X (a memmap is fine);
    ``block_rows`` is set by tests only."""
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
                         "images; re-run features_extract")
    return x


ROWS_IN_MEMORY_BYTES = 1 << 30  # label draws up to this size are copied into memory; bigger ones are row views


class _RowSubset:
    """Rows ``idx`` (sorted) of a memory-mapped (N, F) array, read chunk by chunk on slicing (never copied whole).

    Supports what the solver and the scorer use: ``len``, ``shape``, ``dtype``, ``ndim`` and ``[start:stop]``.
    """

    def __init__(self, X: np.ndarray, idx: np.ndarray):
        self.X, self.idx = X, np.sort(idx)
        self.shape, self.dtype, self.ndim = (len(self.idx), X.shape[1]), X.dtype, 2

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, key: slice) -> np.ndarray:
        if not isinstance(key, slice):
            raise TypeError("_RowSubset supports slices only")
        return np.asarray(self.X[self.idx[key]])  # (n, F): this chunk's rows, in file order

    def __array__(self, dtype=None, copy=None) -> np.ndarray:  # liblinear needs the rows in memory anyway
        return np.asarray(self.X[self.idx], dtype)


def _rows(X: np.ndarray, idx: np.ndarray) -> np.ndarray | _RowSubset:
    """Rows ``idx`` of the feature memmap: all of it as is, a small draw copied (sorted: read in file order),
    a big one as a chunk-reading view (the 45,000-image pool of CIFAR-10 would be 5 GB)."""
    if len(idx) == len(X) and np.array_equal(np.sort(idx), np.arange(len(X))):
        return X
    if len(idx) * X.shape[1] * 4 <= ROWS_IN_MEMORY_BYTES:
        return np.asarray(X[np.sort(idx)], np.float32)
    return _RowSubset(X, idx)


def _fit_draws(Xtr: np.ndarray, ytr: np.ndarray, draws: Sequence[np.ndarray], cs: Sequence[float], n_classes: int,
               cfg: dict, device: torch.device | str = "cpu") -> list[list[solvers.LinearModel]]:
    """models[i][j]: C = cs[i] fitted on draw j. The C values are fitted in increasing order; with the torch and
    dual_cd solvers each starts from the previous solution (warm start), and dual_cd computes one Gram matrix per
    draw for all of them."""
    models: list[list[solvers.LinearModel] | None] = [[None] * len(draws) for _ in cs]
    order = np.argsort(cs, kind="stable")  # increasing C
    for j, idx in enumerate(draws):
        idx = np.sort(idx)
        X, y = _rows(Xtr, idx), ytr[idx]
        solver = solvers.resolve_solver(cfg.get("solver", "auto"), len(idx))
        fits_gram = len(idx) ** 2 * 8 <= dual_cd.GRAM_MAX_BYTES
        gram = dual_cd.gram_matrix(X, device) if solver == "dual_cd" and fits_gram else None  # one per draw, every C
        prev: solvers.LinearModel | None = None
        info: dict = {}
        t0 = time.time()
        for i in order:  # each C starts from the previous (smaller) C's solution
            dual = info.get("dual")
            info = {}
            prev = models[i][j] = solvers.fit_l2svm(X, y, cs[i], n_classes=n_classes, max_iter=cfg["max_iter"],
                                                    seed=cfg["seed"], solver=solver, device=device,
                                                    newton=cfg.get("newton", solvers.NEWTON_METHODS[0]),
                                                    init=prev if solver == "torch" else None, gram=gram,
                                                    dual_start=dual, info=info)
            if "passes" in info:
                log.debug("C=%g: %d Newton iterations, %.0f passes over X, %.1f s", cs[i], info["iterations"],
                          info["passes"], info["seconds"])
            elif "dual" in info:
                log.debug("C=%g: %d dual CD epochs, %.1f s", cs[i], info["iterations"], info["seconds"])
        log.info("draw %d/%d fitted (%d labels, %d values of C, %s) in %.1f s", j + 1, len(draws), len(idx),
                 len(cs), solver, time.time() - t0)
    return models


def check_c_grid(c_grid: Sequence[float]) -> list[float]:
    """The C values of config ``svm.c_grid`` as floats; an error naming the setting unless they are distinct,
    positive and finite (at least one)."""
    cs = [float(c) for c in c_grid]
    bad = [c for c in cs if not (c > 0 and math.isfinite(c))]
    if not cs or bad or len(set(cs)) != len(cs):
        raise ValueError(f"svm.c_grid = {list(c_grid)}: needs one or more distinct positive finite values of C "
                         f"(the authors' grid: 1e-4 ... 1e-2)" + (f"; not allowed: {bad}" if bad else ""))
    return cs


def model_feature_dim(run: dict, pool: int = 4) -> int:
    """Length of the Sec. 5.1 feature vector of the discriminator that run config ``run`` builds (no weights
    needed): 28,672 for the ImageNet D at ndf=128, 7,168 for the SVHN D at ndf=64."""
    _, netD = models.build_models(run)
    return features.feature_dim(netD, pool)


def _labels(data_dir: io.PathLike, split: str) -> np.ndarray:
    y = io.read_dataset(data_dir, split)[1]
    if len(y) and y.min() < 0:
        raise ValueError(f"dataset {data_dir} split {split} has unlabelled images (label -1); the SVM needs labels")
    return y


def fit(protocol: str, train_feats_path: io.PathLike, test_feats_path: io.PathLike,
        data_dir: io.PathLike, svm_cfg: dict, out_path: io.PathLike, common: dict,
        feature_model: dict | None = None, feature_pool: int = 4,
        about_path: io.PathLike | None = None) -> dict[str, Any]:
    """Rule ``svm_fit``: run one protocol of :data:`PROTOCOLS`, write its JSON (docs/CONTRACTS.md) and return it.

    ``svm_cfg`` is config ``svm``; ``data_dir`` the labelled dataset whose train/test splits the feature files'
    rows describe (labels and ``stand_in`` are read from it). ``feature_model``: the run config of the D the
    features should come from (with ``feature_pool``, config ``features.pool``): feature files of another length are
    refused before anything is fitted. ``about_path``: the JSON rule ``features_extract`` wrote beside the training
    features (which D, epoch, release, layers); it is copied into the result as ``feature_source``. The solver
    (config ``svm.solver``; ``svm.newton``: the torch solver's Newton
    method) runs on ``common["device"]``.
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
    cs = check_c_grid(svm_cfg["c_grid"])
    solver = svm_cfg.get("solver", "auto")
    solvers.resolve_solver(solver, 0)  # an unknown solver or Newton method fails here, before anything is read
    newton = solvers.check_newton(svm_cfg.get("newton", solvers.NEWTON_METHODS[0]))
    device = runtime.resolve_device(common.get("device", "cpu")) if solver != "liblinear" else torch.device("cpu")
    Xtr = _open_features(train_feats_path, len(ytr))
    dim = Xtr.shape[1]
    if feature_model is not None:
        want = model_feature_dim(feature_model, feature_pool)
        if dim != want:
            raise ValueError(f"feature file {train_feats_path} has {dim} dimensions but the {proto.features_run!r} "
                             f"discriminator (runs.{proto.features_run}: model {feature_model.get('model')!r}, "
                             f"ndf {feature_model.get('ndf')}) with features.pool = {feature_pool} gives {want}: "
                             "it was extracted with another model or pool size; re-run features_extract")
    about = None
    if about_path is not None:
        about = {k: v for k, v in io.read_json(about_path).items() if k != "provenance"}
        if about.get("feature_dim") != dim:
            raise ValueError(f"feature file {train_feats_path} has {dim} dimensions but {about_path} describes "
                             f"{about.get('feature_dim')}: re-run features_extract")
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
    models = _fit_draws(Xtr, ytr, sel, cs, n_classes, svm_cfg, device)
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
    final_models = _fit_draws(Xtr, ytr, final, [C], n_classes, svm_cfg, device)[0]
    Xte = _open_features(test_feats_path, len(yte))
    if Xte.shape[1] != dim:
        raise ValueError(f"feature files {train_feats_path} ({dim} dims) and {test_feats_path} ({Xte.shape[1]} "
                         "dims) come from different models; re-run features_extract")
    final_solver = solvers.resolve_solver(solver, len(final[0]))
    test_err = error_pct(Xte, yte, final_models)
    log.info("test error %.2f%% +- %.2f over %d fits", test_err.mean(), 1.96 * test_err.std(), len(test_err))

    result = {
        "protocol": protocol,
        "dataset": proto.dataset,
        "features": proto.features,
        "features_run": proto.features_run,
        "feature_source": about,
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
        "solver": solvers.solver_name(final_solver, newton),
        "newton": newton if final_solver == "torch" else None,
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
