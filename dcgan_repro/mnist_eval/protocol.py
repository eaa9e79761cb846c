"""Table 3 (Sec. 5.3): MNIST nearest-neighbour evaluation of class-conditional generators; the rule entry points.

Protocol (authors' code: ``mnist/train_cond_dcgan.py`` + ``lib/metrics.py`` ``nnc_score`` / ``nnd_score``):
generate class-conditional samples, use them with their conditioning labels as the training set of a
1-nearest-neighbour classifier (Euclidean distance on [0, 1] pixels) and classify real MNIST images. The error on
the test set is Table 3; the validation split (60k train shuffled with seed 42, last 10k: ``splits``) is what the
authors scored during training and is the only number model selection may use. ``nnd_score`` (the mean distance
from each real image to its nearest generated sample) is reported too.

- :func:`select_epoch` (rule ``mnist_eval_select_epoch``): the snapshot epoch with the lowest validation error;
- :func:`evaluate_generated` (rule ``mnist_eval_generated``): 1-NN on generated samples, "@50K" / "@10M";
- :func:`evaluate_real` (rule ``mnist_eval_real``): the "Real Data" row, 1-NN on real training images;
- :func:`selected_model`: the model file a selection chose (Fig. 9 draws it).

The 10M-sample column needs 10M x 20k distances: the search (``mnist_eval.search``) streams the generated
samples in chunks and is exact, with any search precision (config ``mnist_eval.search``, ``auto`` by default).
Every image scored is 8-bit (MNIST as stored; generated samples rounded to uint8 by ``models.to_uint8``, as
every stage sees samples), so the int8 search applies; the authors scored the float sigmoid outputs, which differ
by at most 1/510 per pixel. The MNIST DCGAN is sampled through ``mnist_eval.sampler`` (the same function
rearranged, ~1.5x faster on a CPU core); the 1-NN decision is exact for the samples actually generated.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from dcgan_repro import io, models, runtime
from dcgan_repro.mnist_eval import sampler
from dcgan_repro.mnist_eval.search import NNResult, nn_search_stream, resolve_search
from dcgan_repro.splits import validation_split

log = logging.getLogger(__name__)

SEARCH_SETTING = "config key 'mnist_eval.search'"  # what errors about the search choice name


def _search_choice(eval_cfg: dict[str, Any], device: torch.device) -> str:
    """The search precision ``eval_cfg["search"]`` asks for (``auto``: what the device runs fastest)."""
    return resolve_search(eval_cfg.get("search", "auto"), device, setting=SEARCH_SETTING)


def balanced_labels(n: int, n_classes: int, seed: int) -> np.ndarray:
    """(n,) int64 class labels, exactly balanced (counts differ by at most one), shuffled by ``seed``.

    The authors drew ``np_rng.randint(0, 10)`` per sample; balancing removes that sampling noise from the
    1-NN training set (Table 3 compares generators, not label draws).
    """
    if n < 1 or n_classes < 1:
        raise ValueError(f"need n >= 1 samples and n_classes >= 1, got n={n}, n_classes={n_classes}")
    labels = np.arange(n, dtype=np.int64) % n_classes  # (n,)
    return np.random.default_rng(seed).permutation(labels)


def _to_unit(x_uint8: np.ndarray) -> np.ndarray:
    """uint8 images (n, H, W, C) -> float32 (n, H*W*C) in [0, 1] (code: ``floatX(X) / 255.``)."""
    if x_uint8.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {x_uint8.dtype}")
    return np.asarray(x_uint8, dtype=np.float32).reshape(len(x_uint8), -1) / np.float32(255.0)  # (n, D)


def _read_split(data_dir: io.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = io.read_dataset(data_dir, split)
    if x.ndim != 4 or len(x) != len(y):
        raise ValueError(f"{data_dir}/{split}_x.npy: expected uint8 N x H x W x C with one label per image, "
                         f"got {x.dtype} {x.shape} and {len(y)} labels")
    if (y < 0).any():
        raise ValueError(f"{data_dir}/{split}_y.npy has unlabelled images (-1); the 1-NN protocol needs labels")
    return x, y


def _chunks(x: np.ndarray, y: np.ndarray, idx: np.ndarray | None,
            chunk: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream (float32 (n, D), labels (n,)) from a memory-mapped uint8 split, optionally a sorted subset."""
    n = len(x) if idx is None else len(idx)
    for s in range(0, n, chunk):
        sel = slice(s, s + chunk) if idx is None else idx[s:s + chunk]
        yield _to_unit(x[sel]), np.asarray(y[sel])


