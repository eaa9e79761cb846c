"""LSUN dedup (Sec. 4.1.1): shard tiling, linear-time bucketing against a brute-force reference, precision and
recall on planted duplicates of real photos, and the files the gather step writes (library and rule scripts)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_close_f32, fake_snakemake, gamma_f32, run_script
from dcgan_repro import dedup, io
from dcgan_repro import dedup_planting as planting

REPO = Path(__file__).resolve().parents[1]
CFG = dict(enabled=True, crop=32, normalize="image", code_dim=128, dropout=0.5, input_noise=2.0, threshold=0.0,
           train_images=2000, epochs=15, batch_size=64, lr=1e-3, shards=3, seed=1)
COMMON = {"preset": "test", "device": "cpu", "precision": "fp32"}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def skimage_photos() -> list[np.ndarray]:
    """Ten different photos shipped with scikit-image (gray ones replicated to RGB)."""
    import skimage.data as sd

    out = []
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                 "retina", "camera", "coins", "moon"):
        im = np.asarray(getattr(sd, name)())
        out.append((np.repeat(im[..., None], 3, 2) if im.ndim == 2 else im)[..., :3])
    return out


def brute_force_buckets(codes: np.ndarray) -> tuple[list[frozenset[int]], np.ndarray]:
    """O(n^2) reference: the partition of equal rows, and the lowest equal index of each row."""
    n = len(codes)
    equal = (codes[:, None, :] == codes[None, :, :]).all(-1)  # (n, n)
    keep = np.array([int(np.flatnonzero(equal[i])[0]) for i in range(n)])
    groups = {frozenset(np.flatnonzero(equal[i]).tolist()) for i in range(n)}
    return sorted(groups, key=min), keep


# --- pure functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("n,shards", [(10, 3), (1501, 2), (7, 7), (3, 5), (0, 2), (100, 1)])
def test_shard_ranges_tile_every_index_once_like_array_split(n, shards):
    seen = []
    for i, ref in enumerate(np.array_split(np.arange(n), shards)):
        start, stop = dedup.shard_range(n, i, shards)
        assert list(range(start, stop)) == ref.tolist()
        seen += range(start, stop)
    assert seen == list(range(n))


def test_shard_range_rejects_a_shard_outside_the_scatter():
    with pytest.raises(ValueError, match="dedup.shards"):
        dedup.shard_range(10, 3, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bucketing_equals_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    # 2 informative bits in byte 0 and a constant byte 1: many natural collisions; plus planted exact copies.
    codes = np.zeros((300, 2), np.uint8)
    codes[:, 0] = rng.integers(0, 4, 300) * 64
    codes[:, 1] = 7
    wide = rng.integers(0, 256, (200, 16), dtype=np.uint8)
    wide[rng.choice(200, 40, replace=False)] = wide[rng.choice(200, 40)]
    for c in (codes, wide):
        bucket, keep = dedup.bucket_codes(c)
        groups, ref_keep = brute_force_buckets(c)
        got = sorted({frozenset(np.flatnonzero(bucket == b).tolist()) for b in np.unique(bucket)}, key=min)
        assert got == groups
        np.testing.assert_array_equal(keep, ref_keep)
        assert bucket[0] == 0 and set(np.unique(bucket)) == set(range(len(groups)))  # ids in first-seen order


def _first_seen_ids(codes: np.ndarray) -> np.ndarray:
    """Reference bucket ids: a dict over each row's bytes, ids in order of first appearance."""
    table: dict[bytes, int] = {}
    return np.array([table.setdefault(row.tobytes(), len(table)) for row in codes], np.int64)


