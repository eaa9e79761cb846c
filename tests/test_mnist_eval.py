"""dcgan_repro.mnist_eval. search.py: the streamed 1-NN equals a brute-force float64 argmin (lowest index on ties) for
fp32 and bf16 candidate passes, with crafted ties, near-ties and duplicates; the int8 integer search equals an exact
integer (and a float64) brute force on 8-bit images with planted ties, near-ties and duplicates. sampler.py: the fast
MNIST DCGAN sampler is the module forward (exact in float64) and gives the same 1-NN. protocol.py: its pieces (balanced
labels, the authors' split from dcgan_repro.splits); evaluate_real / evaluate_generated / select_epoch end to end on
tiny data; checkpoint refusal; and, where ../shared/data exists, the real-MNIST 1-NN error of docs/REFERENCE.md (3.09%
with all 60k training images)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from conftest import assert_close_f32
from dcgan_repro import io, models, splits
from dcgan_repro.mnist_eval import protocol as P
from dcgan_repro.mnist_eval import sampler
from dcgan_repro.mnist_eval import search as S

torch.set_num_threads(1)

D = 64


def brute_force(q: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference: float64 sum((q - x)^2) for every pair, argmin taking the first (lowest) index on ties."""
    q64, x64 = q.astype(np.float64), x.astype(np.float64)
    d = np.stack([((qi[None, :] - x64) ** 2).sum(1) for qi in q64])  # (Q, N)
    idx = d.argmin(1)
    return idx, d[np.arange(len(q)), idx]