def _generated_chunks(netG: torch.nn.Module, labels: np.ndarray, *, z_dist: str, seed: int, batch_size: int,
                      chunk: int, device: torch.device, precision: str,
                      fast: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream class-conditional samples (float32 (n, D) in [0, 1], their labels) in blocks of ~``chunk``.

    The MNIST DCGAN runs through ``sampler.CondDCGANSampler`` (``fast=True``; False: ``models.iter_generate``, the
    module forward, for benchmarks): the same z, labels and per-batch BN statistics as ``netG(z, y)``, equal up to
    float rounding (tests/test_mnist_eval.py checks it)."""
    gen = sampler.iter_generate if fast else models.iter_generate
    buf: list[np.ndarray] = []
    held = start = 0
    for imgs in gen(netG, len(labels), z_dist=z_dist, seed=seed, labels=labels, batch_size=batch_size,
                    device=device, precision=precision):
        buf.append(imgs)  # (b, H, W, C) uint8
        held += len(imgs)
        if held >= chunk:
            block = np.concatenate(buf)  # (held, H, W, C)
            yield _to_unit(block), labels[start:start + held]
            start += held
            buf, held = [], 0
    if held:
        yield _to_unit(np.concatenate(buf)), labels[start:start + held]


def _error_pct(pred: np.ndarray, truth: np.ndarray) -> float:
    """Percentage of wrong labels as 100 * count / n: 389 of 10,000 reads 3.89, not 3.8899999999999997."""
    return 100.0 * int(np.count_nonzero(pred != truth)) / max(len(truth), 1)


def _conditional_generator(model_path: io.PathLike, device: torch.device,
                           run: dict[str, Any] | None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load G from a model file (refusing an architecture other than ``run``'s); it must be class-conditional."""
    netG, _, ckpt = models.load_checkpoint(model_path, device, run=run)
    if not netG.n_classes:
        raise ValueError(f"{model_path}: run {ckpt['name']!r} ({ckpt['run']['model']}) is unconditional; the "
                         "Table 3 protocol needs a class-conditional generator (mnist_cond_dcgan, mnist_cond_mlp)")
    return netG, ckpt


def _search_generated(netG: torch.nn.Module, ckpt: dict[str, Any], n_samples: int, query: np.ndarray,
                      eval_cfg: dict[str, Any], device: torch.device, search: str, precision: str) -> NNResult:
    """Exact 1-NN of ``query`` over ``n_samples`` generated class-conditional samples (balanced, seeded labels)."""
    labels = balanced_labels(int(n_samples), netG.n_classes, eval_cfg["seed"])  # (n_samples,)
    chunks = _generated_chunks(netG, labels, z_dist=models.z_dist(ckpt["run"]), seed=eval_cfg["seed"],
                               batch_size=int(ckpt["run"]["batch_size"]), chunk=int(eval_cfg["chunk"]),
                               device=device, precision=precision)
    res = nn_search_stream(query, chunks, device, search=search, setting=SEARCH_SETTING)
    if res.stats["n_reference"] != n_samples:
        raise RuntimeError(f"generated {res.stats['n_reference']} samples, expected {n_samples}")
    return res


def _check_shape(netG: torch.nn.Module, x: np.ndarray, data_dir: io.PathLike, model_path: io.PathLike) -> None:
    c, h, w = netG.image_shape
    if tuple(x.shape[1:]) != (h, w, c):
        raise ValueError(f"{data_dir}: images are {tuple(x.shape[1:])} (H, W, C) but the generator in "
                         f"{model_path} makes {(h, w, c)}")


def select_epoch(model_path: io.PathLike, summary_path: io.PathLike, data_dir: io.PathLike,
                 eval_cfg: dict[str, Any], out_path: io.PathLike, common: dict[str, Any], *,
                 run: dict[str, Any] | None = None) -> dict[str, Any]:
    """Model selection for Table 3 on the validation split only (the test set is never read here).

    Every generator snapshot of the run (``ckpt["snapshots"]``, plus the final model when it is not one) is
    scored as the authors' training loop scored it: a 1-NN fitted on ``eval_cfg["select_samples"]`` generated
    samples classifies the 10k validation images (seed-42 split, never trained on). The epoch with the lowest
    validation error is selected (ties: the later epoch). Writes ``results/mnist_eval/<run>_selection.json``
    (docs/CONTRACTS.md) with every candidate's validation error, the epochs trained and the training wall time
    (from ``train_summary.json``); :func:`evaluate_generated` then scores the selected snapshot on the test set.
    """
    t0 = time.time()
    device = runtime.resolve_device(common["device"])
    search = _search_choice(eval_cfg, device)
    precision = runtime.job_precision(common, device)
    n = int(eval_cfg["select_samples"])
    _, final = _conditional_generator(model_path, "cpu", run)
    summary = io.read_json(summary_path)
    candidates = {int(e): str(p) for e, p in final["snapshots"].items()}
    candidates.setdefault(int(final["epoch"]), str(model_path))
    meta = io.read_meta(data_dir)
    train_x, train_y = _read_split(data_dir, "train")
    val_idx = np.sort(validation_split(len(train_x), eval_cfg["validation_size"], eval_cfg["split_seed"])[1])
    query = _to_unit(train_x[val_idx])  # (n_val, D): validation images only
    rows = []
    for epoch, path in sorted(candidates.items()):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{model_path} lists snapshot {path} (epoch {epoch}), which does not exist; "
                                    "retrain the run (rule train_gan) to recreate it")
        netG, ckpt = _conditional_generator(path, device, run)
        if ckpt["name"] != final["name"] or int(ckpt["epoch"]) != epoch:
            raise ValueError(f"{path} holds run {ckpt['name']!r} epoch {ckpt['epoch']}, but {model_path} lists "
                             f"it as run {final['name']!r} epoch {epoch}")
        _check_shape(netG, train_x, data_dir, path)
        res = _search_generated(netG, ckpt, n, query, eval_cfg, device, search, precision)
        rows.append({"epoch": epoch, "path": path,
                     "validation_error_pct": _error_pct(res.label, train_y[val_idx]),
                     "validation_mean_nn_distance": float(res.dist.mean())})
        log.info("%s epoch %d: validation error %.2f%% (1-NN on %d samples), mean NN distance %.3f",
                 final["name"], epoch, rows[-1]["validation_error_pct"], n, rows[-1]["validation_mean_nn_distance"])
    best = min(rows, key=lambda r: (r["validation_error_pct"], -r["epoch"]))
    out = {
        "model": final["name"], "criterion": "validation_error_pct", "n_samples": n,
        "n_validation": int(len(val_idx)), "selected_epoch": best["epoch"], "selected_path": best["path"],
        "epochs_trained": int(final["epoch"]), "train_time_s": summary.get("train_time_s"),
        "candidates": rows, "stand_in": meta.get("stand_in"),
        "provenance": io.provenance(config={"mnist_eval": eval_cfg, "common": common, "run": final["run"]},
                                    seed=int(eval_cfg["seed"]), inputs={"model": model_path, "data": data_dir},
                                    started=t0),
    }
    io.write_json(out_path, out)
    log.info("%s: selected epoch %d of %d (validation error %.2f%%)", final["name"], best["epoch"],
             out["epochs_trained"], best["validation_error_pct"])
    return out


