"""Measure the L2-SVM on real CIFAR-10 images (the 400-per-class regime in size) with four kinds of features.

Data: a CIFAR-10 subset in one .npz (``x_train`` uint8 (N, 32, 32, 3), ``y_train``, ``x_test``, ``y_test``,
``class_names``); ../shared/data/cifar10/cifar10_subset.npz holds the official train images 0..3999 and test
images 0..999 (400 per class on average, not stratified). Features compared, each fed to the same L2-SVM:

a. ``raw``: pixels scaled to [-1, 1] (D's input), 3072 dims;
b. ``kmeans``: the single-layer K-means baseline (``dcgan_repro.kmeans``: 6x6 patches, normalisation, ZCA,
   K-means dictionary fitted on the training images' patches, triangle activation, 4-quadrant sum pooling,
   standardised), 4K dims;
c. ``authors_imagenet_d4``: the authors' released ImageNet 32x32 D (Newmu/dcgan_code, epoch 30), **only its
   first four convolutions** (the two 512-channel kernels could not be had): (128+128+256+256) x 16 = 12,288
   dims instead of the paper's 28,672; batch norm fixed from the training images (``features.bn_stats: fixed``);
d. ``trained_d``: the D of an imagenet32-architecture DCGAN trained here on the CPU on the subset's own training
   images (labels unused; widths ``--d-width``, ``--d-epochs`` epochs, bf16 autocast) - not ImageNet, so this
   is the CIFAR-trained setting of papers/003 (49.2 % there at full scale), not the paper's.

Rows a-c come from the workflow itself with ``presets/table1_subset.yaml`` (Table 1's rules, the project's own
solver, the released files verified); this script cross-checks them with LinearSVC and adds row d.

SVM protocol (``svm_cifar10_*_all`` of ``dcgan_repro.svm.protocols`` on this subset): the training images are
shuffled with ``--seed``; the first ``--validation-size`` are the validation split; every C of ``--c-grid`` is
fitted on the rest and scored on validation; the best C is refitted on all training images and scored once on the
test set. The solver is ``solvers.fit_l2svm`` with ``solver="liblinear"`` (scikit-learn's LinearSVC, the authors'
classifier; ``--solver torch`` for the project's own solver). Features are cached under ``--work``; delete a file
to redo it.

    python benchmarks/cifar10_subset_svm.py                     # all four; ~20-30 min on 2 CPU cores
    python benchmarks/cifar10_subset_svm.py --only raw kmeans   # a subset of the rows
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dcgan_repro import features, io, kmeans, models, runtime, theano_weights, train  # noqa
from dcgan_repro.svm import protocols, solvers  # noqa

log = logging.getLogger("cifar10_subset_svm")
SHARED = REPO.parent / "shared" / "data"
KINDS = ("raw", "kmeans", "authors_imagenet_d4", "trained_d")
C_GRID = [1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1]  # the authors' range 1e-4..1e-2, widened by a decade each way


def write_dataset(npz: Path, out: Path) -> Path:
    """The subset in the pipeline's dataset format (docs/CONTRACTS.md), so the library reads it as it is."""
    if (out / "meta.json").is_file():
        return out
    d = np.load(npz)
    io.write_dataset(out, "train", d["x_train"], d["y_train"].astype(np.int64))
    io.write_dataset(out, "test", d["x_test"], d["y_test"].astype(np.int64))
    io.write_json(out / "meta.json", {
        "name": "cifar10", "splits": {"train": len(d["y_train"]), "test": len(d["y_test"])},
        "image_shape": [32, 32, 3], "n_classes": 10, "class_names": [str(c) for c in d["class_names"]],
        "source": f"{npz}: official CIFAR-10 train images 0..{len(d['y_train']) - 1}, test images "
                  f"0..{len(d['y_test']) - 1}", "stand_in": None})
    return out


def raw_features(data: Path, work: Path) -> None:
    for split in ("train", "test"):
        x, _ = io.read_dataset(data, split)
        io.save_npy(work / f"raw_{split}.npy", models.to_model_input(np.asarray(x), "tanh").flatten(1).numpy())