def crafted(seed: int = 0, n_q: int = 120, n: int = 1001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Queries and references on a 1/256 grid (exact arithmetic) with exact ties, near-ties and duplicates."""
    rng = np.random.default_rng(seed)
    q = rng.integers(64, 192, (n_q, D)).astype(np.float32) / 256  # (Q, D)
    x = rng.integers(0, 256, (n, D)).astype(np.float32) / 256  # (N, D) far references
    y = rng.integers(0, 10, n).astype(np.int64)
    for k in range(0, 40, 4):  # mirrored pair: x_b = 2q - x_a has the same distance -> lowest index must win
        a, b = 700 + k, 100 + k
        delta = rng.integers(-8, 9, D).astype(np.float32) / 256
        x[a], x[b] = q[k] + delta, q[k] - delta
        y[a], y[b] = 1, 2
    for k in range(1, 40, 4):  # near-tie closer than bf16 can resolve: 2^-20 apart in squared distance
        a, b = 300 + k, 800 + k
        delta = rng.integers(-8, 9, D).astype(np.float32) / 256
        delta[0] = 16 / 256
        x[a] = q[k] + delta
        x[b] = x[a]
        x[b, 0] = q[k, 0] + delta[0] - 2.0**-24  # a hair nearer: must win despite the higher index
        y[a], y[b] = 3, 4
    for k in range(2, 40, 4):  # exact duplicates at three indices
        x[[50 + k, 500 + k, 940 + k]] = q[k] + 4 / 256
        y[[50 + k, 500 + k, 940 + k]] = [5, 6, 7]
    x[999] = q[3]  # a query that is a reference (distance 0)
    return q, x, y


def stream(x: np.ndarray, y: np.ndarray, chunk: int):
    return ((x[i:i + chunk], y[i:i + chunk]) for i in range(0, len(x), chunk))


@pytest.mark.parametrize("search", ["fp32", "bf16"])
@pytest.mark.parametrize("chunk,tile_elems", [(1001, 1 << 20), (97, 4000), (256, 300)])
def test_stream_equals_brute_force_float64(search, chunk, tile_elems):
    q, x, y = crafted()
    idx, d = brute_force(q, x)
    res = S.nn_search_stream(q, stream(x, y, chunk), "cpu", search=search, tile_elems=tile_elems)
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_array_equal(res.sqdist, d)  # bit-equal float64 distances
    np.testing.assert_array_equal(res.label, y[idx])
    assert res.stats["n_reference"] == len(x)
    # the crafted cases came out as constructed
    assert all(res.index[k] == 100 + k for k in range(0, 40, 4))  # mirrored tie -> lower index
    assert all(res.index[k] == 800 + k for k in range(1, 40, 4))  # strictly nearer, higher index
    assert all(res.index[k] == 50 + k for k in range(2, 40, 4))  # duplicates -> lowest index
    assert res.index[3] == 999 and res.sqdist[3] == 0.0


def test_random_floats_not_on_a_grid_match_brute_force():
    rng = np.random.default_rng(1)
    q = rng.random((200, 50), dtype=np.float32)
    x = rng.random((1500, 50), dtype=np.float32)
    x[700:750] = x[100:150]  # duplicates far apart in the stream
    y = rng.integers(0, 10, len(x))
    idx, d = brute_force(q, x)
    for search in ("fp32", "bf16"):
        labels, dist = S.nn_classify_stream(q, stream(x, y, 333), "cpu", search=search)
        np.testing.assert_array_equal(labels, y[idx])
        np.testing.assert_array_equal(dist, np.sqrt(d))


def test_bf16_alone_gets_near_ties_wrong_and_the_recheck_fixes_them():
    """The fast pass by itself is not exact (so the test above can fail); the re-check makes it so."""
    q, x, y = crafted()
    idx, _ = brute_force(q, x)
    qb = torch.from_numpy(q).bfloat16().double()
    xb = torch.from_numpy(x).bfloat16().double()
    naive = ((xb**2).sum(1)[None, :] - 2 * (qb @ xb.T)).argmin(1).numpy()
    assert (naive != idx).any()
    res = S.nn_search_stream(q, stream(x, y, 200), "cpu", search="bf16")
    np.testing.assert_array_equal(res.index, idx)


def test_a_margin_below_the_error_bound_is_caught(monkeypatch):
    """With the proven margin shrunk to nothing, the premise check fires instead of a silent wrong answer."""
    q, x, y = crafted()
    monkeypatch.setattr(S, "SAFETY", 1e-9)
    with pytest.raises(RuntimeError, match="error bound"):
        S.nn_search_stream(q, stream(x, y, 1001), "cpu", search="bf16")


def test_bad_inputs_are_refused_with_a_clear_message():
    q = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError, match="divide uint8 images by 255"):
        S.nn_search_stream(q.astype(np.uint8), [(q, np.zeros(3))])
    with pytest.raises(ValueError, match="4 values per image|queries have 4"):
        S.nn_search_stream(q, [(np.zeros((2, 5), np.float32), np.zeros(2))])
    bad = np.zeros((2, 4), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        S.nn_search_stream(q, [(bad, np.zeros(2))])
    with pytest.raises(ValueError, match="empty"):
        S.nn_search_stream(q, [])
    with pytest.raises(ValueError, match="fp32, bf16"):
        S.nn_search_stream(q, [(q, np.zeros(3))], search="fp16")
    with pytest.raises(ValueError, match="argument 'search'"):
        S.resolve_search("fast", torch.device("cpu"))
    with pytest.raises(ValueError, match="mnist_eval.search"):  # the protocol names its config key
        P._search_choice({"search": "fast"}, torch.device("cpu"))


# --- int8: exact integer search of 8-bit images ----------------------------------------------------------


def brute_force_int(q: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact reference on grey levels: integer ||q - x||^2 (int64), first (lowest) index on ties."""
    qi, xi = q.astype(np.int64), x.astype(np.int64)
    d = np.stack([((row[None, :] - xi) ** 2).sum(1) for row in qi])  # (Q, N) exact integers
    idx = d.argmin(1)
    return idx, d[np.arange(len(q)), idx]


def brute_force_grey64(q: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 brute force on the pixels k/255: sum(((q - x) / 255)^2), first index on ties."""
    qi, xi = q.astype(np.float64), x.astype(np.float64)
    d = np.stack([(((row[None, :] - xi) / 255.0) ** 2).sum(1) for row in qi])  # (Q, N)
    idx = d.argmin(1)
    return idx, d[np.arange(len(q)), idx]


def crafted_uint8(seed: int = 0, n_q: int = 120, n: int = 1001, d: int = 784):
    """8-bit queries and references (uint8) with exact integer ties, near-ties (1 grey unit^2 apart),
    duplicates, a query that is a reference, and brightness varying a lot from image to image."""
    rng = np.random.default_rng(seed)
    q = rng.integers(40, 216, (n_q, d)).astype(np.int64)  # (Q, D)
    level = rng.integers(0, 256, (n, 1))  # per-image brightness: the pixel sums differ widely
    x = np.clip(level + rng.integers(-40, 41, (n, d)), 0, 255)  # (N, D)
    y = rng.integers(0, 10, n).astype(np.int64)
    for k in range(0, 40, 4):  # mirrored pair x_b = 2q - x_a: the same integer distance -> the lower index wins
        a, b = 700 + k, 100 + k
        delta = rng.integers(-8, 9, d)
        x[a], x[b] = q[k] + delta, q[k] - delta
        y[a], y[b] = 1, 2
    for k in range(1, 40, 4):  # near-tie: the higher index is nearer by exactly 1 (in units of 1/255^2)
        a, b = 300 + k, 800 + k
        delta = rng.integers(-8, 9, d)
        delta[:2] = 5, 1
        x[a] = q[k] + delta
        x[b] = x[a]
        x[b, :2] = q[k, :2] + [4, 3]  # pixel 0: 25 -> 16, pixel 1: 1 -> 9, so ||q - x_b||^2 = ||q - x_a||^2 - 1
        y[a], y[b] = 3, 4
    for k in range(2, 40, 4):  # exact duplicates at three indices
        x[[50 + k, 500 + k, 940 + k]] = q[k] + 4
        y[[50 + k, 500 + k, 940 + k]] = [5, 6, 7]
    x[999] = q[3]  # a query that is a reference (distance 0)
    return q.astype(np.uint8), x.astype(np.uint8), y


def unit(a: np.ndarray) -> np.ndarray:
    """uint8 -> float32 k/255 as the protocol hands images to the search (protocol._to_unit)."""
    return a.astype(np.float32) / np.float32(255)


@pytest.mark.parametrize("chunk,tile_elems", [(1001, None), (97, 4000), (256, 300), (1001, 1 << 12)])
def test_int8_equals_exact_integer_and_float64_brute_force(chunk, tile_elems):
    q, x, y = crafted_uint8()
    idx, dint = brute_force_int(q, x)
    res = S.nn_search_stream(unit(q), stream(unit(x), y, chunk), "cpu", search="int8", tile_elems=tile_elems)
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_array_equal(res.label, y[idx])
    np.testing.assert_array_equal(res.sqdist, dint / 255.0**2)  # the exact integer distance, correctly rounded
    idx64, d64 = brute_force_grey64(q, x)
    np.testing.assert_array_equal(res.index, idx64)  # float64 on k/255 decides the same, ties included
    np.testing.assert_allclose(res.sqdist, d64, rtol=1e-13, atol=0)
    assert res.stats["n_reference"] == len(x) and res.stats["search"] == "int8"
    # the crafted cases came out as constructed
    assert all(res.index[k] == 100 + k for k in range(0, 40, 4))  # mirrored tie -> lower index
    assert all(res.index[k] == 800 + k for k in range(1, 40, 4))  # strictly nearer, higher index
    assert all(res.index[k] == 50 + k for k in range(2, 40, 4))  # duplicates -> lowest index
    assert res.index[3] == 999 and res.sqdist[3] == 0.0


def test_int8_shift_correction_matters_and_is_right():
    """a.b = a'.b' + 128 sum(a') + 128 sum(b') + 128^2 D with a' = a - 128: on images of widely varying brightness,
    leaving the per-reference term out changes the argmin and the distances, so the exact match above and here
    could not survive a wrong correction."""
    q, x, y = crafted_uint8(seed=3, n_q=60, n=1001, d=200)
    qs, xs = q.astype(np.int64) - 128, x.astype(np.int64) - 128
    sq_q, sq_x = (q.astype(np.int64) ** 2).sum(1), (x.astype(np.int64) ** 2).sum(1)
    dot = q.astype(np.int64) @ x.astype(np.int64).T  # (Q, N) exact a.b
    right = qs @ xs.T + 128 * qs.sum(1)[:, None] + 128 * xs.sum(1)[None, :] + 128**2 * q.shape[1]
    np.testing.assert_array_equal(right, dot)  # the identity itself
    wrong = qs @ xs.T + 128 * qs.sum(1)[:, None] + 128**2 * q.shape[1]  # per-reference term left out
    idx, dint = brute_force_int(q, x)
    assert ((sq_q[:, None] + sq_x[None, :] - 2 * wrong).argmin(1) != idx).mean() > 0.5
    res = S.nn_search_stream(unit(q), stream(unit(x), y, 128), "cpu", search="int8")
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_array_equal(res.sqdist, dint / 255.0**2)


def test_int8_ties_across_tiles_and_chunks_keep_the_lowest_index():
    """Every reference at the same distance from every query: the answer is reference 0 however it is cut."""
    rng = np.random.default_rng(5)
    q = rng.integers(10, 246, (40, 64)).astype(np.uint8)
    x = np.repeat(rng.integers(0, 256, (1, 64)), 300, 0).astype(np.uint8)  # (300, 64) all identical
    for chunk, tile in ((300, None), (7, 64), (64, 100)):
        res = S.nn_search_stream(unit(q), stream(unit(x), np.arange(300), chunk), "cpu", search="int8",
                                       tile_elems=tile)
        assert (res.index == 0).all() and (res.label == 0).all()


def test_int8_and_fp32_agree_on_random_8bit_images():
    q, x, y = crafted_uint8(seed=7, n_q=50, n=1001, d=100)
    a = S.nn_search_stream(unit(q), stream(unit(x), y, 150), "cpu", search="int8")
    b = S.nn_search_stream(unit(q), stream(unit(x), y, 150), "cpu", search="fp32")
    tie_free = np.array([k % 4 != 0 or k >= 40 for k in range(len(q))])  # mirrored exact ties: fp32 rounding decides
    np.testing.assert_array_equal(a.index[tie_free], b.index[tie_free])
    # fp32(k/255) against k/255: each pixel rounded once, |d(q - x)^2| <= 2 u |q - x| (|q| + |x|), +1 for float64 sums
    # (Higham 3.5); where the two picked different nearest references, the larger of their two bounds
    qf = q.astype(np.float64) / 255
    scale = np.maximum(*[(np.abs(qf - xf) * (qf + xf)).sum(1) for xf in (x[a.index] / 255, x[b.index] / 255)])
    assert_close_f32(b.sqdist, a.sqdist, k=3, scale=scale, evaluations=1)


def test_int8_refuses_data_that_is_not_8bit_and_auto_picks_it_where_the_cpu_has_int8_dot_products(monkeypatch):
    q = unit(np.zeros((3, 8), np.uint8))
    with pytest.raises(ValueError, match="not 8-bit images.*mnist_eval.search"):
        S.nn_search_stream(q, [(np.full((2, 8), 0.5, np.float32), np.zeros(2))], search="int8",
                           setting=P.SEARCH_SETTING)
    with pytest.raises(ValueError, match="query is not 8-bit.*argument 'search'"):
        S.nn_search_stream(np.full((2, 8), 1.5, np.float32), [(q, np.zeros(3))], search="int8")
    bad = unit(np.zeros((2, 8), np.uint8))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        S.nn_search_stream(q, [(bad, np.zeros(2))], search="int8")
    with pytest.raises(ValueError, match="GreyLevelNN"):
        S.StreamingNN(q, search="int8")
    # auto follows the hardware (measured on an AVX2-only CPU: int8 13x slower than fp32 there)
    for int8, bf16, cpu_want, cuda_want in [(True, True, "int8", "bf16"), (False, False, "fp32", "fp32")]:
        monkeypatch.setattr(S.runtime, "native_int8", lambda device, v=int8: v)
        monkeypatch.setattr(S.runtime, "native_bf16", lambda device, v=bf16: v)
        assert S.resolve_search("auto", torch.device("cpu")) == cpu_want
        assert S.resolve_search("auto", torch.device("cuda")) == cuda_want
    monkeypatch.undo()
    for vnni, amx, want in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_vnni_supported", lambda v=vnni: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert S.runtime.native_int8("cpu") is want
    assert S.runtime.native_int8("cuda") is False
    assert S.resolve_search("fp32", torch.device("cpu")) == "fp32"
    with pytest.raises(ValueError, match="auto, fp32, bf16, int8"):
        S.resolve_search("int4", torch.device("cpu"))


@pytest.mark.parametrize("n", [10, 1000, 1003, 7])
def test_balanced_labels(n):
    labels = P.balanced_labels(n, 10, seed=3)
    counts = np.bincount(labels, minlength=10)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(labels, P.balanced_labels(n, 10, seed=3))  # seeded
    if n >= 100:
        assert not np.array_equal(labels, P.balanced_labels(n, 10, seed=4))
        assert not np.array_equal(labels, np.sort(labels))  # shuffled


def test_validation_split_is_the_authors():
    tr, va = splits.validation_split(60000, 10000, 42)
    perm = np.random.RandomState(42).permutation(60000)  # code: sklearn shuffle with RandomState(42)
    np.testing.assert_array_equal(va, perm[50000:])
    np.testing.assert_array_equal(tr, perm[:50000])
    with pytest.raises(ValueError, match="mnist_eval.validation_size"):
        splits.validation_split(100, 100, 42)


# --- end to end on tiny data ------------------------------------------------------------------------------

EVAL = {"sample_counts": {"50K": 200, "10M": 400}, "chunk": 64, "validation_size": 40, "split_seed": 42, "seed": 5,
        "search": "auto"}
COMMON = {"preset": "test", "device": "cpu", "precision": "fp32"}


def tiny_mnist_arrays(n_train=200, n_test=60, seed=0):
    """Blurry class-dependent blobs, 28x28x1 uint8: (train_x, train_y, test_x, test_y)."""
    rng = np.random.default_rng(seed)
    centres = rng.random((10, 28, 28, 1)) * 255

    def make(n):
        yy = rng.integers(0, 10, n)
        xx = np.clip(centres[yy] + rng.normal(0, 60, (n, 28, 28, 1)), 0, 255).astype(np.uint8)
        return xx, yy.astype(np.int64)

    (xtr, ytr), (xte, yte) = make(n_train), make(n_test)
    return xtr, ytr, xte, yte


def tiny_mnist(root, n_train=200, n_test=60, seed=0):
    """A dataset folder in the CONTRACTS format: blurry class-dependent blobs, 28x28x1 uint8."""
    xtr, ytr, xte, yte = tiny_mnist_arrays(n_train, n_test, seed)
    io.write_dataset(root, "train", xtr, ytr)
    io.write_dataset(root, "test", xte, yte)
    io.write_json(root / "meta.json", {"name": "mnist", "splits": {"train": n_train, "test": n_test},
                                       "image_shape": [28, 28, 1], "n_classes": 10, "class_names": None,
                                       "source": "test", "stand_in": "synthetic blobs (test)"})
    return xtr, ytr, xte, yte


def test_evaluate_real_on_a_tiny_dataset(tmp_path):
    xtr, ytr, xte, yte = tiny_mnist(tmp_path / "mnist")
    out = P.evaluate_real(tmp_path / "mnist", EVAL, tmp_path / "real_nn.json", COMMON)
    assert json.loads((tmp_path / "real_nn.json").read_text()) == json.loads(json.dumps(out))
    tr_idx = np.sort(splits.validation_split(len(xtr), 40, 42)[0])
    q = xte.reshape(len(xte), -1).astype(np.float32) / 255
    for row, idx in zip(out["rows"], [np.arange(len(xtr)), tr_idx]):
        ref = xtr[idx].reshape(len(idx), -1).astype(np.float32) / 255
        nn, d = brute_force(q, ref)
        assert row["n_train"] == len(idx)
        assert row["test_error_pct"] == pytest.approx(np.mean(ytr[idx][nn] != yte) * 100)
        assert row["mean_nn_distance"] == pytest.approx(np.sqrt(d).mean())
    assert out["stand_in"] == "synthetic blobs (test)"
    assert out["provenance"]["seed"] == 42 and out["provenance"]["inputs"]["data"]


def make_checkpoint(path, run):
    torch.manual_seed(0)
    netG, netD = models.build_models(run)
    models.save_checkpoint(path, netG, netD, name="mnist_dcgan", run=run, epoch=3, step=30, snapshots={},
                           data_meta={}, provenance={})


RUN = {"model": "mnist_cond_dcgan", "recipe": "paper", "nz": 8, "ngf": 4, "ndf": 4, "batch_size": 32}


def test_evaluate_generated_matches_a_brute_force_recomputation(tmp_path):
    xtr, ytr, xte, yte = tiny_mnist(tmp_path / "mnist")
    make_checkpoint(tmp_path / "model.pt", RUN)
    out_path = tmp_path / "mnist_dcgan_nn50K.json"
    out = P.evaluate_generated(tmp_path / "model.pt", tmp_path / "mnist", 200, EVAL, out_path, COMMON, "50K",
                                     run=RUN)
    assert json.loads(out_path.read_text()) == json.loads(json.dumps(out))
    assert (out["model"], out["column"], out["n_samples"], out["epoch"], out["seed"]) == ("mnist_dcgan", "50K", 200,
                                                                                          3, 5)
    assert out["stand_in"] == "synthetic blobs (test)" and out["n_test"] == 60 and out["n_validation"] == 40
    # the same samples, regenerated in one go, and a brute-force 1-NN
    netG, _, _ = models.load_checkpoint(tmp_path / "model.pt")
    labels = P.balanced_labels(200, 10, 5)
    gen = sampler.generate(netG, 200, z_dist="uniform", seed=5, labels=labels, batch_size=32)
    ref = gen.reshape(200, -1).astype(np.float32) / 255
    va = np.sort(splits.validation_split(len(xtr), 40, 42)[1])
    for x, y, key in ((xte, yte, "test_error_pct"), (xtr[va], ytr[va], "validation_error_pct")):
        nn, d = brute_force(x.reshape(len(x), -1).astype(np.float32) / 255, ref)
        assert out[key] == pytest.approx(np.mean(labels[nn] != y) * 100)
        if key == "test_error_pct":
            assert out["mean_nn_distance"] == pytest.approx(np.sqrt(d).mean())


def test_a_checkpoint_that_does_not_match_the_config_is_refused(tmp_path):
    tiny_mnist(tmp_path / "mnist")
    make_checkpoint(tmp_path / "model.pt", RUN)
    out_path = tmp_path / "out.json"
    with pytest.raises(ValueError, match=r"model\.pt.*ngf"):
        P.evaluate_generated(tmp_path / "model.pt", tmp_path / "mnist", 100, EVAL, out_path, COMMON, "50K",
                                   run={**RUN, "ngf": 8})
    assert not out_path.exists() and not list(tmp_path.glob(".out.json*"))


def test_an_unconditional_generator_is_refused(tmp_path):
    tiny_mnist(tmp_path / "mnist")
    run = {"model": "svhn32", "recipe": "paper", "nz": 8, "ngf": 4, "ndf": 4, "batch_size": 32}
    make_checkpoint(tmp_path / "model.pt", run)
    with pytest.raises(ValueError, match="class-conditional"):
        P.evaluate_generated(tmp_path / "model.pt", tmp_path / "mnist", 100, EVAL, tmp_path / "o.json", COMMON,
                                   "50K")



def test_select_epoch_reads_validation_only_and_the_evaluation_scores_the_choice(tmp_path, monkeypatch):
    xtr, ytr, _, _ = tiny_mnist(tmp_path / "mnist")
    snaps = {}
    for e in (1, 2, 3):  # three "epochs": different random G, epoch 3 is also the final model.pt
        torch.manual_seed(e)
        netG, netD = models.build_models(RUN)
        snaps[e] = str(tmp_path / f"epoch{e:03d}.pt")
        models.save_checkpoint(snaps[e], netG, netD, name="mnist_dcgan", run=RUN, epoch=e, step=10 * e,
                               snapshots={k: v for k, v in snaps.items()}, data_meta={}, provenance={})
    models.save_checkpoint(tmp_path / "model.pt", netG, netD, name="mnist_dcgan", run=RUN, epoch=3, step=30,
                           snapshots=snaps, data_meta={}, provenance={})
    io.write_json(tmp_path / "summary.json", {"train_time_s": 12.5})
    cfg = {**EVAL, "select_samples": 100}
    read_split = P._read_split
    monkeypatch.setattr(P, "_read_split", lambda d, split: read_split(d, split) if split == "train" else
                        pytest.fail("model selection read the test split"))
    sel = P.select_epoch(tmp_path / "model.pt", tmp_path / "summary.json", tmp_path / "mnist", cfg,
                               tmp_path / "sel.json", COMMON, run=RUN)
    va = np.sort(splits.validation_split(len(xtr), 40, 42)[1])
    labels = P.balanced_labels(100, 10, 5)
    errs = {}
    for e, path in snaps.items():  # brute force: every candidate's validation error
        netG, _, _ = models.load_checkpoint(path)
        ref = sampler.generate(netG, 100, z_dist="uniform", seed=5, labels=labels, batch_size=32)
        nn, _ = brute_force(xtr[va].reshape(len(va), -1).astype(np.float32) / 255,
                            ref.reshape(100, -1).astype(np.float32) / 255)
        errs[e] = np.mean(labels[nn] != ytr[va]) * 100
    assert {r["epoch"]: r["validation_error_pct"] for r in sel["candidates"]} == pytest.approx(errs)
    best = min(errs, key=lambda e: (errs[e], -e))
    assert (sel["selected_epoch"], sel["selected_path"]) == (best, snaps[best])
    assert (sel["epochs_trained"], sel["train_time_s"], sel["n_validation"]) == (3, 12.5, 40)
    monkeypatch.setattr(P, "_read_split", read_split)
    out = P.evaluate_generated(tmp_path / "model.pt", tmp_path / "mnist", 200, EVAL, tmp_path / "o.json",
                                     COMMON, "50K", run=RUN, selection=tmp_path / "sel.json")
    assert (out["epoch"], out["epochs_trained"], out["train_time_s"]) == (best, 3, 12.5)
    assert out["provenance"]["inputs"]["model"] == {snaps[best]: io.checksum(snaps[best])}
    # a selection that names another epoch than its file holds is refused
    io.write_json(tmp_path / "bad.json", {**sel, "selected_epoch": best % 3 + 1})
    with pytest.raises(ValueError, match="mnist_eval_select_epoch"):
        P.evaluate_generated(tmp_path / "model.pt", tmp_path / "mnist", 200, EVAL, tmp_path / "o2.json",
                                   COMMON, "50K", run=RUN, selection=tmp_path / "bad.json")

# --- real MNIST (../shared/data) --------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_mnist_1nn_error_is_3_09_percent(shared_data, tmp_path):
    """docs/REFERENCE.md Sec. 1: 1-NN on all 60,000 real training images -> 3.09% test error ("Real Data 3.1%")."""
    from torchvision.datasets import MNIST

    root = shared_data / "mnist"
    d = tmp_path / "mnist"
    for split, train in (("train", True), ("test", False)):
        ds = MNIST(str(root), train=train, download=False)
        io.write_dataset(d, split, ds.data.numpy()[..., None], ds.targets.numpy())
    out = P.evaluate_real(d, {**EVAL, "validation_size": 10000, "chunk": 16384}, tmp_path / "real.json",
                                COMMON)
    rows = {r["n_train"]: r for r in out["rows"]}
    assert rows[60000]["test_error_pct"] == pytest.approx(3.09, abs=1e-9)
    assert 3.31 <= rows[50000]["test_error_pct"] <= 3.34  # docs/REFERENCE.md: 3.31-3.34% on 50k of them


# --- sampler: the fast MNIST DCGAN forward ------------------------------------------------------------------


@pytest.mark.parametrize("n,batch", [(512, 128), (200, 32), (37, 64)])
def test_cond_dcgan_sampler_is_the_module_forward(n, batch):
    """CondDCGANSampler (y maps folded into per-class bias maps, deconv2 as matmul + col2im, BN per batch of
    several batches at once) computes netG(z, y) batch by batch: the same function, rearranged.

    Proved in float64 (net.double(), float64 z), where rounding is ~1e-16 per operation: the two orders of
    evaluation agree to 1e-12 of the output scale (each output is a chain of at most a few thousand-term sums
    through three BN layers, so ~1e4 unit roundoffs is ample), while a wrong bias map or BN grouping differs by
    more than 1e-3. The float32 path the workflow runs is checked on its 8-bit samples below."""
    torch.manual_seed(0)
    netG, _ = models.build_models({"model": "mnist_cond_dcgan", "recipe": "paper", "nz": 100, "ngf": 16, "ndf": 16})
    with torch.no_grad():  # weights and inputs far from zero, so a wrong bias map or BN group shows
        for p in netG.parameters():
            p.normal_(0.0, 0.2)
    sizes = models._chunk_sizes(n, batch)
    z = models.sample_z(n, 100, "uniform")
    y = torch.randint(0, 10, (n,))
    net64, z64 = copy.deepcopy(netG).double(), z.double()
    fast64 = sampler.CondDCGANSampler(net64)
    with torch.no_grad():
        ref, out, s = [], [], 0
        for size in sizes:
            ref.append(net64(z64[s:s + size], y[s:s + size]))
            out.append(fast64(z64[s:s + size], y[s:s + size], size))
            s += size
        ref, out = torch.cat(ref), torch.cat(out)
        assert ref.dtype == out.dtype == torch.float64
        assert ref.std() > 0.1                                         # not saturated: the check has teeth
        tol = 1e-12 * float(ref.abs().max())                           # sigmoid outputs: max |ref| <= 1
        assert (out - ref).abs().max() <= tol
        if len(set(sizes)) == 1 and len(sizes) > 1:                   # several BN batches in one call
            assert (fast64(z64, y, sizes[0]) - ref).abs().max() <= tol
            assert (fast64(z64, y, n) - ref).abs().max() > 1e-3       # one batch of all: other statistics
    labels = y.numpy()
    plain = models.generate(netG, n, z_dist="uniform", seed=4, labels=labels, batch_size=batch)
    fast = sampler.generate(netG, n, z_dist="uniform", seed=4, labels=labels, batch_size=batch)
    assert np.abs(plain.astype(int) - fast).max() <= 1 and (plain != fast).mean() < 1e-3
    with pytest.raises(TypeError, match="CondDCGANGenerator"):
        sampler.CondDCGANSampler(models.build_models({**RUN, "model": "svhn32", "ngf": 8, "ndf": 8})[0])


def test_fast_sampler_gives_the_same_1nn_as_the_module_forward():
    """The protocol samples the MNIST DCGAN through sampler.CondDCGANSampler: the plain netG(z, y) gives the same
    1-NN."""
    torch.manual_seed(1)
    netG, _ = models.build_models({**RUN, "nz": 16, "ngf": 8})
    labels = P.balanced_labels(600, 10, 2)
    plain = models.generate(netG, 600, z_dist="uniform", seed=3, labels=labels, batch_size=64)
    fast = sampler.generate(netG, 600, z_dist="uniform", seed=3, labels=labels, batch_size=64)
    assert np.abs(plain.astype(int) - fast).max() <= 1 and (plain != fast).mean() < 1e-3
    _, _, xte, _ = tiny_mnist_arrays()
    q = xte.reshape(len(xte), -1).astype(np.float32) / 255
    for gen in (plain, fast):
        res = S.nn_search_stream(q, stream(gen.reshape(600, -1).astype(np.float32) / 255, labels, 128), "cpu",
                                       search="bf16")
        nn, _ = brute_force(q, gen.reshape(600, -1).astype(np.float32) / 255)
        np.testing.assert_array_equal(res.index, nn)
        np.testing.assert_array_equal(res.label, labels[nn])
    nn_plain, _ = brute_force(q, plain.reshape(600, -1).astype(np.float32) / 255)
    nn_fast, _ = brute_force(q, fast.reshape(600, -1).astype(np.float32) / 255)
    np.testing.assert_array_equal(labels[nn_plain], labels[nn_fast])


def test_error_percentages_are_count_over_n_without_float_noise():
    """389 wrong of 10,000 is recorded as 3.89 (what the tables print), not 0.0389 * 100 = 3.8899999999999997."""
    pred, truth = np.r_[np.zeros(389), np.ones(9611)], np.ones(10_000)
    assert P._error_pct(pred, truth) == 3.89
    assert P._error_pct(truth, truth) == 0.0
