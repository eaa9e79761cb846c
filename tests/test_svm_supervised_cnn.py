"""Table 2's supervised CNN baseline: the random search's hyperparameters and training on the SVHN D architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import SVM_COMMON as COMMON, SVM_CFG as CFG
from dcgan_repro import config, io
from dcgan_repro.svm import supervised_cnn

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def test_sample_hparams_in_range_and_seeded():
    cfg = {"lr_range": [1e-4, 1e-2], "dropout_range": [0.0, 0.7], "weight_decay_range": [1e-6, 1e-2]}
    a = [supervised_cnn.sample_hparams(np.random.default_rng(0), cfg) for _ in range(2)]
    assert a[0] == a[1]
    hs = [supervised_cnn.sample_hparams(r, cfg) for r in [np.random.default_rng(1)] for _ in range(200)]
    lrs = np.array([h["lr"] for h in hs])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-2 and (np.log10(lrs) < -3).mean() == pytest.approx(0.5, abs=0.1)
    assert all(0 <= h["dropout"] <= 0.7 and 1e-6 <= h["weight_decay"] <= 1e-2 for h in hs)
    with pytest.raises(ValueError, match="supervised_cnn.lr_range"):
        supervised_cnn.sample_hparams(np.random.default_rng(0), dict(cfg, lr_range=[1e-2, 1e-4]))


def test_supervised_cnn_on_svhn_architecture(tmp_path):
    from dcgan_repro import models

    runs = config.expand_runs(yaml.safe_load((REPO / "config.yaml").read_text()))["runs"]  # run_defaults merged
    run = dict(runs["svhn"], ndf=8, ngf=8)
    _, netD = models.build_models(run)
    net = supervised_cnn.SupervisedCNN(netD, 10, dropout=0.5)
    assert net.head.in_features == 8 * 4 * 4 * 4  # (4*ndf) x 4 x 4, the 1-logit head's input
    assert net(torch.zeros(3, 3, 32, 32)).shape == (3, 10)

    # two learnable classes of 32x32 colour images: bright vs dark, with noise
    rng = np.random.default_rng(0)
    y = np.arange(260) % 2
    x = np.clip(rng.normal(80 + 90 * y[:, None, None, None], 40, (260, 32, 32, 3)), 0, 255).astype(np.uint8)
    d = tmp_path / "svhn"
    io.write_dataset(d, "train", x[:200], y[:200])
    io.write_dataset(d, "test", x[200:], y[200:])
    io.write_json(d / "meta.json", {"name": "svhn", "n_classes": 2, "class_names": None, "stand_in": "toy"})
    cnn = {"trials": 2, "epochs": 3, "seed": 0, "batch_size": 10, "lr_range": [1e-3, 3e-3],
           "dropout_range": [0.0, 0.2], "weight_decay_range": [1e-6, 1e-5]}
    cfg = dict(CFG, validation_size=60, svhn_labels_per_class=15)
    out = tmp_path / "cnn.json"
    res = supervised_cnn.train(d, out, cnn, cfg, run, COMMON)
    assert json.loads(out.read_text())["protocol"] == "supervised_cnn_svhn_1000"
    assert len(res["trials"]) == 2 and res["stand_in"] == "toy"
    assert res["validation_error_pct"] == min(t["validation_error_pct"] for t in res["trials"])
    assert res["validation_error_pct"] < 25 and res["test_error_pct"] < 25  # chance: 50%
    res2 = supervised_cnn.train(d, tmp_path / "cnn2.json", cnn, cfg, run, COMMON)
    assert res2["trials"] == res["trials"]  # seeded: the same search again
