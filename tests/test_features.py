"""Sec. 5.1 discriminator features: pooling order, fixed BN statistics, streaming writes, the paper's dimensions."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from conftest import assert_close_f32
from dcgan_repro import config, features, io

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


class StandInD(nn.Module):
    """A tiny D with the contract's interface: conv (no BN) -> conv+BN -> conv+BN, LeakyReLU 0.2, 16x16 input."""

    image_shape = (3, 16, 16)
    output_range = "tanh"
    n_classes = 0

    def __init__(self, track_running_stats: bool = True):
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, 1, 1, bias=False)  # (N, 4, 16, 16)
        self.c2 = nn.Conv2d(4, 6, 3, 2, 1, bias=False)  # (N, 6, 8, 8)
        self.b2 = nn.BatchNorm2d(6, track_running_stats=track_running_stats)
        self.c3 = nn.Conv2d(6, 8, 3, 2, 1, bias=False)  # (N, 8, 4, 4)
        self.b3 = nn.BatchNorm2d(8, track_running_stats=track_running_stats)
        self.head = nn.Linear(8 * 4 * 4, 1)
        for m in (self.b2, self.b3):
            nn.init.normal_(m.weight, 1.0, 0.3)
            nn.init.normal_(m.bias, 0.0, 0.3)

    def features(self, x, y=None):
        h1 = F.leaky_relu(self.c1(x), 0.2)
        h2 = F.leaky_relu(self.b2(self.c2(h1)), 0.2)
        h3 = F.leaky_relu(self.b3(self.c3(h2)), 0.2)
        return [h1, h2, h3]

    def forward(self, x, y=None):
        return self.head(self.features(x)[-1].flatten(1)).squeeze(1)


# float32 roundings along the deepest feature (Higham Thm 3.5 layer by layer): the input x / 127.5 - 1 (2), the convs'
# inner lengths 3*3*3, 4*3*3, 6*3*3, each eval BN (scale, shift, multiply-add: 5) and LeakyReLU (1)
K_F32 = 2 + 27 + 1 + 36 + 5 + 1 + 54 + 5 + 1


def _f32_feature_scale(net: StandInD, x: np.ndarray) -> np.ndarray:
    """Per-feature scale of the float32 bound of eval-mode features: the net run in float64 on |x / 127.5| + 1 with
    |W|, eval BN as |scale| z + |shift| + |mean scale| and no activation (LeakyReLU is 1-Lipschitz, |f(h)| <= |h|),
    max-pooled like the features (max pooling is 1-Lipschitz). A layer's error is <= gamma_k |W| |h| + |W| (error of
    h), so a feature's error is <= gamma_{K_F32} times this (N, F)."""
    a = torch.as_tensor(x).permute(0, 3, 1, 2).double() / 127.5 + 1
    maps = []
    with torch.no_grad():
        for conv, bn in ((net.c1, None), (net.c2, net.b2), (net.c3, net.b3)):
            a = F.conv2d(a, conv.weight.double().abs(), stride=conv.stride, padding=conv.padding)
            if bn is not None:
                s = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                shift = bn.bias.double().abs() + (bn.running_mean.double() * s).abs()
                a = a * s.abs()[:, None, None] + shift[:, None, None]
            maps.append(F.adaptive_max_pool2d(a, 4).flatten(1))
    return torch.cat(maps, 1).numpy()


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)


