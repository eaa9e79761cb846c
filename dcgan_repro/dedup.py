"""LSUN de-duplication with a denoising autoencoder semantic hash (paper Sec. 4.1.1).

The paper: "we fit a 3072-128-3072 de-noising dropout regularized RELU autoencoder on 32x32 downsampled
center-crops of training examples. The resulting code layer activations are then binarized via thresholding
the ReLU activation [...] and provides a convenient form of semantic-hashing, allowing for linear time
de-duplication." No code for this step was released (docs/REFERENCE.md Sec. 6), so every unstated choice below is a
config key under ``dedup:``. The stages match the workflow rules:

1. :func:`train_job` (rule ``dedup_train_autoencoder``): fit :class:`DedupAutoencoder` on ``train_images``
   images sampled from ``lsun_raw``, with Gaussian input corruption (``input_noise``) and dropout on the code
   (``dropout``).
2. :func:`hash_shard` (rule ``dedup_hash_shard``): binary codes ``relu(code) > threshold`` for the
   contiguous index range of shard ``i`` of ``n`` (:func:`shard_range`, ``np.array_split`` semantics), packed
   with ``np.packbits`` (16 bytes per image for 128 bits).
3. :func:`gather` (rule ``dedup_gather``): bucket identical codes with a hash table over the packed codes
   (:func:`bucket_codes`: one pass, no pairwise comparison, collisions of its 64-bit key split exactly), keep
   the lowest index of each bucket, write the de-duplicated ``lsun`` dataset, ``kept.txt``, ``removed.csv``,
   a contact sheet of collisions and a summary.

Autoencoder input (:func:`preprocess`). "32x32 downsampled center-crops": the largest centred square of each
image, area-averaged to ``crop`` x ``crop`` (for the 64x64 ingested LSUN images, which are already centre
crops, this is an exact 2x2 mean). Then, with ``normalize: image`` (our default), each image is standardised
by its own pixel mean and standard deviation, so that a global brightness/contrast change (a common kind of
near-duplicate) does not move the code; ``normalize: none`` feeds [0, 1] pixels as they are. In both cases the
per-pixel mean over the training sample is subtracted inside the model (a buffer saved with the weights).

How the defaults were chosen (``benchmarks/eval_dedup.py``). A 128-bit code collides for two images only if no
code unit has the threshold between their two activations. The harness plants 520 duplicates of 13 kinds (40
each: exact, JPEG quality 95/85/75/50, crop window shifted 1/2 px, a 1.14x crop, brightness x0.9/x1.1, +-20
grey levels, contrast x0.8) among 1,596 distinct 64x64 crops of 266 real photos (``scenes256``), trains on the
lot for 20 epochs (seeds 1-3) and changes one setting at a time. At the defaults: precision 1.000, recall
0.52 (0.50-0.53), false-positive rate 0 (paper: "under 1 in 100"); exact copies 100 %, brightness/contrast
65-89 %, JPEG 32-64 %, 1-2 px shifts and small crops 0-3 %. Distinct photos' codes stay >= 7 bits apart.

- ``normalize: none`` (the paper's input as we read it): recall 0.31 and precision 0.96 (a 4 % false-positive
  rate, over the paper's 1 %: flat, dark crops of different photos share codes); brightness changes are missed.
- ``input_noise`` 0.1 / 0.5 / 1.0 / 2.0 / 4.0: recall 0.47 / 0.49 / 0.50 / 0.52 / 0.57, precision 1.000 at
  all; at 4.0 codes of different photos come within 2 bits (a thinner margin against chance collisions among
  the ~1e12 pairs of 3M LSUN images), so 2.0. On the demo ``lsun_raw`` 2.0 gave recall 0.56-0.61 against
  0.52-0.55 at 0.5, precision 1.00 at both.
- ``threshold`` 0.05 / 0.2: recall 0.54 / 0.54 with fewer bits on and the margin down to 5 bits; kept at 0, the
  natural reading of "thresholding the ReLU activation".
- ``dropout`` 0 / 0.2: recall 0.55 / 0.54; kept at 0.5 since the paper's autoencoder is "dropout regularized".
- ``crop: 16`` / ``code_dim: 64`` (not the paper's 32x32 input and 128 bits): recall 0.56 / 0.66 but the first
  false merges (precision 0.998 / 0.996).

Shifts stay undetected: a 1-pixel shift flips a few bits, and exact bucketing (the paper's "linear time
de-duplication") cannot catch that; we report it rather than loosen the match. The gather summary's
``planted`` block reports precision and recall whenever the source meta lists ``planted_duplicates``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from dcgan_repro import io, runtime
from dcgan_repro.images import image_grid

log = logging.getLogger(__name__)

NORMALIZE = ("image", "none")
NORM_EPS = 0.02  # added to each image's pixel std ([0, 1] units, ~5 grey levels): flat images stay finite
PREP_CHUNK = 4096  # images preprocessed / hashed per block (memory stays flat on 3M-image collections)
COPY_CHUNK = 8192  # images copied per block when writing the de-duplicated dataset
SHEET_PAIRS = 32  # collision pairs shown on the contact sheet


# --- input ---------------------------------------------------------------------------------------


def preprocess(x: np.ndarray, crop: int, normalize: str = "image") -> torch.Tensor:
    """uint8 images (N, H, W, C) -> float autoencoder inputs (N, C * crop * crop).

    The largest centred square, area-downsampled to ``crop`` x ``crop`` (Sec. 4.1.1 "32x32 downsampled
    center-crops"); ``normalize='image'`` then standardises each image by its own pixel mean and std.
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"config key 'dedup.normalize': {normalize!r} is not allowed; allowed values: "
                         f"{', '.join(NORMALIZE)}")
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"dedup expects uint8 images N x H x W x C, got {x.dtype} {x.shape}")
    n, h, w, _ = x.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    t = torch.from_numpy(np.array(x[:, top:top + side, left:left + side]))  # (N, S, S, C) uint8, a writable copy
    t = t.permute(0, 3, 1, 2).float().div_(255.0)  # (N, C, S, S) in [0, 1]
    if side != crop:
        t = F.interpolate(t, size=(crop, crop), mode="area")  # (N, C, crop, crop): box average
    v = t.reshape(n, -1)  # (N, C*crop*crop)
    if normalize == "image":
        v = (v - v.mean(1, keepdim=True)) / (v.std(1, keepdim=True) + NORM_EPS)  # (N, D) standardised
    return v