def kmeans_features(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    cfg = {"k": args.k, "patch": 6, "stride": 1, "train_patches": args.kmeans_patches, "norm_eps": 10.0,
           "whiten_eps": 0.1, "max_iter": args.kmeans_iter, "batch_size": 4096, "standardize": True, "seed": 0}
    return kmeans.kmeans_features(data, work / "kmeans_train.npy", work / "kmeans_test.npy",
                                  work / "kmeans_dictionary.npz", cfg, {"device": "cpu", "preset": "benchmark"})


def d_features(netD: torch.nn.Module, data: Path, work: Path, name: str) -> None:
    xtr, _ = io.read_dataset(data, "train")
    for split in ("train", "test"):
        x, _ = io.read_dataset(data, split)
        features.extract_features(netD, x, "tanh", bn_stats="fixed", bn_source_images=xtr, batch_size=250,
                                  bn_seed=42, out_path=work / f"{name}_{split}.npy")


def train_d(data: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """An imagenet32 DCGAN (authors' architecture and recipe, narrower) trained on the subset's train images."""
    base = yaml.safe_load((REPO / "config.yaml").read_text())["runs"]["imagenet32"]
    run = dict(base, dataset="cifar10", ngf=args.d_width, ndf=args.d_width, batch_size=args.d_batch,
               epochs=args.d_epochs, decay_epochs=0, snapshot_epochs=[args.d_epochs], checkpoint_every=10 ** 6,
               sample_every=10 ** 6, log_every=50, max_steps=0, seed=0)
    out = work / "trained_d"
    summary = train.train_gan(run, "cifar10_subset_d", data, out / "model.pt", out / "summary.json",
                              out / "checkpoints", {"preset": "benchmark", "device": "cpu", "precision": "bf16"})
    return {"run": run, "train_summary": summary}


def fit_protocol(name: str, work: Path, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    """svm_cifar10_*_all on the subset: C on a validation split carved from train, refit on all, test once."""
    t0 = time.time()
    ytr, yte = io.read_dataset(data, "train")[1], io.read_dataset(data, "test")[1]
    Xtr = io.load_npy(work / f"{name}_train.npy", mmap=False)
    val, pool = protocols.split_train_validation(len(ytr), args.validation_size, args.seed)
    kw: dict[str, Any] = {"n_classes": 10, "max_iter": args.max_iter}
    if args.solver and "solver" in inspect.signature(solvers.fit_l2svm).parameters:
        kw["solver"] = args.solver
    val_err = {}
    for c in args.c_grid:
        m = solvers.fit_l2svm(Xtr[pool], ytr[pool], c, **kw)
        val_err[c] = float(protocols.error_pct(Xtr[val], ytr[val], [m])[0])
        log.info("%s: C=%g validation error %.2f%%", name, c, val_err[c])
    best = min(args.c_grid, key=lambda c: (val_err[c], c))
    final = solvers.fit_l2svm(Xtr, ytr, best, **kw)
    Xte = io.load_npy(work / f"{name}_test.npy", mmap=False)  # the only read of the test features
    test_err = float(protocols.error_pct(Xte, yte, [final])[0])
    edge = best in (min(args.c_grid), max(args.c_grid))
    log.info("%s: %d dims, C=%g%s, test accuracy %.2f%%", name, Xtr.shape[1], best,
             " (edge of the grid)" if edge else "", 100 - test_err)
    return {"features": name, "feature_dim": int(Xtr.shape[1]), "C": best, "C_at_grid_edge": edge,
            "validation_error_pct": {f"{c:g}": e for c, e in val_err.items()}, "test_error_pct": test_err,
            "test_accuracy_pct": 100 - test_err, "n_train": len(ytr), "n_validation": len(val),
            "n_test": len(yte), "solver": kw.get("solver", "fit_l2svm default"), "svm_seconds": time.time() - t0}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--npz", default=str(SHARED / "cifar10" / "cifar10_subset.npz"))
    p.add_argument("--weights", default=str(SHARED / "weights" / "dcgan_code_imagenet_partial"),
                   help="the released ImageNet folder (30_discrim_params.jl and its .npy files)")
    p.add_argument("--work", default="/tmp/cifar10_subset_svm", help="cache of the dataset, features, model")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "cifar10_subset_svm.json"))
    p.add_argument("--only", nargs="+", choices=KINDS, default=list(KINDS))
    p.add_argument("--c-grid", nargs="+", type=float, default=C_GRID)
    p.add_argument("--validation-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--max-iter", type=int, default=2000)
    p.add_argument("--solver", default="liblinear",
                   help="passed to solvers.fit_l2svm when it takes one: liblinear (LinearSVC, the authors' "
                        "classifier) | torch")
    p.add_argument("--k", type=int, default=1600, help="K-means dictionary size (Coates et al.: 1600; paper row 4800)")
    p.add_argument("--kmeans-patches", type=int, default=100000)
    p.add_argument("--kmeans-iter", type=int, default=10, help="MiniBatchKMeans passes over the patches")
    p.add_argument("--d-width", type=int, default=16, help="ngf = ndf of the D trained here (paper: 128)")
    p.add_argument("--d-epochs", type=int, default=6)
    p.add_argument("--d-batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runtime.set_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = write_dataset(Path(args.npz), work / "data")
    report: dict[str, Any] = {"npz": args.npz, "args": vars(args), "rows": {}, "notes": {}}
    t_all = time.time()
    for kind in args.only:
        t0 = time.time()
        if not (work / f"{kind}_test.npy").is_file():
            if kind == "raw":
                raw_features(data, work)
            elif kind == "kmeans":
                report["notes"]["kmeans"] = {"feature_dim": kmeans_features(data, work, args)["feature_dim"]}
            elif kind == "authors_imagenet_d4":
                netD = theano_weights.load_discriminator(args.weights, "imagenet32", n_convs=4)
                d_features(netD, data, work, kind)
            else:
                report["notes"]["trained_d"] = train_d(data, work, args)
                _, netD, _ = models.load_checkpoint(work / "trained_d" / "model.pt")
                d_features(netD, data, work, kind)
        feat_s = time.time() - t0
        row = fit_protocol(kind, work, data, args)
        row["feature_seconds"] = feat_s
        report["rows"][kind] = row
        io.write_json(args.out, report)  # partial results survive a failure in a later row
    report["provenance"] = io.provenance(config=vars(args), seed=args.seed, inputs={"npz": args.npz},
                                         started=t_all)
    io.write_json(args.out, report)
    print(f"\nCIFAR-10 subset ({args.npz}): L2-SVM test accuracy, C chosen on {args.validation_size} validation "
          "images carved from the training set")
    for kind, r in report["rows"].items():
        print(f"  {kind:22s} {r['feature_dim']:6d} dims  C={r['C']:<7g} test accuracy {r['test_accuracy_pct']:.2f}%"
              f"  (features {r['feature_seconds']:.0f} s, SVM {r['svm_seconds']:.0f} s)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
