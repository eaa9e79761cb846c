"""Where Table 1 and 2 features come from: the authors' released D (verified, complete or explicitly partial), a
trained run's snapshot, raw pixels; through the rule scripts features_extract -> svm_fit -> tables."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from snakemake.iocontainers import Namedlist

from conftest import SVM_CFG, SVM_COMMON, fake_snakemake, run_script, write_json_file
from dcgan_repro import features, io, models, released, tables, theano_weights
from dcgan_repro.svm import registry

FEATURES_CFG = {"pool": 4, "bn_stats": "fixed", "bn_batches": 0, "batch_size": 64, "seed": 42}
# dataset, run, released model, the paper's feature length (Sec. 5.1: 28,672; Sec. 5.2: 7,168)
RELEASES = [("cifar10", "imagenet32", "imagenet32", 28672), ("svhn", "svhn", "svhn32", 7168)]


def _dataset(root, name, n_train=200, n_test=40, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "data" / name
    for split, n in (("train", n_train), ("test", n_test)):
        io.write_dataset(d, split, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10)
    io.write_json(d / "meta.json", {"name": name, "splits": {"train": n_train, "test": n_test},
                                    "image_shape": [32, 32, 3], "n_classes": 10,
                                    "class_names": [str(i) for i in range(10)], "source": "test",
                                    "stand_in": "random images standing in"})
    return d


def _random_release(root, model, monkeypatch, seed=0):
    """A complete release of random arrays in the authors' layout, as a clone (root/models/<folder>); the blob
    table is swapped for this release's ids (the real one holds the authors' files)."""
    folder = root / "clone" / "models" / released.FOLDERS[model]
    torch.manual_seed(seed)
    netG, netD = models.build_models(theano_weights.RELEASED_RUNS[model])
    files = theano_weights.write_theano_params(netD, folder / theano_weights.RELEASED_FILES[model]["D"])
    files += theano_weights.write_theano_params(netG, folder / theano_weights.RELEASED_FILES[model]["G"])
    table = {**released._table(), model: {p.name: released.git_blob_id(p) for p in map(folder.joinpath, files)}}
    monkeypatch.setattr(released, "_table", lambda: table)
    return root / "clone", netD


def _extract(tmp_path, dataset, source, split, **params):
    d = tmp_path / "data" / dataset
    out = tmp_path / "results" / "features" / f"{dataset}_{source}"
    inputs = {"data": str(d), **({"model": str(params.pop("model"))} if "model" in params else {})}
    smk = fake_snakemake("features_extract", tmp_path, input=inputs,
                         output={"features": str(out / f"{split}.npy"), "about": str(out / f"{split}.json")},
                         params={"source": source, "features": FEATURES_CFG, "run": registry.FEATURE_RUNS[dataset],
                                 "epoch": 0, "released": None, "common": SVM_COMMON, **params})
    smk.wildcards = Namedlist(fromdict={"dataset": dataset, "source": source, "split": split})
    run_script("features_extract", smk)
    return out


@pytest.mark.parametrize("dataset, run, model, dim", RELEASES)
def test_a_complete_release_gives_the_papers_feature_length_through_the_rules(tmp_path, monkeypatch, dataset, run,
                                                                                model, dim):
    """A complete release (random arrays, right shapes) pointed at as a clone: features_extract verifies it and
    writes the full-length features (28,672-d / 7,168-d) with the release in their record; svm_fit carries that
    record into its result; the table shows the row "the authors' released D" beside the paper's."""
    clone, _ = _random_release(tmp_path, model, monkeypatch)
    _dataset(tmp_path, dataset)
    rel = {"path": str(clone), "run": run, "key": f"weights.{run}", "allow_partial": False}
    for split in ("train", "test"):
        out = _extract(tmp_path, dataset, "released", split, released=rel)
    x = features.load_features(out / "train.npy")
    about = io.read_json(out / "train.json")
    assert x.shape == (200, dim) and np.isfinite(x).all()
    assert about["feature_dim"] == dim and about["epoch"] == released.EPOCHS[model]
    assert about["release"]["complete"] and about["release"]["commit"] == released.COMMIT
    assert about["release"]["convs_loaded"] == about["release"]["convs_total"] == about["layers"]

    protocol = registry.protocol_for(dataset, "released", None if dataset == "cifar10" else "svhn_labels_per_class")
    result = tmp_path / "results" / "svm" / f"{protocol}.json"
    smk = fake_snakemake("svm_fit", tmp_path, input={"train": str(out / "train.npy"), "test": str(out / "test.npy"),
                                                     "data": str(tmp_path / "data" / dataset),
                                                     "about": str(out / "train.json")},
                         output={"json": str(result)},
                         params={"protocol": protocol, "svm": SVM_CFG, "common": SVM_COMMON, "feature_model": None,
                                 "feature_pool": 4})
    run_script("svm_fit", smk)
    res = io.read_json(result)
    assert res["features"] == "released" and res["feature_dim"] == dim
    assert res["feature_source"]["release"]["verified_blobs"] == about["release"]["verified_blobs"]

    csv, md = tmp_path / "t.csv", tmp_path / "t.md"
    if dataset == "cifar10":
        tables.build_table1([result], tmp_path / "data" / dataset, csv, md, preset="test")
        metric = "Accuracy (400 per class)"  # 200 images: all of them are the one 400-per-class-sized draw
    else:
        cnn = write_json_file(tmp_path / "cnn.json", {"validation_error_pct": 30.0, "test_error_pct": 31.0})
        tables.build_table2([result], cnn, tmp_path / "data" / dataset, csv, md, preset="test")
        metric = "test error"
    df = tables.read_table(csv)
    row = df[(df["model"] == tables.RELEASED_D) & (df["metric"] == metric)].iloc[0]
    assert row["kind"] == "measured" and row["source"] == str(result)
    assert f"epoch {released.EPOCHS[model]}" in row["note"] and "ee12b2d" in row["note"]
    assert "PARTIAL" not in row["note"]