def selected_model(selection: io.PathLike) -> str:
    """The model file :func:`select_epoch` chose (``selected_path`` of ``results/mnist_eval/<run>_selection.json``)."""
    sel = io.read_json(selection)
    if not isinstance(sel, dict) or "selected_path" not in sel:
        raise ValueError(f"{selection} is not a model-selection file (no 'selected_path'); "
                         "rerun mnist_eval_select_epoch")
    return str(sel["selected_path"])


def evaluate_generated(model_path: io.PathLike, data_dir: io.PathLike, n_samples: int, eval_cfg: dict[str, Any],
                       out_path: io.PathLike, common: dict[str, Any], column: str, *,
                       run: dict[str, Any] | None = None, selection: io.PathLike | None = None) -> dict[str, Any]:
    """Table 3 "@50K" / "@10M": exact 1-NN fitted on ``n_samples`` generated class-conditional samples.

    ``selection`` (the JSON of :func:`select_epoch`) picks the snapshot scored: the epoch chosen on the
    validation split; without it ``model_path`` itself is scored. Labels are exactly balanced over the classes
    and shuffled (``eval_cfg["seed"]``), z is seeded likewise; samples are drawn in G's training batch size (BN
    uses batch statistics, as in the authors' ``gen_samples``) and streamed in blocks of ``eval_cfg["chunk"]``.
    The real test set and the validation split (authors' seed-42 split, last ``validation_size`` training
    images) are classified in the same pass; the test error is computed once, for this reported number.
    ``run`` (the config's ``runs.<name>``) makes :func:`models.load_checkpoint` refuse a file trained with
    another architecture. Writes the CONTRACTS JSON to ``out_path`` and returns it.
    """
    t0 = time.time()
    device = runtime.resolve_device(common["device"])
    search = _search_choice(eval_cfg, device)
    sel = None
    scored = model_path
    if selection is not None:
        scored = selected_model(selection)
        sel = io.read_json(selection)
    netG, ckpt = _conditional_generator(scored, device, run)
    if sel is not None and (sel["model"] != ckpt["name"] or int(sel["selected_epoch"]) != int(ckpt["epoch"])):
        raise ValueError(f"{selection} selects run {sel['model']!r} epoch {sel['selected_epoch']}, but {scored} "
                         f"holds run {ckpt['name']!r} epoch {ckpt['epoch']}; rerun rule mnist_eval_select_epoch")
    meta = io.read_meta(data_dir)
    test_x, test_y = _read_split(data_dir, "test")
    train_x, train_y = _read_split(data_dir, "train")
    _check_shape(netG, test_x, data_dir, scored)
    _, val_idx = validation_split(len(train_x), eval_cfg["validation_size"], eval_cfg["split_seed"])
    val_idx = np.sort(val_idx)
    query = np.concatenate([_to_unit(test_x), _to_unit(train_x[val_idx])])  # (n_test + n_val, D)
    n_test = len(test_x)
    log.info("1-NN on %d generated samples of %s (epoch %s): %d test + %d validation queries, %s search on %s",
             n_samples, ckpt["name"], ckpt["epoch"], n_test, len(val_idx), search, device)
    res = _search_generated(netG, ckpt, int(n_samples), query, eval_cfg, device, search,
                            runtime.job_precision(common, device))
    log.info("search stats: %s", res.stats)
    dist = res.dist
    out = {
        "model": ckpt["name"], "column": column, "n_samples": int(n_samples),
        "test_error_pct": _error_pct(res.label[:n_test], test_y),
        "validation_error_pct": _error_pct(res.label[n_test:], train_y[val_idx]),
        "mean_nn_distance": float(dist[:n_test].mean()),
        "validation_mean_nn_distance": float(dist[n_test:].mean()),
        "n_test": n_test, "n_validation": int(len(val_idx)),
        "epoch": int(ckpt["epoch"]),
        "epochs_trained": int(sel["epochs_trained"]) if sel else int(ckpt["epoch"]),
        "train_time_s": sel.get("train_time_s") if sel else None,
        "selection": None if sel is None else {"path": str(selection), "criterion": sel["criterion"],
                                               "n_samples": sel["n_samples"]},
        "seed": int(eval_cfg["seed"]), "train_seed": ckpt["run"].get("seed"), "stand_in": meta.get("stand_in"),
        "provenance": io.provenance(config={"mnist_eval": eval_cfg, "n_samples": int(n_samples), "column": column,
                                            "common": common, "run": ckpt["run"]},
                                    seed=int(eval_cfg["seed"]), inputs={"model": scored, "data": data_dir},
                                    started=t0, extra={"nn_search": res.stats}),
    }
    io.write_json(out_path, out)
    log.info("%s @%s: test error %.2f%%, validation error %.2f%%, mean NN distance %.3f", ckpt["name"], column,
             out["test_error_pct"], out["validation_error_pct"], out["mean_nn_distance"])
    return out