def _to_input(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # tanh range, (N, C, H, W)


def test_pooling_is_adaptive_max_in_chw_order():
    class Fixed(nn.Module):
        image_shape = (1, 8, 8)

        def __init__(self):
            super().__init__()
            self.maps = [torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(1, 2, 8, 8).flip(-1),
                         -torch.arange(3 * 4 * 4, dtype=torch.float32).reshape(1, 3, 4, 4)]

        def features(self, x, y=None):
            return [m.expand(len(x), -1, -1, -1) for m in self.maps]

    net = Fixed()
    f = features.pooled_features(net, torch.zeros(2, 1, 8, 8), pool=4)
    a, b = net.maps
    # by hand: 2x2 blocks of the 8x8 map, each block's max, then channel-major, row, column; the 4x4 map as is
    expect_a = [a[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max() for c in range(2) for i in range(4) for j in range(4)]
    expect_b = [b[0, c, i, j] for c in range(3) for i in range(4) for j in range(4)]
    assert f.shape == (2, (2 + 3) * 16)
    assert torch.equal(f[1], torch.stack(expect_a + expect_b))
    assert features.feature_dim(net, pool=4) == 80


def _manual_fixed_stats(net: StandInD, images: np.ndarray, batch: int, seed: int):
    """Independent recomputation of the code's infer_bnorm_stats: shuffled minibatches, batch-statistics BN."""
    order = np.random.default_rng(seed).permutation(len(images))
    sums = {"b2": [0, 0], "b3": [0, 0]}
    n = 0
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = _to_input(images[np.sort(order[s:s + batch])]).double()
            h = F.leaky_relu(F.conv2d(x, net.c1.weight.double(), padding=1), 0.2)
            for conv, bn in (("c2", "b2"), ("c3", "b3")):
                z = F.conv2d(h, getattr(net, conv).weight.double(), stride=2, padding=1)
                mu = z.mean((0, 2, 3))
                var = ((z - mu[None, :, None, None]) ** 2).mean((0, 2, 3))  # biased
                sums[bn][0] = sums[bn][0] + mu
                sums[bn][1] = sums[bn][1] + var
                g, b = getattr(net, bn).weight.double(), getattr(net, bn).bias.double()
                zn = (z - mu[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + getattr(net, bn).eps)
                h = F.leaky_relu(zn * g[None, :, None, None] + b[None, :, None, None], 0.2)
            n += 1
    return {k: (v[0] / n, v[1] / n) for k, v in sums.items()}


@pytest.mark.parametrize("track", [True, False])
def test_fixed_bn_stats_equal_manual_computation(track):
    torch.manual_seed(0)
    net = StandInD(track_running_stats=track)
    before = copy.deepcopy(net.state_dict())
    images = _images(300)  # 3 minibatches of 128, the last one 44 images (counted like the others, as the code)
    stats = features.fixed_bn_statistics(net, images, "tanh", seed=7)
    manual = _manual_fixed_stats(net, images, 128, seed=7)
    assert set(stats) == {"b2", "b3"}
    for k in stats:
        torch.testing.assert_close(stats[k][0].double(), manual[k][0], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(stats[k][1].double(), manual[k][1], rtol=1e-4, atol=1e-5)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's net is untouched
    # a different shuffle gives different minibatches, hence a different average variance
    other = features.fixed_bn_statistics(net, images, "tanh", seed=8)
    assert not torch.allclose(other["b3"][1], stats["b3"][1])
    # bn_batches = 1: only the first shuffled minibatch
    one = features.fixed_bn_statistics(net, images, "tanh", seed=7, n_batches=1)
    manual1 = _manual_fixed_stats(net, images[np.sort(np.random.default_rng(7).permutation(300)[:128])], 128, 0)
    torch.testing.assert_close(one["b2"][1].double(), manual1["b2"][1], rtol=1e-4, atol=1e-5)


def test_extract_features_fixed_bn_streams_to_file(tmp_path):
    torch.manual_seed(1)
    net = StandInD(track_running_stats=False)
    train, test = _images(260, seed=1), _images(70, seed=2)
    out = tmp_path / "feat" / "test.npy"
    got = features.extract_features(net, test, "tanh", pool=4, bn_stats="fixed", bn_source_images=train,
                                    batch_size=32, bn_seed=3, out_path=out)
    assert isinstance(got, np.memmap) and got.dtype == np.float32 and got.shape == (70, (4 + 6 + 8) * 16)
    # reference: the net with the fixed statistics installed, run in eval mode on the whole set at once
    ref = copy.deepcopy(net)
    features.apply_bn_statistics(ref, features.fixed_bn_statistics(net, train, "tanh", seed=3))
    with torch.no_grad():
        want = features.pooled_features(ref.eval(), _to_input(test), 4).numpy()
    scale = _f32_feature_scale(ref, test)  # float32 evaluations in other batches: the sum of two bounds
    assert_close_f32(np.asarray(got), want, k=K_F32, scale=scale, msg="batches of 32")
    # batch composition does not change features (fixed statistics, eval mode)
    mem = features.extract_features(net, test, "tanh", bn_source_images=train, batch_size=7, bn_seed=3)
    assert_close_f32(mem, want, k=K_F32, scale=scale, msg="batches of 7")
    assert sorted(p.name for p in out.parent.iterdir()) == ["test.npy"]


def test_extract_features_running_stats_and_failures(tmp_path):
    torch.manual_seed(2)
    net = StandInD()
    net.b2.running_mean.uniform_(-0.5, 0.5)
    net.b3.running_var.uniform_(0.5, 2.0)
    x = _images(20, seed=4)
    got = features.extract_features(net, x, "tanh", bn_stats="running")
    with torch.no_grad():
        want = features.pooled_features(copy.deepcopy(net).eval(), _to_input(x), 4).numpy()
    assert_close_f32(got, want, k=K_F32, scale=_f32_feature_scale(net, x))  # two float32 evaluations, as above

    with pytest.raises(ValueError, match="bn_source_images"):
        features.extract_features(net, x, "tanh", bn_stats="fixed")
    with pytest.raises(ValueError, match="keep no running statistics"):
        features.extract_features(StandInD(track_running_stats=False), x, "tanh", bn_stats="running")
    with pytest.raises(ValueError, match="bn_stats must be one of fixed, running"):
        features.extract_features(net, x, "tanh", bn_stats="batch")
    with pytest.raises(ValueError, match=r"\(32, 32, 3\).*\(16, 16, 3\)"):
        features.extract_features(net, np.zeros((2, 32, 32, 3), np.uint8), "tanh", bn_stats="running")
    with pytest.raises(ValueError, match="bn_batches = 9 asks for more minibatches"):
        features.extract_features(net, x, "tanh", bn_source_images=x, bn_batches=9)

    class Breaks(StandInD):  # fails on the third minibatch: nothing may be left behind
        calls = 0

        def features(self, x, y=None):
            Breaks.calls += 1
            if Breaks.calls == 4:  # 1 call sizes the output, then minibatches
                raise RuntimeError("boom")
            return super().features(x, y)

    out = tmp_path / "f.npy"
    with pytest.raises(RuntimeError, match="boom"):
        features.extract_features(Breaks(), x, "tanh", bn_stats="running", batch_size=5, out_path=out)
    assert list(tmp_path.iterdir()) == []


def test_load_features_refuses_mismatch(tmp_path):
    p = tmp_path / "f.npy"
    io.save_npy(p, np.zeros((5, 32), np.float32))
    assert features.load_features(p, expected_dim=32, n_rows=5).shape == (5, 32)
    with pytest.raises(ValueError, match="has 32 dimensions but the model gives 28672"):
        features.load_features(p, expected_dim=28672)
    with pytest.raises(ValueError, match="has 5 rows but its dataset split has 6"):
        features.load_features(p, n_rows=6)
    io.save_npy(p, np.zeros((5, 32), np.float64))
    with pytest.raises(ValueError, match="expected float32"):
        features.load_features(p)


@pytest.mark.parametrize("run, ndf, dim", [("imagenet32", 128, 28672), ("svhn", 64, 7168)])
def test_paper_feature_dimensions_with_real_models(run, ndf, dim, tmp_path):
    """docs/REFERENCE.md Sec. 4: (128+128+256+256+512+512) x 16 = 28,672 and (64+128+256) x 16 = 7,168."""
    from dcgan_repro import models

    cfg = config.expand_runs(yaml.safe_load((REPO / "config.yaml").read_text()))["runs"][run]  # run_defaults merged
    assert cfg["ndf"] == ndf
    torch.manual_seed(0)
    _, netD = models.build_models(cfg)
    assert features.feature_dim(netD, pool=4) == dim
    x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    f = features.extract_features(netD, x, netD.output_range, bn_source_images=x, out_path=tmp_path / "f.npy")
    assert f.shape == (3, dim) and np.isfinite(f).all()
    assert features.load_features(tmp_path / "f.npy", expected_dim=features.feature_dim(netD), n_rows=3).shape[1] == dim