def shard_range(n: int, shard: int, shards: int) -> tuple[int, int]:
    """[start, stop) of dedup shard ``shard`` of ``shards`` (:func:`dcgan_repro.io.shard_range`)."""
    return io.shard_range(n, shard, shards, setting="dedup.shards")


# --- model ---------------------------------------------------------------------------------------


class DedupAutoencoder(nn.Module):
    """3072-128-3072 denoising, dropout-regularised ReLU autoencoder (Sec. 4.1.1).

    ``encoder``: Linear(in_dim, code_dim) + ReLU; dropout on the code during training only; ``decoder``:
    Linear(code_dim, in_dim), linear output (regression onto the clean input, MSE). ``mean`` (a buffer) is the
    per-input mean of the training sample, subtracted before encoding and added back after decoding.
    """

    def __init__(self, in_dim: int = 3072, code_dim: int = 128, dropout: float = 0.5) -> None:
        super().__init__()
        self.in_dim, self.code_dim, self.dropout = in_dim, code_dim, dropout
        self.encoder = nn.Linear(in_dim, code_dim)  # (N, 3072) -> (N, 128)
        self.decoder = nn.Linear(code_dim, in_dim)  # (N, 128) -> (N, 3072)
        self.register_buffer("mean", torch.zeros(in_dim))  # (3072,)

    def code(self, v: torch.Tensor) -> torch.Tensor:
        """ReLU code activations (N, code_dim) of inputs (N, in_dim)."""
        return F.relu(self.encoder(v - self.mean))  # (N, 128)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        """Reconstruction (N, in_dim) of (possibly corrupted) inputs (N, in_dim), dropout on the code."""
        h = F.dropout(self.code(v), self.dropout, self.training)  # (N, 128)
        return self.decoder(h) + self.mean  # (N, 3072)