def evaluate_real(data_dir: io.PathLike, eval_cfg: dict[str, Any], out_path: io.PathLike,
                  common: dict[str, Any]) -> dict[str, Any]:
    """Table 3 "Real Data": exact 1-NN fitted on real training images, all of them and the authors' 50k split.

    On MNIST the all-60k row is 3.09% test error (docs/REFERENCE.md Sec. 1; the paper's "3.1%"). Writes the
    CONTRACTS JSON ``{"rows": [...], "stand_in", "provenance"}`` to ``out_path`` and returns it.
    """
    t0 = time.time()
    device = runtime.resolve_device(common["device"])
    search = _search_choice(eval_cfg, device)
    meta = io.read_meta(data_dir)
    test_x, test_y = _read_split(data_dir, "test")
    train_x, train_y = _read_split(data_dir, "train")
    if tuple(train_x.shape[1:]) != tuple(test_x.shape[1:]):
        raise ValueError(f"{data_dir}: train images {train_x.shape[1:]} and test images {test_x.shape[1:]} differ")
    split_idx = np.sort(validation_split(len(train_x), eval_cfg["validation_size"], eval_cfg["split_seed"])[0])
    query = _to_unit(test_x)  # (n_test, D)
    rows, stats = [], []
    for subset, idx in (("all", None), ("train_split", split_idx)):
        res = nn_search_stream(query, _chunks(train_x, train_y, idx, int(eval_cfg["chunk"])), device, search=search,
                               setting=SEARCH_SETTING)
        n_train = len(train_x) if idx is None else len(idx)
        rows.append({"n_train": n_train, "subset": subset, "test_error_pct": _error_pct(res.label, test_y),
                     "mean_nn_distance": float(res.dist.mean())})
        stats.append(res.stats)
        log.info("real 1-NN, %d training images (%s): test error %.2f%%", n_train, subset, rows[-1]["test_error_pct"])
    out = {"rows": rows, "stand_in": meta.get("stand_in"),
           "provenance": io.provenance(config={"mnist_eval": eval_cfg, "common": common},
                                       seed=int(eval_cfg["split_seed"]), inputs={"data": data_dir}, started=t0,
                                       extra={"nn_search": stats})}
    io.write_json(out_path, out)
    return out
