"""The single-layer K-means baseline (Coates et al. 2011) and its row in Table 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcgan_repro import io, kmeans, paper, tables

CFG = {"k": 8, "patch": 6, "stride": 1, "train_patches": 3000, "norm_eps": 10.0, "whiten_eps": 0.1,
       "max_iter": 3, "batch_size": 512, "standardize": True, "seed": 0}


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour images (structure for K-means to find), uint8 (n, 32, 32, 3)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, 8, 8, 3)).astype(np.float32)
    big = np.repeat(np.repeat(small, 4, 1), 4, 2) + rng.normal(0, 8, (n, 32, 32, 3))
    return np.clip(big, 0, 255).astype(np.uint8)


def _reference_encode(img: np.ndarray, dic: dict, cfg: dict) -> np.ndarray:
    """Coates' kmeans_demo.m extract_features for one image, written loop by loop."""
    p, eps = cfg["patch"], cfg["norm_eps"]
    x = img.astype(np.float64).transpose(2, 0, 1)  # (C, H, W)
    g = x.shape[1] - p + 1
    f = np.zeros((g, g, len(dic["centroids"])))
    for r in range(g):
        for c in range(g):
            v = x[:, r:r + p, c:c + p].reshape(-1)
            v = (v - v.mean()) / np.sqrt(v.var(ddof=1) + eps)
            v = (v - dic["mean"]) @ dic["whiten"]
            z = np.sqrt(((v[None] - dic["centroids"]) ** 2).sum(1))
            f[r, c] = np.maximum(0, z.mean() - z)
    h = int(np.ceil(g / 2))
    return np.concatenate([f[:h, :h].sum((0, 1)), f[:h, h:].sum((0, 1)), f[h:, :h].sum((0, 1)),
                           f[h:, h:].sum((0, 1))])


def test_normalisation_and_whitening():
    rng = np.random.default_rng(0)
    p = torch.from_numpy(rng.normal(100, 30, (5000, 12)).astype(np.float32) @ rng.normal(size=(12, 12)).astype(
        np.float32))
    n = kmeans.normalize_patches(p, 10.0)
    np.testing.assert_allclose(n.mean(1).numpy(), 0, atol=1e-4)
    mean, P = kmeans.fit_whitening(n.numpy(), 1e-6)
    w = (n.numpy() - mean) @ P
    cov = np.cov(w, rowvar=False)
    # normalisation removes one direction (every patch sums to 0): whitening makes the rest unit variance
    eig = np.sort(np.linalg.eigvalsh(cov))
    np.testing.assert_allclose(eig[1:], 1.0, atol=0.02)
    assert eig[0] < 1e-3
    np.testing.assert_allclose(P, P.T, atol=1e-5)  # ZCA: symmetric


def test_encode_matches_coates_reference():
    x = _images(60)
    dic = kmeans.fit_dictionary(x, CFG)
    assert dic["centroids"].shape == (8, 108) and dic["whiten"].shape == (108, 108)
    f = kmeans.encode(x[:2], dic, CFG)
    assert f.shape == (2, 32) and f.dtype == np.float32 and (f >= 0).all()
    for i in range(2):
        np.testing.assert_allclose(f[i], _reference_encode(x[i], dic, CFG), rtol=2e-3, atol=2e-2)


def test_encode_is_chunk_independent(monkeypatch):
    x = _images(7, seed=1)
    dic = kmeans.fit_dictionary(_images(40), CFG)
    whole = kmeans.encode(x, dic, CFG)
    monkeypatch.setattr(kmeans, "ENCODE_FLOATS", 729 * 8 * 2)  # two images per chunk
    np.testing.assert_allclose(kmeans.encode(x, dic, CFG), whole, rtol=1e-5, atol=1e-4)


def test_features_kmeans_rule(tmp_path):
    data = tmp_path / "cifar10"
    io.write_dataset(data, "train", _images(50), np.arange(50) % 10)
    io.write_dataset(data, "test", _images(20, seed=2), np.arange(20) % 10)
    out = tmp_path / "feat"
    res = kmeans.kmeans_features(data, out / "train.npy", out / "test.npy", out / "dictionary.npz", CFG,
                                 {"device": "cpu", "preset": "test"})
    assert res["feature_dim"] == 32
    tr, te = io.load_npy(out / "train.npy"), io.load_npy(out / "test.npy")
    assert tr.shape == (50, 32) and te.shape == (20, 32) and tr.dtype == np.float32
    np.testing.assert_allclose(tr.mean(0), 0, atol=1e-3)  # standardised with the train statistics
    d = np.load(out / "dictionary.npz")
    assert {"mean", "whiten", "centroids", "feature_mean", "feature_sd", "provenance"} <= set(d.files)
    assert not list(out.glob(".*"))  # no temporary files left


def test_bad_settings_refused():
    with pytest.raises(ValueError, match="kmeans.train_patches.*at least kmeans.k"):
        kmeans.fit_dictionary(_images(5), dict(CFG, train_patches=4))
    with pytest.raises(KeyError, match="lacks \\['whiten_eps'\\]"):
        kmeans.fit_dictionary(_images(5), {k: v for k, v in CFG.items() if k != "whiten_eps"})
    dic = kmeans.fit_dictionary(_images(20), CFG)
    with pytest.raises(ValueError, match="fitted with other kmeans settings"):
        kmeans.encode(_images(2), dic, dict(CFG, patch=5))


def _svm_result(acc: float, dim: int, lpc: int | None, features: str = "trained") -> dict:
    return {"test_accuracy_pct": acc, "test_error_ci95_pct": 0.5 if lpc else None, "feature_dim": dim,
            "labels_per_class": lpc, "draws": 5 if lpc else 1, "C": 0.001, "features": features, "_path": "r.json",
            "provenance": {"seed": 42, "config": {"preset": "demo"}}}


def test_table1_kmeans_row_is_measured():
    df = tables.table1_cifar10([_svm_result(70.0, 28672, None), _svm_result(60.0, 28672, 400),
                                _svm_result(65.0, 256, None, "kmeans"), _svm_result(55.0, 256, 400, "kmeans")],
                               preset="demo")
    km = df[df["model"] == paper.TABLE1_KMEANS].set_index("metric")
    assert (km["kind"] == "measured").all()
    assert km.loc["Accuracy", "ours"] == 65.0 and km.loc["Accuracy", "paper"] == 80.6
    assert km.loc["Accuracy (400 per class)", "ours_spread"] == 0.5
    assert km.loc["max # of features units", "ours"] == 64  # k = 256 / 4 quadrants
    # without the K-means results the row stays quoted
    df = tables.table1_cifar10([_svm_result(70.0, 28672, None), _svm_result(60.0, 28672, 400)], preset="demo")
    assert (df[df["model"] == paper.TABLE1_KMEANS]["kind"] == "quoted").all()