def train_autoencoder(x: np.ndarray, *, crop: int, code_dim: int, dropout: float, input_noise: float,
                      normalize: str, epochs: int, batch_size: int, lr: float, seed: int,
                      device: torch.device | str = "cpu", precision: str = "fp32"
                      ) -> tuple[DedupAutoencoder, list[float]]:
    """Fit the denoising autoencoder on uint8 images ``x`` (N, H, W, C); returns (model, loss per epoch).

    Denoising: the input is corrupted with N(0, input_noise^2) noise (in units of the preprocessed input) and
    the clean input is the target. Adam, minibatches in a seeded random order; ``precision='bf16'`` autocasts
    the forward pass (codes for hashing are always computed in fp32, see :func:`hash_images`).
    """
    device = torch.device(device)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    v = torch.cat([preprocess(x[i:i + PREP_CHUNK], crop, normalize)
                   for i in range(0, len(x), PREP_CHUNK)])  # (N, D)
    model = DedupAutoencoder(v.shape[1], code_dim, dropout)
    model.mean.copy_(v.mean(0))  # (D,)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(len(v), generator=gen)
        total, count = 0.0, 0
        for idx in order.split(batch_size):
            clean = v[idx].to(device)  # (B, D)
            noisy = clean + input_noise * torch.randn(clean.shape, generator=gen).to(device)  # (B, D)
            with runtime.autocast(device, precision):
                recon = model(noisy)  # (B, D)
            loss = F.mse_loss(recon.float(), clean)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        history.append(total / count)
        log.info("dedup autoencoder epoch %d/%d: reconstruction MSE %.5f", epoch + 1, epochs, history[-1])
    return model.eval(), history


