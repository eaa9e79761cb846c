"""Discriminator features for the L2-SVM (Radford et al. 2015, Sec. 5.1 and 5.2).

Matches ``svhn/svhn_semisup_analysis.py`` of Newmu/dcgan_code (ee12b2d), which the paper says the CIFAR-10
experiment shares:

* the post-activation output of every convolution of D (``netD.features(x)``, docs/CONTRACTS.md) is max-pooled
  to a ``pool x pool`` grid (the code's ``dnn_pool`` with kernel = stride = H/4 is
  ``adaptive_max_pool2d(h, 4)`` when H is a multiple of 4), flattened in (C, H, W) order and concatenated:
  (128+128+256+256+512+512) x 16 = 28,672 dimensions for the ImageNet D at ndf=128, (64+128+256) x 16 = 7,168
  for the SVHN D at ndf=64;
* batch norm uses *fixed* statistics (``bn_stats="fixed"``): the average over training minibatches of 128 of
  the batch means and of the biased batch variances (the code's ``infer_bnorm_stats``), the network running
  with batch statistics while they are gathered. ``bn_stats="running"`` uses the model's own running
  statistics instead (the PyTorch convention; not what the authors did).

No feature standardisation follows (the code feeds raw pooled activations to LinearSVC).
Features are always computed in fp32: they are a measured result, and D is small.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dcgan_repro import io, models, runtime

log = logging.getLogger(__name__)

BN_STATS_BATCH = 128  # code: infer_bnorm_stats(X, nbatch=128)
BN_MODES = ("fixed", "running")


def pooled_features(netD: nn.Module, x: torch.Tensor, pool: int = 4) -> torch.Tensor:
    """Sec. 5.1 feature vector of a batch: every conv output max-pooled to pool x pool, flattened, concatenated.

    ``x``: model input (N, C, H, W). Returns (N, F) with F = pool^2 * sum of the conv layers' channels.
    """
    parts = []
    for h in netD.features(x):  # each (N, C_l, H_l, W_l), post-activation
        h = F.adaptive_max_pool2d(h, pool)  # (N, C_l, pool, pool)
        parts.append(h.flatten(1))  # (N, C_l * pool * pool), (C, H, W) order
    return torch.cat(parts, dim=1)  # (N, F)


def _net_device(net: nn.Module) -> torch.device:
    p = next(net.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def feature_dim(netD: nn.Module, pool: int = 4) -> int:
    """Length of D's feature vector, from a forward pass on zeros of shape ``netD.image_shape``.

    The net's train/eval mode is restored afterwards; eval mode is used so BN running statistics are not touched.
    """
    c, h, w = netD.image_shape
    was_training = netD.training
    netD.eval()
    try:
        with torch.no_grad():
            x = torch.zeros(2, c, h, w, device=_net_device(netD))  # (2, C, H, W)
            return int(pooled_features(netD, x, pool).shape[1])
    finally:
        netD.train(was_training)


def _bn_layers(net: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {name: m for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def _check_images(images: np.ndarray, netD: nn.Module, what: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"{what}: expected uint8 images N x H x W x C, got {images.dtype} {images.shape}")
    c, h, w = netD.image_shape
    if tuple(images.shape[1:]) != (h, w, c):
        raise ValueError(f"{what}: images are {tuple(images.shape[1:])} (H, W, C) but the discriminator takes "
                         f"{(h, w, c)}")
    if len(images) == 0:
        raise ValueError(f"{what}: no images")


def fixed_bn_statistics(netD: nn.Module, images: np.ndarray, output_range: str, *, n_batches: int = 0,
                        batch_size: int = BN_STATS_BATCH, seed: int = 0,
                        device: torch.device | str = "cpu") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Average batch statistics of every BN layer on D's feature path (code: ``infer_bnorm_stats``).

    The images are shuffled with ``seed`` and cut into minibatches of ``batch_size`` (the last one may be
    smaller and, as in the code, counts like the others); ``n_batches`` = 0 uses them all, otherwise the first
    ``n_batches``. D runs with batch statistics (BN layers in train mode, running statistics left alone); for
    each BN layer the per-channel mean and *biased* variance of its input are averaged over the minibatches.
    Returns {BN module name: (mean, var)}, float32 tensors on ``device``; ``netD`` is not modified.
    """
    _check_images(images, netD, "BN statistics images")
    net = copy.deepcopy(netD).to(device).eval()
    layers = _bn_layers(net)
    n_avail = -(-len(images) // batch_size)
    if n_batches > n_avail:
        raise ValueError(f"features.bn_batches = {n_batches} asks for more minibatches of {batch_size} than the "
                         f"{len(images)} training images give ({n_avail}); use 0 for one full pass")
    n_batches = n_batches or n_avail
    sums: dict[str, list[torch.Tensor]] = {}
    hooks = []

    def make_hook(name: str):
        def hook(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            h = inputs[0].double()  # (N, C) or (N, C, H, W): BN input, i.e. the conv output
            dims = [0, *range(2, h.ndim)]
            mean = h.mean(dims)  # (C,)
            var = (h - mean.view(1, -1, *[1] * (h.ndim - 2))).square().mean(dims)  # (C,), biased
            acc = sums.setdefault(name, [torch.zeros_like(mean), torch.zeros_like(var), 0])
            acc[0] += mean
            acc[1] += var
            acc[2] += 1
        return hook

    for name, m in layers.items():
        m.train()  # normalise with batch statistics while gathering, as the code does
        m.track_running_stats = False  # ... without updating running statistics (net is a copy)
        hooks.append(m.register_forward_pre_hook(make_hook(name)))
    order = np.random.default_rng(seed).permutation(len(images))
    try:
        with torch.no_grad():
            for b in range(n_batches):
                idx = np.sort(order[b * batch_size:(b + 1) * batch_size])  # sorted: memmap reads in order
                x = models.to_model_input(np.asarray(images[idx]), output_range).to(device)  # (B, C, H, W)
                net.features(x)
    finally:
        for hk in hooks:
            hk.remove()
    if layers and not sums:
        log.warning("none of D's %d BN layers lies on the feature path; BN statistics unused", len(layers))
    return {name: ((s[0] / s[2]).float(), (s[1] / s[2]).float()) for name, s in sums.items()}


def apply_bn_statistics(netD: nn.Module, stats: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Install fixed (mean, var) into the named BN layers so eval mode normalises with them (in place).

    Works also for BN layers built without running statistics (the authors' nets always use batch statistics).
    """
    layers = _bn_layers(netD)
    for name, (mean, var) in stats.items():
        m = layers[name]
        dev = m.weight.device if m.weight is not None else mean.device
        if m.running_mean is None:
            m.register_buffer("running_mean", mean.detach().clone().to(dev))
            m.register_buffer("running_var", var.detach().clone().to(dev))
        else:
            m.running_mean.copy_(mean)
            m.running_var.copy_(var)
        m.track_running_stats = True  # eval mode then uses running_mean / running_var


def extract_features(netD: nn.Module, images_uint8_nhwc: np.ndarray, output_range: str, *, pool: int = 4,
                     bn_stats: str = "fixed", bn_source_images: np.ndarray | None = None, bn_batches: int = 0,
                     batch_size: int = 500, device: torch.device | str = "cpu", bn_seed: int = 0,
                     out_path: io.PathLike | None = None) -> np.ndarray:
    """Sec. 5.1 features of ``images_uint8_nhwc`` (uint8 N x H x W x C): float32 (N, F).

    ``bn_stats="fixed"`` needs ``bn_source_images`` (the training images; see :func:`fixed_bn_statistics`),
    ``"running"`` uses the model's running statistics. With ``out_path`` the rows stream into an atomically
    written .npy (never more than one batch in memory; nothing is left behind on failure) and the result is
    that file, memory-mapped; without it an in-memory array is returned. ``netD`` itself is not modified.
    """
    if bn_stats not in BN_MODES:
        raise ValueError(f"features.bn_stats must be one of {', '.join(BN_MODES)}, got {bn_stats!r}")
    _check_images(images_uint8_nhwc, netD, "feature images")
    device = torch.device(device)
    net = copy.deepcopy(netD).to(device).eval()
    if bn_stats == "fixed":
        if bn_source_images is None:
            raise ValueError("bn_stats='fixed' needs bn_source_images: the training images whose minibatch "
                             "statistics fix batch norm")
        stats = fixed_bn_statistics(net, bn_source_images, output_range, n_batches=bn_batches, seed=bn_seed,
                                    device=device)
        apply_bn_statistics(net, stats)
        log.info("fixed BN statistics for %d layers from %s images", len(stats), len(bn_source_images))
    else:
        missing = [n for n, m in _bn_layers(net).items() if m.running_mean is None]
        if missing:
            raise ValueError(f"features.bn_stats = 'running' but BN layers {missing} keep no running statistics; "
                             "use 'fixed'")
    net.eval()
    dim = feature_dim(net, pool)
    n = len(images_uint8_nhwc)
    if out_path is not None:
        out, tmp = io.open_npy_writer(out_path, (n, dim), np.float32)
    else:
        out, tmp = np.empty((n, dim), np.float32), None
    t0 = time.time()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                xb = np.asarray(images_uint8_nhwc[start:start + batch_size])  # (B, H, W, C) uint8
                x = models.to_model_input(xb, output_range).to(device)  # (B, C, H, W) float
                out[start:start + len(xb)] = pooled_features(net, x, pool).float().cpu().numpy()  # (B, F)
        if tmp is not None:
            io.commit_npy(out, tmp, out_path)
    except BaseException:
        if tmp is not None:
            del out
            Path(tmp).unlink(missing_ok=True)
        raise
    log.info("features: %d images -> %d dims in %.1f s", n, dim, time.time() - t0)
    return load_features(out_path, expected_dim=dim, n_rows=n) if out_path is not None else out


def load_features(path: io.PathLike, *, expected_dim: int | None = None, n_rows: int | None = None) -> np.ndarray:
    """Open a feature file (memory-mapped), refusing one that is not float32 (N, F) or does not match.

    ``expected_dim``: the feature length of the model it should come from (:func:`feature_dim`);
    ``n_rows``: the number of images of the split it should describe.
    """
    x = io.load_npy(path)
    if x.ndim != 2 or x.dtype != np.float32:
        raise ValueError(f"feature file {path}: expected float32 N x F, got {x.dtype} {x.shape}")
    if expected_dim is not None and x.shape[1] != expected_dim:
        raise ValueError(f"feature file {path} has {x.shape[1]} dimensions but the model gives {expected_dim}; "
                         "it was extracted with another model or pool size: re-run features_extract")
    if n_rows is not None and x.shape[0] != n_rows:
        raise ValueError(f"feature file {path} has {x.shape[0]} rows but its dataset split has {n_rows} images; "
                         "re-run features_extract")
    return x


def pixel_features(images_uint8_nhwc: np.ndarray, out_path: io.PathLike, batch_size: int = 4096) -> np.ndarray:
    """Raw pixels as D sees them (scaled to [-1, 1]), flattened in (C, H, W) order: float32 (N, H*W*C), streamed
    into an atomically written .npy; the memory-mapped file is returned. The floor every learned feature should
    beat (Table 1's pixel row)."""
    n = len(images_uint8_nhwc)
    dim = int(np.prod(images_uint8_nhwc.shape[1:]))
    out, tmp = io.open_npy_writer(out_path, (n, dim), np.float32)
    try:
        for start in range(0, n, batch_size):
            xb = np.asarray(images_uint8_nhwc[start:start + batch_size])  # (B, H, W, C) uint8
            out[start:start + len(xb)] = models.to_model_input(xb, "tanh").flatten(1).numpy()  # (B, C*H*W)
        io.commit_npy(out, tmp, out_path)
    except BaseException:
        del out
        Path(tmp).unlink(missing_ok=True)
        raise
    return load_features(out_path, expected_dim=dim, n_rows=n)


def _trained_discriminator(model_path: io.PathLike, run: str, epoch: int, device: torch.device
                           ) -> tuple[nn.Module, dict]:
    """D of the trained run's model file, or of its snapshot after ``epoch`` (0: the last epoch), and what it is."""
    _, netD, ckpt = models.load_checkpoint(model_path, device)
    path = model_path
    if epoch and epoch != ckpt["epoch"]:
        snapshots = {int(e): p for e, p in ckpt["snapshots"].items()}
        if epoch not in snapshots:
            raise ValueError(f"config key 'features.trained_epoch': run {run} kept no snapshot after epoch {epoch} "
                             f"(kept: {sorted(snapshots)}, last {ckpt['epoch']}); set runs.{run}.snapshot_every so "
                             f"that it does, or choose one of those epochs")
        path = snapshots[epoch]
        _, netD, ckpt = models.load_checkpoint(path, device)
    about = {"run": run, "model": str(path), "epoch": ckpt["epoch"], "data": ckpt["data_meta"].get("name"),
             "data_stand_in": ckpt["data_meta"].get("stand_in"), "layers": len(netD.convs)}
    return netD, about


def _released_discriminator(released: dict, device: torch.device) -> tuple[nn.Module, dict]:
    """The authors' released D of ``released["run"]`` (config weights.<run>), verified against the release's git
    blob ids first; from a copy lacking files only when ``allow_partial``: then D's first loadable convolutions."""
    from dcgan_repro import released as rel
    from dcgan_repro.svm.registry import RELEASED_MODELS

    if not released.get("path"):
        raise ValueError(f"config key '{released['key']}' is null: set it to a clone of {rel.REPOSITORY} (or the "
                         f"released model's folder) to use the authors' D, or choose features.discriminator trained")
    netD, manifest = rel.load_discriminator(released["path"], RELEASED_MODELS[released["run"]],
                                            allow_partial=released["allow_partial"], key=released["key"])
    return netD.to(device), {"run": released["run"], "release": manifest, "epoch": manifest["epoch"],
                             "layers": manifest["convs_loaded"]}


def run_extraction(source: str, data_dir: io.PathLike, split: str, out_path: io.PathLike,
                   about_path: io.PathLike, cfg: dict, common: dict, *, model_path: io.PathLike | None = None,
                   run: str | None = None, epoch: int = 0, released: dict | None = None) -> np.ndarray:
    """Rule ``features_extract``: features of ``data_dir``/``split`` -> ``out_path`` (.npy), and what produced
    them -> ``about_path`` (JSON, docs/CONTRACTS.md; the SVM result and the table rows carry it).

    ``source``: ``trained`` (D of ``model_path``, the run ``run``, at snapshot ``epoch``; 0 = the last),
    ``released`` (the authors' D, ``released`` = {path, run, key, allow_partial}) or ``pixels``. ``cfg`` is config
    ``features`` (pool, bn_stats, bn_batches, batch_size, seed); BN statistics always come from the dataset's
    train split (its labels are never read).
    """
    t0 = time.time()
    images, _ = io.read_dataset(data_dir, split)
    if source == "pixels":
        feats = pixel_features(images, out_path)
        about: dict = {"layers": 0, "scaling": "pixels / 127.5 - 1 (D's input), (C, H, W) order"}
    else:
        device = runtime.resolve_device(common["device"])
        if common.get("precision", "fp32") != "fp32":
            log.info("precision %s requested; features are computed in fp32 regardless", common["precision"])
        if source == "trained":
            netD, about = _trained_discriminator(model_path, run, epoch, device)
        elif source == "released":
            netD, about = _released_discriminator(released, device)
        else:
            raise ValueError(f"unknown feature source {source!r}; allowed: trained, released, pixels")
        bn_images = io.read_dataset(data_dir, "train")[0] if cfg["bn_stats"] == "fixed" else None
        log.info("%s D of run %s (epoch %s, %d conv layers) on %s/%s: %d images", source, about["run"],
                 about["epoch"], about["layers"], data_dir, split, len(images))
        feats = extract_features(netD, images, netD.output_range, pool=cfg["pool"], bn_stats=cfg["bn_stats"],
                                 bn_source_images=bn_images, bn_batches=cfg["bn_batches"],
                                 batch_size=cfg["batch_size"], device=device, bn_seed=cfg["seed"], out_path=out_path)
    about = {"source": source, "split": split, "feature_dim": int(feats.shape[1]), "n_images": int(feats.shape[0]),
             **about, "provenance": io.provenance(config={"features": cfg, **common}, seed=cfg["seed"],
                                                  inputs={"data": data_dir, **({"model": model_path} if model_path
                                                                               else {})}, started=t0)}
    io.write_json(about_path, about)
    return feats