def _keys_that_collide(rng: np.random.Generator, n: int) -> np.ndarray:
    """(2n, 16) uint8: n random 128-bit codes and n different codes with the same 64-bit keys (dedup._mix_words).

    For two words the key is f(w0) ^ w1 * MIX with f(x) = x ^ (x >> 31), which is invertible, so a partner with
    any second word w1' and first word f^-1(key ^ w1' * MIX) shares the key of a different code.
    """
    words = rng.integers(0, 2**63, (n, 2), dtype=np.uint64)
    key = dedup._mix_words(words)  # (n,)
    partner = np.empty_like(words)
    partner[:, 1] = words[:, 1] ^ np.uint64(1)  # a different second word
    target = key ^ partner[:, 1] * dedup.MIX  # f(w0') must equal this
    x = target.copy()
    for _ in range(3):  # inverts x ^ (x >> 31) on 64 bits (fixed point after 64 / 31 < 3 steps)
        x = target ^ (x >> np.uint64(31))
    partner[:, 0] = x
    return np.concatenate([words, partner]).view(np.uint8).reshape(2 * n, 16)


def test_bucketing_splits_colliding_hash_keys_exactly(monkeypatch):
    rng = np.random.default_rng(0)
    codes = _keys_that_collide(rng, 50)  # 50 keys, each shared by 2 different codes
    codes = codes[rng.permutation(100)]
    codes = np.concatenate([codes, codes[rng.integers(0, 100, 60)]])  # plus 60 exact copies
    keys = dedup._mix_words(codes.view(np.uint64))
    assert len(np.unique(keys)) == 50 and len(np.unique(codes, axis=0)) == 100  # the keys really collide
    bucket, keep = dedup.bucket_codes(codes)
    np.testing.assert_array_equal(bucket, _first_seen_ids(codes))
    np.testing.assert_array_equal(keep, brute_force_buckets(codes)[1])
    # every key equal, at several code widths (padding to 64-bit words): one bucket per distinct code still
    monkeypatch.setattr(dedup, "_mix_words", lambda words: np.zeros(len(words), np.uint64))
    for width in (2, 16, 20):
        c = rng.integers(0, 3, (200, width), dtype=np.uint8)
        bucket, keep = dedup.bucket_codes(c)
        np.testing.assert_array_equal(bucket, _first_seen_ids(c))
        np.testing.assert_array_equal(keep, brute_force_buckets(c)[1])
        assert bucket.dtype == keep.dtype == np.int64


def test_bucketing_an_empty_collection():
    bucket, keep = dedup.bucket_codes(np.zeros((0, 16), np.uint8))
    assert bucket.shape == keep.shape == (0,)


def test_planted_scores_count_justified_removals():
    # images 0..7; truth: {0,1,2} copies, {3,4} copies. Buckets: {0,1} {2} {3,4,5} {6} {7}
    bucket = np.array([0, 0, 1, 2, 2, 2, 3, 4])
    s = dedup.planted_scores([[1, 0], [2, 0], [4, 3]], bucket, kinds=["exact", "jpeg", "exact"])
    # removals made: 1 + 2 = 3; justified: {0,1} -> 1, {3,4,5} -> 3 - 2 groups = 1; should remove 2 + 1 = 3
    assert (s["removed"], s["justified_removals"], s["should_remove"], s["false_merges"]) == (3, 2, 3, 1)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["recall_by_kind"] == {"exact": {"pairs": 2, "recall": 1.0}, "jpeg": {"pairs": 1, "recall": 0.0}}
    # every accepted form of meta["planted_duplicates"] gives the same answer
    for form in ([[0, 1, 2], [3, 4]], {"1": 0, "2": 0, "4": 3},
                 [{"index": 1, "original": 0}, {"index": 2, "original": 0}, {"index": 4, "original": 3}]):
        assert dedup.planted_scores(form, bucket)["justified_removals"] == 2
    with pytest.raises(ValueError, match="planted_duplicates"):
        dedup.planted_scores([[1, 99]], bucket)
    with pytest.raises(ValueError, match="planted_duplicates"):
        dedup.planted_scores("1,0", bucket)