@torch.no_grad()
def hash_images(model: DedupAutoencoder, x: np.ndarray, *, crop: int, normalize: str, threshold: float,
                batch_size: int = PREP_CHUNK) -> np.ndarray:
    """Packed binary codes (N, ceil(code_dim / 8)) uint8 of images ``x`` (N, H, W, C): bit = relu(code) > t.

    Always fp32 and in eval mode (no dropout), so a code never depends on the precision setting.
    """
    model.eval()
    device = next(model.parameters()).device
    out = np.empty((len(x), (model.code_dim + 7) // 8), np.uint8)
    for i in range(0, len(x), batch_size):
        v = preprocess(x[i:i + batch_size], crop, normalize).to(device)  # (B, D)
        bits = (model.code(v) > threshold).cpu().numpy()  # (B, code_dim) bool
        out[i:i + len(v)] = np.packbits(bits, axis=1)  # (B, code_dim/8)
    return out


def load_autoencoder(path: str | Path, device: torch.device | str = "cpu"
                     ) -> tuple[DedupAutoencoder, dict[str, Any]]:
    """Rebuild the autoencoder saved by :func:`train_job`; a file that is not one is an error naming it."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors, numbers and strings
    if not isinstance(ckpt, dict) or not {"state_dict", "in_dim", "code_dim", "crop", "normalize"} <= set(ckpt):
        raise ValueError(f"{path} is not a dedup autoencoder written by dcgan_repro.dedup.train_job")
    model = DedupAutoencoder(ckpt["in_dim"], ckpt["code_dim"], ckpt["dropout"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval(), ckpt


# --- rule: dedup_train_autoencoder ----------------------------------------------------------------


def train_job(data_dir: str | Path, out_path: str | Path, dedup: Mapping[str, Any],
              common: Mapping[str, Any]) -> dict[str, Any]:
    """Rule ``dedup_train_autoencoder``: sample ``dedup.train_images`` images of ``data_dir`` and fit.

    Writes ``out_path`` (torch.save dict: state_dict, architecture, preprocessing, the dedup config, loss
    history, provenance) and returns that dict.
    """
    t0 = time.time()
    _check_dedup_config(dedup)
    device = runtime.resolve_device(common.get("device", "auto"))
    x, _ = io.read_dataset(data_dir, "train")
    n = len(x)
    if n == 0:
        raise ValueError(f"{data_dir}/train_x.npy holds no images to train the dedup autoencoder on")
    rng = np.random.default_rng(dedup["seed"])
    take = np.sort(rng.choice(n, size=min(dedup["train_images"], n), replace=False))  # sorted: memmap reads
    log.info("training the dedup autoencoder on %d of %d images of %s (device %s)", len(take), n, data_dir,
             device)
    model, history = train_autoencoder(
        np.asarray(x[take]), crop=dedup["crop"], code_dim=dedup["code_dim"], dropout=dedup["dropout"],
        input_noise=dedup["input_noise"], normalize=dedup["normalize"], epochs=dedup["epochs"],
        batch_size=dedup["batch_size"], lr=dedup["lr"], seed=dedup["seed"], device=device,
        precision=runtime.job_precision(common, device))
    ckpt = {
        "state_dict": {k: t.cpu() for k, t in model.state_dict().items()},
        "in_dim": model.in_dim, "code_dim": model.code_dim, "dropout": model.dropout,
        "crop": dedup["crop"], "normalize": dedup["normalize"], "dedup": dict(dedup), "n_train": len(take),
        "loss_history": history,
    }
    prov = io.provenance(config={"dedup": dict(dedup), "common": dict(common)}, seed=dedup["seed"],
                         inputs={"data": str(data_dir)}, started=t0)
    ckpt["provenance"] = json.loads(json.dumps(prov, default=str))  # plain types: loads with weights_only=True
    with io.atomic_path(out_path) as tmp:
        torch.save(ckpt, tmp)
    log.info("wrote %s in %.1f s (final MSE %.5f)", out_path, time.time() - t0, history[-1])
    return ckpt


# --- rule: dedup_hash_shard ----------------------------------------------------------------------


def hash_shard(data_dir: str | Path, model_path: str | Path, out_path: str | Path, shard: int,
               shards: int, dedup: Mapping[str, Any], common: Mapping[str, Any]) -> None:
    """Rule ``dedup_hash_shard``: packed codes for the contiguous index range of shard ``shard`` of ``shards``.

    Writes ``out_path`` (.npz): ``start``, ``stop``, ``n_total``, ``codes`` (stop - start, code_dim/8) uint8,
    ``code_dim``, ``threshold``, ``seconds`` and ``provenance`` (a JSON string).
    """
    t0 = time.time()
    device = runtime.resolve_device(common.get("device", "auto"))
    model, ckpt = load_autoencoder(model_path, device)
    for key in ("crop", "normalize", "code_dim"):
        if ckpt[key] != dedup[key]:
            raise ValueError(f"{model_path} was trained with {key}={ckpt[key]!r} but config dedup.{key} is "
                             f"{dedup[key]!r}; rerun rule dedup_train_autoencoder")
    x, _ = io.read_dataset(data_dir, "train")
    start, stop = shard_range(len(x), shard, shards)
    codes = hash_images(model, x[start:stop], crop=dedup["crop"], normalize=dedup["normalize"],
                        threshold=dedup["threshold"])
    prov = io.provenance(config={"dedup": dict(dedup), "shard": shard, "shards": shards}, seed=None,
                         inputs={"model": str(model_path)}, started=t0)
    with io.atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, start=start, stop=stop, n_total=len(x), codes=codes, code_dim=model.code_dim,
                     threshold=float(dedup["threshold"]), seconds=time.time() - t0,
                     provenance=json.dumps(prov, default=str))
    log.info("shard %d/%d: images %d..%d hashed in %.2f s", shard, shards, start, stop - 1, time.time() - t0)


def load_shards(paths: Sequence[str | Path], n: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Concatenate shard files into (n, code_dim/8) codes, checking they tile 0..n-1 exactly once, in order."""
    parts = []
    for p in paths:
        with np.load(p) as z:
            parts.append((int(z["start"]), int(z["stop"]), int(z["n_total"]), z["codes"], int(z["code_dim"]),
                          float(z["threshold"]), float(z["seconds"]), str(p)))
    parts.sort(key=lambda s: s[0])
    pos = 0
    for start, stop, total, codes, *_, p in parts:
        if total != n:
            raise ValueError(f"{p} hashes a collection of {total} images but the dataset has {n}; rerun the "
                             "dedup_hash_shard jobs")
        if start != pos or len(codes) != stop - start:
            raise ValueError(f"{p} covers images {start}..{stop - 1} but the next expected image is {pos}: "
                             "shards must tile the collection exactly once")
        pos = stop
    if pos != n:
        raise ValueError(f"the {len(parts)} shard files cover images 0..{pos - 1} of {n}")
    dims = {s[4] for s in parts}
    thresholds = {s[5] for s in parts}
    if len(dims) > 1 or len(thresholds) > 1:
        raise ValueError(f"shard files disagree on code_dim {sorted(dims)} or threshold {sorted(thresholds)}")
    codes = np.concatenate([s[3] for s in parts]) if parts else np.zeros((0, 16), np.uint8)
    info = {"code_dim": dims.pop() if dims else None, "threshold": thresholds.pop() if thresholds else None,
            "hash_seconds_total": round(sum(s[6] for s in parts), 3), "shards": len(parts)}
    return codes, info


# --- bucketing ------------------------------------------------------------------------------------

MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant (2^64 / golden ratio): x -> x * MIX is a bijection


def _mix_words(words: np.ndarray) -> np.ndarray:
    """(N, W) uint64 code words -> (N,) uint64 hash keys; equal rows always get equal keys.

    Different rows may share a key (rarely, for real codes); :func:`bucket_codes` checks each row against the
    first row of its bucket and splits such collisions exactly, so the mix affects speed only, never buckets.
    """
    key = words[:, 0].copy()  # (N,)
    for j in range(1, words.shape[1]):
        key ^= key >> np.uint64(31)
        key ^= words[:, j] * MIX  # (N,)
    return key


def _first_index(bucket: np.ndarray) -> np.ndarray:
    """keep[i] = lowest index with bucket id bucket[i], for ids numbered in order of first appearance."""
    # Ids grow in order of first appearance, so an image opens its bucket iff its id exceeds all before it.
    opens = bucket > np.maximum.accumulate(np.concatenate([[-1], bucket[:-1]]))  # (N,) bool
    first = np.flatnonzero(opens)  # (n_buckets,) lowest index of each bucket, in bucket-id order
    return first[bucket]  # (N,)


def bucket_codes(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group identical rows of packed codes (N, B) uint8 with one hash-table pass.

    Returns ``(bucket, keep)``: ``bucket[i]`` is the bucket id of image i (ids numbered in order of first
    appearance) and ``keep[i]`` the lowest image index in that bucket (i itself when i is kept). Linear time
    (Sec. 4.1.1 "linear time de-duplication"), no pairwise comparison: each row (zero-padded to 64-bit words,
    two words for 128 bits) is mixed into one 64-bit key, the keys are numbered in order of first appearance
    by ``pandas.factorize`` (a C hash table), and every row that joins an earlier row's bucket is compared word
    by word with that row; the rows of a bucket whose key was shared by different codes are re-bucketed
    exactly by their bytes, so the result never depends on the mix.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    n, b = codes.shape
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if b % 8:
        codes = np.concatenate([codes, np.zeros((n, 8 - b % 8), np.uint8)], 1)  # (N, 8W) zero-padded
    words = codes.view(np.uint64)  # (N, W): 2 words for 128-bit codes
    bucket = pd.factorize(_mix_words(words))[0].astype(np.int64, copy=False)  # (N,) ids by first appearance
    keep = _first_index(bucket)  # (N,)
    later = np.flatnonzero(keep != np.arange(n))  # rows that join a bucket opened by an earlier row
    wrong = later[(words[later] != words[keep[later]]).any(1)]  # their key collided with a different code
    if len(wrong):
        shared = np.zeros(bucket.max() + 1, bool)
        shared[bucket[wrong]] = True  # buckets that hold more than one distinct code
        rows = np.flatnonzero(shared[bucket])  # every row of those buckets
        table: dict[bytes, int] = {}
        exact = codes[rows].view(np.dtype((np.void, codes.shape[1]))).ravel().tolist()  # one key per row
        split = bucket.copy()
        split[rows] = n + np.fromiter((table.setdefault(k, len(table)) for k in exact), np.int64, len(rows))
        bucket = pd.factorize(split)[0].astype(np.int64, copy=False)  # renumbered by first appearance
        keep = _first_index(bucket)
    return bucket, keep


def planted_scores(planted: Any, bucket: np.ndarray, kinds: Sequence[str] | None = None) -> dict[str, Any]:
    """Precision and recall of a bucketing against planted duplicates.

    ``planted`` is ``meta["planted_duplicates"]`` of the source collection, in one of these forms:
    a list of ``[duplicate, original]`` index pairs (``kinds``, e.g. ``meta["planted_duplicate_kinds"]``, may
    name each pair's kind), a list of index groups ``[i, j, k, ...]`` (all copies of one image), a list of
    ``{"index": i, "original": j, "kind": str}`` records, or a dict ``{duplicate: original}``. True groups are
    the connected components of these links.

    Counting removals: a bucket B justifies ``|B| - g(B)`` removals, g(B) = number of true groups it touches.
    precision = justified / removals made; recall = justified / (removals the truth calls for,
    ``sum(|G| - 1)``). With kinds, ``recall_by_kind`` is the fraction of planted pairs of each kind that share
    a bucket.
    """
    n = len(bucket)
    links = _planted_links(planted)
    if kinds is not None:
        if len(kinds) != len(links):
            raise ValueError(f"{len(kinds)} planted duplicate kinds for {len(links)} planted pairs")
        links = [(i, j, str(k)) for (i, j, _), k in zip(links, kinds)]
    bad = [(i, j) for i, j, _ in links if not (0 <= i < n and 0 <= j < n)]
    if bad:
        raise ValueError(f"planted_duplicates refers to images outside 0..{n - 1}: {bad[:5]}")
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, _ in links:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    truth = np.array([find(i) for i in range(n)])  # (N,) true group id
    n_true_groups = len(np.unique(truth))
    n_buckets = len(np.unique(bucket))
    n_cells = len(np.unique(np.stack([bucket, truth], 1), axis=0))  # non-empty (bucket, true group) pairs
    justified = n - n_cells
    removed, should = n - n_buckets, n - n_true_groups
    by_kind: dict[str, list[int]] = {}
    for i, j, kind in links:
        by_kind.setdefault(kind or "unspecified", []).append(int(bucket[i] == bucket[j]))
    return {
        "planted_links": len(links), "should_remove": should, "removed": removed, "justified_removals": justified,
        "false_merges": removed - justified,
        "precision": None if removed == 0 else justified / removed,
        "recall": None if should == 0 else justified / should,
        "recall_by_kind": {k: {"pairs": len(v), "recall": float(np.mean(v))} for k, v in sorted(by_kind.items())},
    }


def _planted_links(planted: Any) -> list[tuple[int, int, str | None]]:
    """Normalise the accepted ``planted_duplicates`` forms to (duplicate, original, kind) links."""
    form = ("meta.json 'planted_duplicates' must be a list of [duplicate, original] pairs, a list of index "
            "groups, a list of {'index', 'original', 'kind'} records or a {duplicate: original} dict")
    if isinstance(planted, Mapping):
        return [(int(k), int(v), None) for k, v in planted.items()]
    if not isinstance(planted, Sequence) or isinstance(planted, str):
        raise ValueError(f"{form}; got {type(planted).__name__}")
    links: list[tuple[int, int, str | None]] = []
    for item in planted:
        if isinstance(item, Mapping) and "index" in item and "original" in item:
            links.append((int(item["index"]), int(item["original"]), item.get("kind")))
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) >= 2:
            links += [(int(i), int(item[0]), None) for i in item[1:]]
        else:
            raise ValueError(f"{form}; got an entry {item!r}")
    return links


# --- rule: dedup_gather --------------------------------------------------------------------------


def collision_sheet(x: np.ndarray, removed: np.ndarray, keep: np.ndarray, path: str | Path, *, title: str,
                    footer: str, max_pairs: int = SHEET_PAIRS, seed: int = 0) -> list[int]:
    """Contact sheet of hash collisions: each pair is (removed | kept), a seeded random sample of removals.

    The paper estimated its false-positive rate (< 1 in 100) by looking at collisions like these. With no
    collisions the sheet says so in words. Returns the removed indices shown.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(removed, size=min(max_pairs, len(removed)), replace=False)) if len(removed) \
        else np.zeros(0, np.int64)
    if len(shown) == 0:
        fig = plt.figure(figsize=(6, 2.5))
        fig.text(0.5, 0.55, "no hash collisions:\nno image was removed", ha="center", va="center", fontsize=16)
    else:
        cols = 4
        rows = (len(shown) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.5 * rows + 0.9), squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax, r in zip(axes.ravel(), shown):
            pair = image_grid(np.stack([x[r], x[keep[r]]]), 2, border=0)  # (H, 2W+2, C): 2 px white between
            ax.imshow(pair.squeeze(-1) if pair.shape[2] == 1 else pair, cmap="gray", interpolation="nearest")
            ax.set_title(f"#{r} | kept #{keep[r]}", fontsize=7)
        fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    fig.suptitle(title, fontsize=9)
    fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=7, wrap=True)
    with io.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return [int(i) for i in shown]


def write_subset_dataset(src_x: np.ndarray, src_y: np.ndarray, indices: np.ndarray, out_dir: str | Path,
                         meta: dict[str, Any]) -> None:
    """Write ``src[indices]`` as the ``train`` split of a dataset folder, atomically as a whole folder.

    Rows are copied in blocks through a memory map (3M LSUN images never sit in memory); the folder is built
    beside ``out_dir`` and renamed into place only when complete (:func:`dcgan_repro.io.staged_folder`).
    """
    with io.staged_folder(out_dir) as stage:
        xp, yp = io.dataset_paths(stage, "train")
        arr, tmp = io.open_npy_writer(xp, (len(indices), *src_x.shape[1:]), np.uint8)
        for i in range(0, len(indices), COPY_CHUNK):
            arr[i:i + COPY_CHUNK] = src_x[indices[i:i + COPY_CHUNK]]  # (b, H, W, C)
        io.commit_npy(arr, tmp, xp)
        io.save_npy(yp, np.asarray(src_y[indices], dtype=np.int64))
        io.write_json(stage / "meta.json", meta)


def gather(data_dir: str | Path, shard_paths: Sequence[str | Path], out_dir: str | Path,
           summary_path: str | Path, kept_path: str | Path, removed_path: str | Path,
           sheet_path: str | Path, dedup: Mapping[str, Any], preset: str) -> dict[str, Any]:
    """Rule ``dedup_gather``: bucket the codes, keep the lowest index per bucket, write every output.

    Outputs: the de-duplicated dataset ``out_dir`` (meta.json copies the source meta, adds a ``dedup`` block,
    keeps ``stand_in``), ``kept_path`` (kept indices, one per line), ``removed_path`` (CSV index, bucket,
    kept_index), ``sheet_path`` (collision contact sheet) and ``summary_path`` (returned).
    """
    t0 = time.time()
    x, y = io.read_dataset(data_dir, "train")
    src_meta = io.read_meta(data_dir)
    n = len(x)
    codes, info = load_shards(shard_paths, n)
    bucket, keep = bucket_codes(codes)
    kept = np.flatnonzero(keep == np.arange(n))
    removed = np.flatnonzero(keep != np.arange(n))
    sizes = np.bincount(bucket) if n else np.zeros(0, np.int64)
    log.info("%d images -> %d kept, %d removed (%.2f %%) in %d buckets", n, len(kept), len(removed),
             100 * len(removed) / max(n, 1), len(sizes))
    if n and sizes.max() > max(2, 0.01 * n):
        log.warning("largest bucket holds %d images (%.1f %%): codes may be degenerate (e.g. many flat "
                    "images, or a threshold that switches most units off)", sizes.max(), 100 * sizes.max() / n)

    io.write_text(kept_path, "".join(f"{i}\n" for i in kept))
    io.write_text(removed_path, "index,bucket,kept_index\n"
                  + "".join(f"{i},{bucket[i]},{keep[i]}\n" for i in removed))

    stand_in = src_meta.get("stand_in")
    dedup_info = {
        "method": "Sec. 4.1.1 denoising ReLU autoencoder hash, identical codes bucketed, lowest index kept",
        "source_dataset": str(data_dir), "source_images": n, "kept": len(kept), "removed": len(removed),
        "kept_indices": str(kept_path), "config": dict(dedup),
    }
    meta = {k: v for k, v in src_meta.items()  # planted indices refer to the source; provenance is its own
            if k not in ("planted_duplicates", "planted_duplicate_kinds", "provenance")}
    meta.update(name="lsun", splits={"train": len(kept)},
                source=f"{src_meta.get('source', data_dir)}; de-duplicated (Sec. 4.1.1), {len(removed)} of {n} "
                       "removed",
                stand_in=stand_in, dedup=dedup_info)
    meta.setdefault("image_shape", list(x.shape[1:]))
    write_subset_dataset(x, y, kept, out_dir, meta)

    title = (f"LSUN dedup hash collisions (Sec. 4.1.1), preset {preset}: {len(removed)} of {n} images removed; "
             f"{min(SHEET_PAIRS, len(removed))} random pairs, removed | kept")
    footer = f"data: {stand_in}" if stand_in else "data: LSUN (real)"
    shown = collision_sheet(x, removed, keep, sheet_path, title=title, footer=footer, seed=dedup["seed"])

    summary: dict[str, Any] = {
        "images": n, "kept": len(kept), "removed": len(removed),
        "removal_rate": len(removed) / n if n else 0.0,
        "buckets": len(sizes), "buckets_with_collisions": int((sizes > 1).sum()),
        "largest_bucket": int(sizes.max()) if n else 0,
        "bits_on_fraction": float(np.bitwise_count(codes).sum() / (n * info["code_dim"])) if n else None,
        "code_dim": info["code_dim"], "threshold": info["threshold"], "shards": info["shards"],
        "hash_time_s_total": info["hash_seconds_total"], "gather_time_s": round(time.time() - t0, 3),
        "sheet_pairs": shown, "stand_in": stand_in, "preset": preset,
        # images the ingest of the source could not decode never reach the hash: their counts by reason
        # (dcgan_repro.images.SKIP_REASONS) are repeated here so the summary accounts for every input
        "skipped_at_ingest": src_meta.get("skipped", {}),
        "skipped_at_ingest_total": sum(src_meta.get("skipped", {}).values()),
    }
    if "planted_duplicates" in src_meta:
        summary["planted"] = planted_scores(src_meta["planted_duplicates"], bucket,
                                            src_meta.get("planted_duplicate_kinds"))
        log.info("planted duplicates: precision %s recall %s", summary["planted"]["precision"],
                 summary["planted"]["recall"])
    summary["provenance"] = io.provenance(config={"dedup": dict(dedup), "preset": preset}, seed=dedup["seed"],
                                          inputs={"data": str(data_dir), "shards": [str(p) for p in shard_paths]},
                                          started=t0)
    io.write_json(summary_path, summary)
    return summary


# --- planted test collections ---------------------------------------------------------------------

PLANT_KINDS = ("exact", "jpeg", "shift", "brightness")
MIN_OFFSET = 8  # px between two crop windows of one photo in a planted collection


def make_planted_collection(photos: Sequence[np.ndarray], *, crops_per_photo: int = 5, size: int = 64,
                            dup_fraction: float = 0.1, kinds: Sequence[str] = PLANT_KINDS, seed: int = 0
                            ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """A test collection of distinct crops with planted near-duplicates, and the planted records.

    Each photo (uint8 H x W x 3, squashed to a square) gives one full view (area-resized to ``size``) and
    ``crops_per_photo`` random ``size`` crops of its 2 * ``size`` version, windows at least
    ``MIN_OFFSET`` pixels apart (so no two "distinct" images are themselves shifted copies). Then
    ``dup_fraction`` x that many duplicates are appended, cycling through ``kinds``: ``exact`` copies, ``jpeg``
    re-encodes (quality 70-95), 1-pixel ``shift`` (the crop window moved by one pixel; rolled for full views) and
    ``brightness`` (x 0.9, 0.95, 1.05 or 1.1, clipped). Records are ``{"index", "original", "kind"}``, the form
    :func:`planted_scores` reads from ``meta["planted_duplicates"]``.
    """
    import cv2

    rng = np.random.default_rng(seed)
    views, windows = [], []
    for p in photos:
        half = cv2.resize(p, (2 * size, 2 * size), interpolation=cv2.INTER_AREA)  # (2s, 2s, 3)
        views.append(cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA))  # (s, s, 3)
        windows.append((half, None))
        taken: list[tuple[int, int]] = []
        while len(taken) < crops_per_photo:  # windows >= MIN_OFFSET px apart: distinct, not shifted copies
            i, j = (int(v) for v in rng.integers(1, size - 1, 2))
            if all(max(abs(i - a), abs(j - b)) >= MIN_OFFSET for a, b in taken):
                taken.append((i, j))
                views.append(half[i:i + size, j:j + size])
                windows.append((half, (i, j)))
    x = np.stack(views)  # (N, s, s, 3)
    records, dups = [], []
    for k in range(int(round(dup_fraction * len(x)))):
        o, kind = int(rng.integers(len(x))), kinds[k % len(kinds)]
        img = x[o]
        if kind == "exact":
            d = img.copy()
        elif kind == "jpeg":
            _, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(70, 96))])
            d = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]  # BGR round trip -> RGB (s, s, 3)
        elif kind == "shift":
            half, ij = windows[o]
            di, dj = [(0, 1), (1, 0), (0, -1), (-1, 0)][int(rng.integers(4))]
            if ij is None:
                d = np.roll(img, (di, dj), axis=(0, 1))
            else:
                d = half[ij[0] + di:ij[0] + di + size, ij[1] + dj:ij[1] + dj + size]
        elif kind == "brightness":
            f = float(rng.choice([0.9, 0.95, 1.05, 1.1]))
            d = np.clip(np.rint(img.astype(np.float32) * f), 0, 255).astype(np.uint8)
        else:
            raise ValueError(f"unknown planted duplicate kind {kind!r}; allowed: {', '.join(PLANT_KINDS)}")
        records.append({"index": len(x) + k, "original": o, "kind": kind})
        dups.append(d)
    return np.concatenate([x, np.stack(dups)]) if dups else x, records


def _check_dedup_config(dedup: Mapping[str, Any]) -> None:
    if dedup.get("normalize") not in NORMALIZE:
        raise ValueError(f"config key 'dedup.normalize': {dedup.get('normalize')!r} is not allowed; allowed "
                         f"values: {', '.join(NORMALIZE)}")
    if dedup["threshold"] < 0:
        raise ValueError(f"config key 'dedup.threshold' must be >= 0 (ReLU codes are >= 0, a negative threshold "
                         f"sets every bit); got {dedup['threshold']}")
