"""L2-SVM protocols (Tables 1, 2): scoring, splits and label draws, row views, test-set hygiene, errors, registry."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from sklearn.svm import LinearSVC

from conftest import SVM_COMMON as COMMON, SVM_CFG as CFG, blobs, pooled_features
from dcgan_repro import config, io
from dcgan_repro.svm import protocols, registry, solvers

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def _dataset(tmp_path: Path, name: str, ytr: np.ndarray, yte: np.ndarray, xtr: np.ndarray, xte: np.ndarray,
             stand_in: str | None = "toy blobs standing in") -> tuple[Path, Path, Path]:
    """A dataset folder in the common format plus train/test feature files."""
    d = tmp_path / "data" / name
    for split, y in (("train", ytr), ("test", yte)):
        io.write_dataset(d, split, np.zeros((len(y), 2, 2, 3), np.uint8), y)
    k = int(max(ytr.max(), yte.max())) + 1
    io.write_json(d / "meta.json", {"name": name, "splits": {"train": len(ytr), "test": len(yte)},
                                    "image_shape": [2, 2, 3], "n_classes": k,
                                    "class_names": [f"c{i}" for i in range(k)], "source": "test",
                                    "stand_in": stand_in})
    ftr, fte = tmp_path / "feat" / "train.npy", tmp_path / "feat" / "test.npy"
    io.save_npy(ftr, xtr)
    io.save_npy(fte, xte)
    return d, ftr, fte


def test_warm_start_and_row_views_change_cost_not_result(tmp_path):
    """A warm start along the C grid lands on the cold-start solution with fewer passes over X; a memory-mapped
    file and a chunk-reading row view give bit-identical fits to the same rows in memory."""
    X, y = pooled_features(2000, 150, 10, seed=3)
    cold, warm = {}, {}
    m_cold = solvers.fit_l2svm(X, y, 1e-2, n_classes=10, info=cold)
    m_prev = solvers.fit_l2svm(X, y, 1e-3, n_classes=10)
    m_warm = solvers.fit_l2svm(X, y, 1e-2, n_classes=10, init=m_prev, info=warm)
    np.testing.assert_allclose(warm["objective"], cold["objective"], rtol=1e-5)
    assert warm["passes"] < cold["passes"]
    path = tmp_path / "x.npy"
    io.save_npy(path, X)
    mm = io.load_npy(path)  # read-only memmap
    idx = np.sort(np.random.default_rng(0).choice(len(X), 1200, replace=False))
    direct = solvers.fit_l2svm(X[idx], y[idx], 1e-3, n_classes=10)
    for view in (protocols._RowSubset(mm, idx), protocols._rows(mm, idx)):
        Wv, bv = solvers.fit_l2svm(view, y[idx], 1e-3, n_classes=10)
        np.testing.assert_array_equal(Wv, direct[0])
        np.testing.assert_array_equal(bv, direct[1])
    assert protocols._rows(mm, np.arange(len(X))) is mm  # all rows: the memmap itself, no copy


def test_error_pct_streams_many_models_like_direct_scoring():
    X, y = blobs(200, 3, 10, seed=2, spread=2.0)
    models = [solvers.fit_l2svm(X[i::3], y[i::3], c, n_classes=3) for i, c in enumerate([1e-3, 1e-2, 1.0])]
    direct = [100 * np.mean(solvers.predict(X, m) != y) for m in models]
    np.testing.assert_allclose(protocols.error_pct(X, y, models, block_rows=13), direct)


def test_split_and_draws_are_exact_and_seeded():
    y = np.repeat(np.arange(5), 40)
    val, pool = protocols.split_train_validation(len(y), 50, seed=42)
    assert len(val) == 50 and len(pool) == 150 and not set(val) & set(pool)
    assert np.array_equal(val, protocols.split_train_validation(len(y), 50, seed=42)[0])
    pools = protocols.class_pools(y, pool, 5, 7)
    idx = protocols.draw_labelled(pools, 7, np.random.default_rng(0))
    assert np.array_equal(np.bincount(y[idx], minlength=5), [7] * 5)
    assert len(set(idx)) == 35 and set(idx) <= set(pool)
    with pytest.raises(ValueError, match="svm.validation_size = 200"):
        protocols.split_train_validation(200, 200, 0)


def test_protocol_draws_labels_per_class_and_never_selects_on_test(tmp_path, monkeypatch):
    Xtr, ytr = blobs(400, 5, 16, seed=3, spread=1.0)
    Xte, yte = blobs(150, 5, 16, seed=4, spread=1.0)
    d, ftr, fte = _dataset(tmp_path, "svhn", ytr, yte, Xtr, Xte)
    events: list[tuple] = []
    real_fit, real_load = solvers.fit_l2svm, io.load_npy

    def spy_fit(X, y, C, **kw):
        events.append(("fit", C, np.bincount(y, minlength=5).tolist(), len(y)))
        return real_fit(X, y, C, **kw)

    def spy_load(path, mmap=True):
        events.append(("load", str(path)))
        return real_load(path, mmap)

    monkeypatch.setattr(solvers, "fit_l2svm", spy_fit)
    monkeypatch.setattr(io, "load_npy", spy_load)
    out = tmp_path / "res" / "svm_svhn_1000.json"
    res = protocols.fit("svm_svhn_trained_1000", ftr, fte, d, CFG, out, COMMON)

    fits = [e for e in events if e[0] == "fit"]
    assert len(fits) == 3 * 3 + 4  # every C on every selection draw, then the final draws
    assert all(e[2] == [8] * 5 for e in fits)  # exactly labels_per_class of every class, every draw
    test_loads = [i for i, e in enumerate(events) if e == ("load", str(fte))]
    assert len(test_loads) == 1  # the test features are opened once ...
    assert test_loads[0] > max(i for i, e in enumerate(events) if e[0] == "fit")  # ... after every fit
    assert all(e[1] == res["C"] for e in fits[9:])

    on_disk = json.loads(out.read_text())
    assert on_disk == json.loads(json.dumps(res))
    for key in ("protocol", "dataset", "features", "feature_dim", "labels_per_class", "C", "validation_error_pct",
                "test_error_pct", "test_error_ci95_pct", "test_accuracy_pct", "draws", "stand_in", "provenance"):
        assert key in on_disk, key
    assert (on_disk["features"], on_disk["features_run"], on_disk["feature_dim"], on_disk["draws"]) \
        == ("trained", "svhn", 16, 4)
    assert on_disk["labels_per_class"] == 8 and on_disk["stand_in"] == "toy blobs standing in"
    assert sorted(on_disk["validation_error_pct"]) == sorted(["0.001", "0.01", "0.1"])
    assert on_disk["C"] in CFG["c_grid"]
    assert on_disk["test_error_pct"] < 40 and on_disk["test_error_ci95_pct"] >= 0  # chance: 80%
    assert on_disk["test_accuracy_pct"] == pytest.approx(100 - on_disk["test_error_pct"])
    assert on_disk["provenance"]["seed"] == 42 and str(ftr) in json.dumps(on_disk["provenance"]["inputs"])

    # selection does not depend on the test set at all: scramble it, the choice and validation errors stay
    rng = np.random.default_rng(9)
    io.save_npy(fte, rng.normal(0, 5, Xte.shape).astype(np.float32))
    io.write_dataset(d, "test", np.zeros((len(yte), 2, 2, 3), np.uint8), rng.permutation(yte))
    res2 = protocols.fit("svm_svhn_trained_1000", ftr, fte, d, CFG, tmp_path / "res" / "again.json", COMMON)
    assert (res2["C"], res2["validation_error_pct"]) == (res["C"], res["validation_error_pct"])
    assert res2["test_error_pct"] > 50


def test_all_labels_protocol_refits_on_all_training_data(tmp_path, monkeypatch):
    Xtr, ytr = blobs(300, 3, 12, seed=5, spread=2.0)
    Xte, yte = blobs(90, 3, 12, seed=6, spread=2.0)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, yte, Xtr, Xte, stand_in=None)
    sizes: list[int] = []
    real_fit = solvers.fit_l2svm
    monkeypatch.setattr(solvers, "fit_l2svm", lambda X, y, C, **kw: sizes.append(len(y)) or real_fit(X, y, C, **kw))
    res = protocols.fit("svm_cifar10_trained_all", ftr, fte, d, CFG, tmp_path / "all.json", COMMON)
    assert sizes == [300 - 60] * 3 + [300]  # pool for each C, then all training images incl. validation
    assert (res["draws"], res["labels_per_class"], res["test_error_ci95_pct"]) == (1, None, None)
    assert (res["features"], res["features_run"]) == ("trained", "imagenet32") and res["stand_in"] is None
    # the chosen C's model, refitted by hand on everything, gives the reported test error
    direct = LinearSVC(C=res["C"], max_iter=1000, random_state=42).fit(Xtr, ytr)
    assert res["test_error_pct"] == pytest.approx(100 * np.mean(direct.predict(Xte) != yte))


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path):
    ytr = np.array([0] * 30 + [1] * 30 + [2] * 5)  # class 2 has 5 images in all
    Xtr, _ = blobs(len(ytr), 3, 6, seed=7)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, np.arange(9) % 3, Xtr, Xtr[:9])
    out = tmp_path / "out.json"
    cfg = dict(CFG, validation_size=10, cifar10_labels_per_class=8)
    with pytest.raises(ValueError, match=r"cannot draw 8 labels per class .*class 2 \(c2\) has [0-5] images "
                       r".*lower svm.cifar10_labels_per_class"):
        protocols.fit("svm_cifar10_trained_400pc", ftr, fte, d, cfg, out, COMMON)
    with pytest.raises(ValueError, match="unknown SVM protocol 'svm_mnist'; allowed: svm_cifar10_trained_all"):
        protocols.fit("svm_mnist", ftr, fte, d, cfg, out, COMMON)
    with pytest.raises(ValueError, match="needs dataset 'svhn' but .* holds 'cifar10'"):
        protocols.fit("svm_svhn_trained_1000", ftr, fte, d, cfg, out, COMMON)
    io.save_npy(fte, np.zeros((9, 7), np.float32))
    with pytest.raises(ValueError, match="different models"):
        protocols.fit("svm_cifar10_trained_all", ftr, fte, d, cfg, out, COMMON)
    io.save_npy(ftr, Xtr[:-1])
    with pytest.raises(ValueError, match="has 64 rows but its dataset split has 65"):
        protocols.fit("svm_cifar10_trained_all", ftr, fte, d, cfg, out, COMMON)
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


def test_feature_length_c_grid_and_solver_are_checked_before_fitting(tmp_path, monkeypatch):
    """Feature files of another length than the configured D gives, and unusable svm.c_grid / svm.solver /
    svm.newton values, fail with a message naming the file or setting, before any fit and without writing anything;
    the solver (with svm.newton, for torch) reaches every fit and the result JSON."""
    runs = config.expand_runs(yaml.safe_load((REPO / "config.yaml").read_text()))["runs"]  # run_defaults merged
    run = dict(runs["imagenet32"], ndf=4, ngf=4)
    assert protocols.model_feature_dim(run, 4) == (4 + 4 + 8 + 8 + 16 + 16) * 16  # 896; 28,672 at ndf=128
    Xtr, ytr = blobs(120, 3, 6, seed=8)
    Xte, yte = blobs(30, 3, 6, seed=9)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, yte, Xtr, Xte)
    out = tmp_path / "out.json"
    real_fit = solvers.fit_l2svm
    monkeypatch.setattr(solvers, "fit_l2svm", lambda *a, **k: pytest.fail("fitted despite bad input"))
    with pytest.raises(ValueError, match=r"feature file .*train.npy has 6 dimensions but the 'imagenet32' "
                       r"discriminator \(runs.imagenet32: .*ndf 4\) with features.pool = 4 gives 896"):
        protocols.fit("svm_cifar10_trained_all", ftr, fte, d, CFG, out, COMMON, feature_model=run, feature_pool=4)
    for grid in ([], [1e-3, 0.0], [1e-3, 1e-2, 1e-3], [float("inf")]):
        with pytest.raises(ValueError, match=r"svm.c_grid = .*: needs one or more distinct positive finite"):
            protocols.fit("svm_cifar10_trained_all", ftr, fte, d, dict(CFG, c_grid=grid), out, COMMON)
    with pytest.raises(ValueError, match="svm.solver must be one of auto, dual_cd, torch, liblinear, got 'sgd'"):
        protocols.fit("svm_cifar10_trained_all", ftr, fte, d, dict(CFG, solver="sgd"), out, COMMON)
    with pytest.raises(ValueError, match="svm.newton must be one of subspace, line_search, trust_region, got 'bfgs'"):
        protocols.fit("svm_cifar10_trained_all", ftr, fte, d, dict(CFG, solver="dual_cd", newton="bfgs"), out, COMMON)
    assert not out.exists()
    # features of the right length pass, with either solver
    monkeypatch.setattr(solvers, "fit_l2svm", real_fit)
    rng = np.random.default_rng(0)
    io.save_npy(ftr, np.c_[Xtr, rng.normal(0, 1, (len(Xtr), 890))].astype(np.float32))
    io.save_npy(fte, np.c_[Xte, rng.normal(0, 1, (len(Xte), 890))].astype(np.float32))
    for solver in solvers.SOLVERS:
        res = protocols.fit("svm_cifar10_trained_all", ftr, fte, d, dict(CFG, solver=solver), out, COMMON,
                            feature_model=run, feature_pool=4)
        used = solvers.resolve_solver(solver, len(Xtr))  # auto: dual_cd for this small set
        assert res["feature_dim"] == 896 and res["solver"] == solvers.solver_name(used)
        assert used == ("dual_cd" if solver == "auto" else solver)
        assert res["newton"] == ("subspace" if used == "torch" else None)  # the default Newton method
    methods: list[str] = []
    monkeypatch.setattr(solvers, "fit_l2svm", lambda *a, **k: methods.append(k["newton"]) or real_fit(*a, **k))
    for newton in solvers.NEWTON_METHODS:
        res = protocols.fit("svm_cifar10_trained_all", ftr, fte, d, dict(CFG, solver="torch", newton=newton), out,
                            COMMON)
        assert methods == [newton] * 4 and res["newton"] == newton  # 3 values of C, then the final fit
        assert res["solver"] == solvers.solver_name("torch", newton) and solvers.NEWTON_NAMES[newton] in res["solver"]
        methods.clear()


def test_protocol_registry_gives_the_paper_protocols_and_the_workflow_its_inputs():
    """The registry (the workflow's one source: common.smk derives the svm_fit, features_extract and table inputs
    from it) holds the paper's protocols: Table 2 on SVHN with the SVHN run's D, Table 1 on CIFAR-10 with the
    ImageNet run's D (Sec. 5.1), each D as trained here or as released, and Table 1's baselines; every labels key is
    an svm setting."""
    expected = {  # protocol: dataset, D run (None: no D), feature folder, labels key
        "svm_cifar10_trained_all": ("cifar10", "imagenet32", "cifar10_trained", None),
        "svm_cifar10_trained_400pc": ("cifar10", "imagenet32", "cifar10_trained", "cifar10_labels_per_class"),
        "svm_cifar10_released_all": ("cifar10", "imagenet32", "cifar10_released", None),
        "svm_cifar10_released_400pc": ("cifar10", "imagenet32", "cifar10_released", "cifar10_labels_per_class"),
        "svm_cifar10_kmeans_all": ("cifar10", None, "cifar10_kmeans", None),
        "svm_cifar10_kmeans_400pc": ("cifar10", None, "cifar10_kmeans", "cifar10_labels_per_class"),
        "svm_cifar10_pixels_all": ("cifar10", None, "cifar10_pixels", None),
        "svm_cifar10_pixels_400pc": ("cifar10", None, "cifar10_pixels", "cifar10_labels_per_class"),
        "svm_svhn_trained_1000": ("svhn", "svhn", "svhn_trained", "svhn_labels_per_class"),
        "svm_svhn_released_1000": ("svhn", "svhn", "svhn_released", "svhn_labels_per_class"),
    }
    assert protocols.PROTOCOLS is registry.PROTOCOLS  # one registry, re-exported where fit runs it
    assert {n: (p.dataset, p.features_run, p.features_dir, p.labels_key) for n, p in registry.PROTOCOLS.items()} \
        == expected
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    assert all(p.labels_key is None or p.labels_key in cfg["svm"] for p in registry.PROTOCOLS.values())
    assert set(registry.FEATURE_RUNS.values()) <= set(cfg["runs"]) & set(cfg["weights"])  # trained and released
    # the workflow imports the registry whenever it parses: it must not pull in torch or scikit-learn
    code = "import sys, dcgan_repro.svm.registry; print(sorted({'torch', 'sklearn', 'numpy'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def _cfg(cifar10="trained", svhn="trained", train_images=0, lpc=400):
    return {"features": {"discriminator": {"cifar10": cifar10, "svhn": svhn}},
            "data": {"cifar10": {"train_images": train_images}, "svhn": {}},
            "svm": {"cifar10_labels_per_class": lpc, "svhn_labels_per_class": 100}}


def test_config_picks_the_discriminators_and_a_small_subset_runs_its_one_draw_only():
    """features.discriminator adds or swaps the released D's protocols; a CIFAR-10 subset of at most 10 x 400 images
    has one possible 400-per-class draw (all of it), so only the all-labels protocols run there."""
    base = {"svm_cifar10_kmeans_all", "svm_cifar10_kmeans_400pc", "svm_cifar10_pixels_all",
            "svm_cifar10_pixels_400pc"}
    assert set(registry.active_protocols(_cfg())) == base | {
        "svm_cifar10_trained_all", "svm_cifar10_trained_400pc", "svm_svhn_trained_1000"}
    assert set(registry.active_protocols(_cfg("released", "both"))) == base | {
        "svm_cifar10_released_all", "svm_cifar10_released_400pc", "svm_svhn_trained_1000", "svm_svhn_released_1000"}
    small = set(registry.active_protocols(_cfg("both", train_images=4000)))
    assert small == {"svm_cifar10_trained_all", "svm_cifar10_released_all", "svm_cifar10_kmeans_all",
                     "svm_cifar10_pixels_all", "svm_svhn_trained_1000"}
    assert "svm_cifar10_trained_400pc" in registry.active_protocols(_cfg(train_images=4001))


@pytest.mark.parametrize("change, message", [
    ({"name": "svm_other"}, "registered under another name"),
    ({"features": "sift"}, r"unknown features 'sift'"),
    ({"dataset": "mnist"}, r"no training run describes dataset 'mnist'"),
])
def test_registry_the_workflow_cannot_wire_is_refused(change, message):
    """A protocol the workflow has no rule for fails at import, with the reason."""
    broken = dict(registry.PROTOCOLS)
    broken["svm_cifar10_trained_all"] = dataclasses.replace(registry.PROTOCOLS["svm_cifar10_trained_all"], **change)
    with pytest.raises(ValueError, match=message):
        registry.check_registry(broken)
    registry.check_registry(registry.PROTOCOLS)


def test_raw_pixels_on_real_cifar10_match_linearsvc(shared_data, tmp_path):
    """Real CIFAR-10 images (../shared/data subset), 8x8-averaged pixels: our protocol's test error equals a
    LinearSVC fitted directly with the chosen C on all 4,000 training images, within 0.3 points."""
    npz = np.load(shared_data / "cifar10" / "cifar10_subset.npz")

    def feats(x: np.ndarray) -> np.ndarray:
        return x.reshape(len(x), 8, 4, 8, 4, 3).mean((2, 4)).reshape(len(x), -1).astype(np.float32) / 255  # (N, 192)

    xtr, xte = feats(npz["x_train"]), feats(npz["x_test"])
    ytr, yte = npz["y_train"].astype(np.int64), npz["y_test"].astype(np.int64)
    d, ftr, fte = _dataset(tmp_path, "cifar10", ytr, yte, xtr, xte)
    cfg = dict(CFG, c_grid=[1e-3, 1e-2], validation_size=1000)
    res = protocols.fit("svm_cifar10_trained_all", ftr, fte, d, cfg, tmp_path / "r.json", COMMON)
    direct = LinearSVC(C=res["C"]).fit(xtr, ytr)
    direct_err = 100 * np.mean(direct.predict(xte) != yte)
    assert abs(res["test_error_pct"] - direct_err) <= 0.3
    assert res["test_error_pct"] < 80  # clearly better than chance (90%)