def test_planted_duplicate_kinds_are_the_documented_changes():
    """dedup_planting: each operation's duplicate is the documented change of the original, fixed parameters
    draw nothing from the generator, ranges stay in range, and the window operations need the window."""
    Kind = planting.Kind
    photo = skimage_photos()[1]  # chelsea (300, 451, 3)
    win = planting.Window(photo, 100, 50, 128)  # 128 source px -> 64 output px: a 2 px step
    img = planting.crop(photo, 100, 50, 128, 64)
    src = img.astype(np.float32)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert np.array_equal(planting.plant(Kind("exact"), img, rng), img)
    assert np.array_equal(planting.plant(Kind("offset", 20, signs=(-1,)), img, rng),
                          np.clip(img.astype(int) - 20, 0, 255))
    assert np.array_equal(planting.plant(Kind("gain", 1.1), img, rng), np.clip(np.rint(src * 1.1), 0, 255))
    c = planting.plant(Kind("contrast", 0.8), img, rng).astype(np.float32)
    assert abs(c.mean() - src.mean()) < 1 and c.std() == pytest.approx(0.8 * src.std(), rel=0.02)
    j = planting.plant(Kind("jpeg", 50), img, rng).astype(int)
    assert 0 < np.abs(j - img).mean() < 12
    zoom = cv2.resize(photo[58:170, 108:220], (64, 64), interpolation=cv2.INTER_LINEAR)  # 4 output px = 8 source
    assert np.array_equal(planting.plant(Kind("crop", 4), img, rng, win), zoom)
    assert rng.bit_generator.state == state  # every parameter above was fixed
    moved = planting.plant(Kind("shift", 2), img, rng, win)  # 2 output px = 4 source px along one axis
    assert sum(np.array_equal(moved, planting.crop(photo, 100 + dx, 50 + dy, 128, 64))
               for dx, dy in ((0, 4), (4, 0), (0, -4), (-4, 0))) == 1
    for _ in range(20):
        q = planting.plant(Kind("offset", 12, 30, signs=(-1, 1)), img, rng).astype(int) - img
        assert 12 <= abs(np.median(q)) <= 30
        moved = planting.plant(Kind("shift_xy", 1, 2, signs=(-1, 1)), img, rng, win)
        assert sum(np.array_equal(moved, planting.crop(photo, 100 + 2 * dx, 50 + 2 * dy, 128, 64))
                   for dx in (-2, -1, 1, 2) for dy in (-2, -1, 1, 2)) == 1
    with pytest.raises(ValueError, match="Window"):
        planting.plant(Kind("shift", 1), img, rng)
    for bad in (("blur", 1), ("shift", 0), ("jpeg", 85, 50), ("jpeg", 50.5)):
        with pytest.raises(ValueError):
            Kind(*bad)
    assert planting.describe({"b": Kind("offset", 12, 30, signs=(-1, 1)), "j": Kind("jpeg", 95)}) == (
        "b = offset +-12..30; j = jpeg 95")

def test_preprocess_is_an_area_downsample_then_per_image_standardisation():
    x = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    ref = x.astype(np.float64).reshape(3, 32, 2, 32, 2, 3).mean((2, 4)) / 255  # 2x2 box mean (N, 32, 32, 3)
    ref = ref.transpose(0, 3, 1, 2).reshape(3, -1)  # (N, C*32*32) in torch's channel-first order
    # float32: x / 255 (<= 2 roundings) and the 2x2 box's 3 additions, of nonnegative terms: gamma_5 |ref| (Higham 3.5)
    assert_close_f32(dedup.preprocess(x, 32, "none").numpy(), ref, k=5, scale=ref, evaluations=1)
    v = dedup.preprocess(x, 32, "image").numpy().astype(np.float64)  # (N, D); checked in float64
    D, s = v.shape[1], ref.std(1, ddof=1)
    # mean(v) = (mean - float32 mean over D terms) / std + (v's subtraction and division roundings): gamma_{D+2}
    assert_close_f32(v.mean(1), np.zeros_like(s), k=D + 2, scale=ref.mean(1) / s + np.abs(v).mean(1), evaluations=1)
    # float32 std: a sum of D nonnegative squares, gamma_{D+2} / 2 relative (Higham 3.5), +22 for the sqrt, v's 3
    # roundings and the float32 mean's error (second order); the input's gamma_5 |ref| moves the std by <= gamma_5 rms.
    # Still < 1.6e-4, the difference between ddof 0 and 1, which this therefore detects.
    rel = gamma_f32(D + 24) / 2 + gamma_f32(5) * np.sqrt((ref**2).mean(1)) / s
    np.testing.assert_allclose(v.std(1, ddof=1), s / (s + dedup.NORM_EPS), rtol=rel.max())
    # a global brightness change does not move a standardised input much (it moves the raw one)
    brighter = np.clip(x.astype(np.int16) + 20, 0, 255).astype(np.uint8)
    raw_shift = (dedup.preprocess(brighter, 32, "none") - dedup.preprocess(x, 32, "none")).abs().mean().item()
    std_shift = (dedup.preprocess(brighter, 32, "image") - dedup.preprocess(x, 32, "image")).abs().mean().item()
    assert std_shift < 0.5 * raw_shift / ref.std()
    with pytest.raises(ValueError, match="dedup.normalize"):
        dedup.preprocess(x, 32, "zscore")