def test_a_changed_or_missing_file_stops_the_job_and_partial_needs_asking(tmp_path, monkeypatch):
    """One changed array: the job fails naming the file, nothing is written. A missing one: refused unless the
    run is listed in weights.allow_partial; then D's first complete convolutions give shorter features."""
    clone, netD = _random_release(tmp_path, "svhn32", monkeypatch)
    _dataset(tmp_path, "svhn")
    folder = clone / "models" / released.FOLDERS["svhn32"]
    rel = {"path": str(clone), "run": "svhn", "key": "weights.svhn", "allow_partial": False}
    kernel = folder / "200_discrim_params.jl_05.npy"  # D's third conv kernel (256 x 128 x 5 x 5)
    original = kernel.read_bytes()
    kernel.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(released.ReleaseError, match=r"200_discrim_params\.jl_05\.npy has git blob [0-9a-f]{40}, "
                                                    r"expected [0-9a-f]{40}"):
        _extract(tmp_path, "svhn", "released", "train", released=rel)
    assert not (tmp_path / "results" / "features" / "svhn_released" / "train.npy").exists()
    kernel.unlink()
    with pytest.raises(released.ReleaseError, match=r"lacks 1 of the 9 files.*add svhn to weights\.allow_partial"):
        _extract(tmp_path, "svhn", "released", "train", released=rel)
    out = _extract(tmp_path, "svhn", "released", "train", released=dict(rel, allow_partial=True))
    about = io.read_json(out / "train.json")
    assert (about["release"]["convs_loaded"], about["release"]["convs_total"]) == (2, 3)
    assert about["feature_dim"] == (64 + 128) * 16 == features.load_features(out / "train.npy").shape[1]


def test_the_shared_partial_imagenet_release_gives_conv1_to_4(shared_data, tmp_path):
    """The copy of the authors' ImageNet release here lacks D's two 512-channel kernels: with allow_partial the
    features are its first four convolutions', (128+128+256+256) x 16 = 12,288-d, verified against the real ids."""
    _dataset(tmp_path, "cifar10", n_train=40, n_test=8)
    rel = {"path": str(shared_data / "weights" / "dcgan_code_imagenet_partial"), "run": "imagenet32",
           "key": "weights.imagenet32", "allow_partial": True}
    out = _extract(tmp_path, "cifar10", "released", "test", released=rel)
    about = io.read_json(out / "test.json")
    assert about["feature_dim"] == 12288 and about["release"]["missing"] == [
        "30_discrim_params.jl_11.npy", "30_discrim_params.jl_14.npy"]


def test_pixels_and_a_trained_runs_snapshot(tmp_path):
    """Raw pixels are D's input scaling, flattened; a trained D's features come from the snapshot asked for (the
    released ImageNet D is epoch 30 of 60), and an epoch the run did not keep is refused naming the setting."""
    d = _dataset(tmp_path, "cifar10", n_train=20, n_test=4)
    out = _extract(tmp_path, "cifar10", "pixels", "train")
    x = features.load_features(out / "train.npy")
    images = io.read_dataset(d, "train")[0]
    np.testing.assert_array_equal(x, models.to_model_input(np.asarray(images), "tanh").flatten(1).numpy())
    assert io.read_json(out / "train.json")["feature_dim"] == 3072

    run = {**theano_weights.RELEASED_RUNS["imagenet32"], "ngf": 8, "ndf": 8, "dataset": "imagenet"}
    root = tmp_path / "results" / "models" / "imagenet32"
    kw = dict(name="imagenet32", run=run, data_meta={"name": "imagenet", "stand_in": None}, provenance={})
    nets = []
    for epoch, snaps in ((1, {}), (2, {1: str(root / "epoch001.pt")})):
        torch.manual_seed(epoch)
        g, dnet = models.build_models(run)
        nets.append(dnet)
        models.save_checkpoint(root / ("model.pt" if epoch == 2 else "epoch001.pt"), g, dnet, epoch=epoch,
                               step=epoch, snapshots=snaps, **kw)
    last = features.load_features(_extract(tmp_path, "cifar10", "trained", "train", model=root / "model.pt")
                                  / "train.npy").copy()
    out = _extract(tmp_path, "cifar10", "trained", "train", model=root / "model.pt", epoch=1)
    about = io.read_json(out / "train.json")
    assert about["epoch"] == 1 and about["model"].endswith("epoch001.pt") and about["data"] == "imagenet"
    assert not np.array_equal(features.load_features(out / "train.npy"), last)
    with pytest.raises(ValueError, match=r"'features\.trained_epoch': run imagenet32 kept no snapshot after epoch 5 "
                                         r"\(kept: \[1\], last 2\)"):
        _extract(tmp_path, "cifar10", "trained", "train", model=root / "model.pt", epoch=5)