# --- the hash on real photos --------------------------------------------------------------------------


def _hash_collection(x: np.ndarray, seed: int = 1, **over) -> np.ndarray:
    cfg = {**CFG, **over}
    model, hist = dedup.train_autoencoder(
        x, crop=cfg["crop"], code_dim=cfg["code_dim"], dropout=cfg["dropout"], input_noise=cfg["input_noise"],
        normalize=cfg["normalize"], epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"], seed=seed)
    assert hist[-1] < hist[0]  # it learned something
    return dedup.hash_images(model, x, crop=cfg["crop"], normalize=cfg["normalize"], threshold=cfg["threshold"])


def test_hash_finds_planted_exact_copies_and_never_merges_different_photos():
    photos = skimage_photos()
    per = 1 + 20  # views per photo in make_planted_collection
    x, records = dedup.make_planted_collection(photos, crops_per_photo=20, seed=3)
    bucket, keep = dedup.bucket_codes(_hash_collection(x))
    scores = dedup.planted_scores(records, bucket)
    assert scores["recall_by_kind"]["exact"]["recall"] == 1.0
    photo = np.concatenate([np.arange(len(photos) * per) // per, [r["original"] // per for r in records]])
    for b in np.unique(bucket):
        assert len(set(photo[bucket == b])) == 1, f"bucket {b} merges crops of different photos"
    assert scores["precision"] >= 0.95


def test_hash_precision_and_recall_on_planted_scenes(shared_data):
    """1,602 crops of 267 real photos + 160 planted duplicates (measured, seed 1: precision 0.99, recall 0.61; the one
    "false" merge joins Set5's head.png and Set14's face.png, which are the same photo)."""
    photos = np.load(shared_data / "scenes" / "scenes256.npz")["images"]
    x, records = dedup.make_planted_collection(photos, seed=0)
    bucket, _ = dedup.bucket_codes(_hash_collection(x, batch_size=128))
    s = dedup.planted_scores(records, bucket)
    by_kind = {k: v["recall"] for k, v in s["recall_by_kind"].items()}
    assert by_kind["exact"] == 1.0
    assert s["precision"] >= 0.97 and s["recall"] >= 0.4
    assert by_kind["brightness"] >= 0.5  # per-image standardisation at work


def test_hash_bits_do_not_depend_on_batching_and_are_packed():
    x, _ = dedup.make_planted_collection(skimage_photos()[:3], crops_per_photo=4, seed=0)
    model, _ = dedup.train_autoencoder(x, crop=32, code_dim=20, dropout=0.5, input_noise=0.5, normalize="image",
                                       epochs=2, batch_size=8, lr=1e-3, seed=0)
    whole = dedup.hash_images(model, x, crop=32, normalize="image", threshold=0.0)
    pieces = dedup.hash_images(model, x, crop=32, normalize="image", threshold=0.0, batch_size=5)
    assert whole.shape == (len(x), 3) and whole.dtype == np.uint8  # 20 bits -> 3 bytes
    np.testing.assert_array_equal(whole, pieces)
    with torch.no_grad():
        ref = (model.code(dedup.preprocess(x, 32, "image")) > 0).numpy()
    np.testing.assert_array_equal(np.unpackbits(whole, axis=1)[:, :20], ref)


# --- rule jobs and scripts ------------------------------------------------------------------------------


def make_lsun_raw(folder: Path, n_copies: int = 6) -> tuple[dict, np.ndarray]:
    """A small lsun_raw folder: distinct crops of real photos with ``n_copies`` exact copies planted."""
    x, records = dedup.make_planted_collection(skimage_photos()[:6], crops_per_photo=8, dup_fraction=0.12,
                                               kinds=("exact",), seed=0)
    x, records = x[:54 + n_copies], records[:n_copies]
    meta = {"name": "lsun_raw", "splits": {"train": len(x)}, "image_shape": [64, 64, 3], "n_classes": 0,
            "class_names": None, "source": "test crops", "stand_in": "test crops standing in for LSUN",
            "planted_duplicates": [[r["index"], r["original"]] for r in records],
            "planted_duplicate_kinds": [r["kind"] for r in records], "provenance": {"seed": 0}}
    io.write_dataset(folder, "train", x)
    io.write_json(folder / "meta.json", meta)
    return meta, x




def test_rule_scripts_train_hash_and_gather_write_the_format(tmp_path):
    raw = tmp_path / "resources/data/lsun_raw"
    src_meta, x = make_lsun_raw(raw)
    cfg = {**CFG, "epochs": 5}
    model = tmp_path / "results/dedup/autoencoder.pt"
    run_script("dedup_train_autoencoder", fake_snakemake(
        "dedup_train_autoencoder", tmp_path, input={"data": str(raw)}, output={"model": str(model)},
        params={"dedup": cfg, "common": COMMON}))
    ckpt = torch.load(model, weights_only=False)
    assert ckpt["in_dim"] == 3072 and ckpt["code_dim"] == 128 and ckpt["n_train"] == len(x)
    assert "provenance" in ckpt and len(ckpt["loss_history"]) == 5
    shards = [tmp_path / f"results/dedup/shards/{i:04d}.npz" for i in range(3)]
    for i, out in enumerate(shards):
        run_script("dedup_hash_shard", fake_snakemake(
            "dedup_hash_shard", tmp_path, input={"data": str(raw), "model": str(model)}, output={"codes": str(out)},
            params={"shard": i, "shards": 3, "dedup": cfg, "common": COMMON}))
    outs = {"data": tmp_path / "resources/data/lsun", "summary": tmp_path / "results/dedup/summary.json",
            "kept": tmp_path / "results/dedup/kept.txt", "removed": tmp_path / "results/dedup/removed.csv",
            "sheet": tmp_path / "results/dedup/collisions.png"}
    run_script("dedup_gather", fake_snakemake(
        "dedup_gather", tmp_path, input={"data": str(raw), "shards": [str(s) for s in shards]},
        output={k: str(v) for k, v in outs.items()}, params={"dedup": cfg, "preset": "test"}))

    kept = [int(v) for v in outs["kept"].read_text().split()]
    with open(outs["removed"]) as f:
        removed = list(csv.DictReader(f))
    assert set(removed[0]) == {"index", "bucket", "kept_index"}
    removed_idx = [int(r["index"]) for r in removed]
    assert sorted(kept + removed_idx) == list(range(len(x)))  # every image kept or removed, once
    for r in removed:  # each removed image is an exact-code twin of a lower kept index
        assert int(r["kept_index"]) < int(r["index"]) and int(r["kept_index"]) in kept
    planted = {d for d, _ in src_meta["planted_duplicates"]}
    assert planted <= set(removed_idx)  # exact copies always collide

    tx, ty = io.read_dataset(outs["data"], "train")
    np.testing.assert_array_equal(tx, x[kept])
    assert ty.dtype == np.int64 and (ty == -1).all()
    meta = io.read_meta(outs["data"])
    assert meta["name"] == "lsun" and meta["splits"] == {"train": len(kept)}
    assert meta["stand_in"] == src_meta["stand_in"] and meta["image_shape"] == [64, 64, 3]
    assert "planted_duplicates" not in meta and meta["dedup"]["removed"] == len(removed)

    summary = json.loads(outs["summary"].read_text())
    assert summary["images"] == len(x) and summary["kept"] == len(kept) and summary["removed"] == len(removed)
    assert summary["removal_rate"] == pytest.approx(len(removed) / len(x))
    assert summary["planted"]["recall_by_kind"]["exact"]["recall"] == 1.0
    assert summary["provenance"]["config"]["dedup"]["seed"] == cfg["seed"] and "gather_time_s" in summary
    with Image.open(outs["sheet"]) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert not list(tmp_path.rglob("*.partial*")) and not list(tmp_path.rglob("*.tmp*"))


def test_gather_with_no_collisions_and_bad_shards(tmp_path):
    raw = tmp_path / "lsun_raw"
    x = np.random.default_rng(0).integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    io.write_dataset(raw, "train", x)
    io.write_json(raw / "meta.json", {"name": "lsun_raw", "stand_in": None, "source": "noise"})
    codes = np.arange(10, dtype=np.uint8)[:, None] * np.ones((1, 16), np.uint8)  # all different

    def shard(path, start, stop, n=10):
        np.savez(path, start=start, stop=stop, n_total=n, codes=codes[start:stop], code_dim=128, threshold=0.0,
                 seconds=0.0, provenance="{}")
        return path

    paths = [shard(tmp_path / "a.npz", 0, 6), shard(tmp_path / "b.npz", 6, 10)]
    outs = dict(out_dir=tmp_path / "lsun", summary_path=tmp_path / "s.json", kept_path=tmp_path / "k.txt",
                removed_path=tmp_path / "r.csv", sheet_path=tmp_path / "c.png")
    s = dedup.gather(raw, paths[::-1], **outs, dedup=CFG, preset="test")  # order of files does not matter
    assert (s["kept"], s["removed"], s["sheet_pairs"]) == (10, 0, []) and "planted" not in s
    assert outs["removed_path"].read_text() == "index,bucket,kept_index\n"
    with Image.open(outs["sheet_path"]) as im:
        assert im.format == "PNG"
    gap = shard(tmp_path / "c.npz", 7, 10)
    with pytest.raises(ValueError, match="c.npz covers images 7..9 but the next expected image is 6"):
        dedup.gather(raw, [paths[0], gap], **outs, dedup=CFG, preset="test")
    other = shard(tmp_path / "d.npz", 6, 10, n=11)
    with pytest.raises(ValueError, match="collection of 11 images but the dataset has 10"):
        dedup.gather(raw, [paths[0], other], **outs, dedup=CFG, preset="test")
    with pytest.raises(ValueError, match="cover images 0..5 of 10"):
        dedup.gather(raw, [paths[0]], **outs, dedup=CFG, preset="test")


def test_hash_job_refuses_a_model_trained_with_other_settings(tmp_path):
    raw = tmp_path / "lsun_raw"
    make_lsun_raw(raw, n_copies=0)
    model = tmp_path / "ae.pt"
    dedup.train_job(raw, model, {**CFG, "epochs": 1, "train_images": 20}, COMMON)
    with pytest.raises(ValueError, match="normalize='image' but config dedup.normalize is 'none'"):
        dedup.hash_shard(raw, model, tmp_path / "s.npz", 0, 1, {**CFG, "normalize": "none"}, COMMON)
    with pytest.raises(ValueError, match="dedup.threshold"):
        dedup.train_job(raw, model, {**CFG, "threshold": -1.0}, COMMON)
    assert not (tmp_path / "s.npz").exists()
