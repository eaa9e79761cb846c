"""dcgan_repro.models: architectures against docs/REFERENCE.md Sec. 3 (shapes, parameter counts computed by hand,
feature sizes), the authors' init, batch-statistics sampling, conditioning, pixel ranges and checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dcgan_repro import models as M

torch.set_num_threads(1)


def run_cfg(model: str, recipe: str = "paper", nz: int = 100, ngf: int = 64, ndf: int = 64) -> dict:
    return {"model": model, "recipe": recipe, "nz": nz, "ngf": ngf, "ndf": ndf}


def build(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return M.build_models(run_cfg(**kw))


def layer_shapes(net: nn.Module, x: torch.Tensor, types, y=None) -> list[tuple]:
    """Output shapes (without N) of every module of the given types, in forward order."""
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in net.modules() if isinstance(m, types)]
    with torch.no_grad():
        net(x, y)
    for h in hooks:
        h.remove()
    return shapes


CONVS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


# --- architectures ---------------------------------------------------------------------------------------


def test_dcgan64_paper_shapes_and_parameter_counts_at_128():
    netG, netD = build(model="dcgan64", ngf=128, ndf=128)
    z = M.sample_z(2, 100, "uniform")
    # REFERENCE Sec. 3: Linear 100->16384 -> 1024x4x4 -> 512x8x8 -> 256x16x16 -> 128x32x32 -> 3x64x64
    assert layer_shapes(netG, z, CONVS) == [(16384,), (512, 8, 8), (256, 16, 16), (128, 32, 32), (3, 64, 64)]
    assert netG.project.in_features == 100 and netG.project_bn.num_features == 16384   # BN1d over all units
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    # D: 128@32 -> 256@16 -> 512@8 -> 1024@4 -> flatten 16384 -> Linear -> 1
    assert layer_shapes(netD, x, CONVS) == [(128, 32, 32), (256, 16, 16), (512, 8, 8), (1024, 4, 4), (1,)]
    assert netD.head.in_features == 16384
    assert not isinstance(netD.convs[0][1], nn.BatchNorm2d)                            # no BN on D's input
    # parameter counts by hand: 5x5 kernels, no biases, BN gain+bias per channel (G's BN1d per unit)
    g = (100 * 16384 + 2 * 16384 + 1024 * 512 * 25 + 2 * 512 + 512 * 256 * 25 + 2 * 256
         + 256 * 128 * 25 + 2 * 128 + 128 * 3 * 25)
    d = (3 * 128 * 25 + 128 * 256 * 25 + 2 * 256 + 256 * 512 * 25 + 2 * 512 + 512 * 1024 * 25 + 2 * 1024
         + 16384)
    assert (M.n_params(netG), M.n_params(netD)) == (g, d) == (18_885_760, 17_232_768)
    assert netG(z).min() >= -1 and netG(z).max() <= 1 and netD(x).shape == (2,)


def test_dcgan64_pytorch_examples_matches_the_reference_implementation():
    netG, netD = build(model="dcgan64", recipe="pytorch_examples", ngf=64, ndf=64)
    kernels = {m.kernel_size for m in netG.modules() if isinstance(m, nn.ConvTranspose2d)}
    assert kernels == {(4, 4)}
    z = M.sample_z(2, 100, "normal")
    assert layer_shapes(netG, z, nn.ConvTranspose2d) == [(512, 4, 4), (256, 8, 8), (128, 16, 16),
                                                         (64, 32, 32), (3, 64, 64)]
    # pytorch/examples dcgan/main.py prints these parameter totals for ngf = ndf = 64, nz = 100
    assert (M.n_params(netG), M.n_params(netD)) == (3_576_704, 2_765_568)
    assert [f.shape[1] for f in netD.features(netG(z))] == [64, 128, 256, 512]
    bns = [m for m in netD.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-5 for m in bns)


def test_imagenet32_widths_and_28672_features():
    netG, netD = build(model="imagenet32", nz=256, ngf=128, ndf=128)
    z = M.sample_z(2, 256, "uniform")
    assert netG.project.weight.shape == (8192, 256)                                   # Linear 256 -> 8192
    assert layer_shapes(netG, z, nn.ConvTranspose2d) == [(512, 8, 8), (256, 8, 8), (256, 16, 16),
                                                         (128, 16, 16), (128, 32, 32), (3, 32, 32)]
    assert {m.kernel_size for m in netG.modules() if isinstance(m, nn.ConvTranspose2d)} == {(3, 3)}
    feats = netD.features(netG(z))
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 32, 32), (128, 16, 16), (256, 16, 16), (256, 8, 8),
                                                   (512, 8, 8), (512, 4, 4)]
    pooled = torch.cat([nn.functional.adaptive_max_pool2d(f, 4).flatten(1) for f in feats], 1)
    assert pooled.shape == (2, 28672)                                                  # the paper's number
    assert netD.head.weight.shape == (1, 8192)
    # widths scale with ngf/128, ndf/128 for the demo
    small_g, small_d = build(model="imagenet32", nz=256, ngf=8, ndf=8)
    assert sum(f.shape[1] for f in small_d.features(small_g(z))) == 14 * 8


def test_svhn32_shapes_and_7168_features():
    netG, netD = build(model="svhn32", ngf=64, ndf=64)
    z = M.sample_z(3, 100, "normal")
    assert layer_shapes(netG, z, CONVS) == [(4096,), (128, 8, 8), (64, 16, 16), (3, 32, 32)]
    feats = netD.features(netG(z))
    assert [tuple(f.shape[1:]) for f in feats] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    assert sum(f.shape[1] * 16 for f in feats) == 7168
    assert netD.head.in_features == 4096


def test_mnist_cond_dcgan_exactly_as_the_authors_code():
    netG, netD = build(model="mnist_cond_dcgan")
    # hand count (REFERENCE Sec. 3): G 110*1024 + 1034*6272 + 138*64*25 + 74*1*25, BN without gain/bias
    assert M.n_params(netG) == 110 * 1024 + 1034 * 6272 + 138 * 64 * 25 + 74 * 25 == 6_820_538
    # D 11*64*25 + 74*128*25 + 6282*1024 + 1034*1
    assert M.n_params(netD) == 11 * 64 * 25 + 74 * 128 * 25 + 6282 * 1024 + 1034 == 6_688_202
    assert all(not m.affine and m.eps == 1e-8 for m in netG.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))
    z, y = M.sample_z(4, 100, "uniform"), torch.tensor([0, 3, 7, 9])
    assert layer_shapes(netG, z, CONVS, y) == [(1024,), (6272,), (64, 14, 14), (1, 28, 28)]
    x = netG(z, y)
    assert x.min() >= 0 and x.max() <= 1 and netG.output_range == "sigmoid"
    assert layer_shapes(netD, x, CONVS, y) == [(64, 14, 14), (128, 7, 7), (1024,), (1,)]
    assert [tuple(f.shape[1:]) for f in netD.features(x, y)] == [(64, 14, 14), (128, 7, 7)]
    # widths scale with ngf/64 (FC 1024 too)
    g16, _ = build(model="mnist_cond_dcgan", ngf=16, ndf=16)
    assert g16.fc1.out_features == 256 and g16.fc2.out_features == 32 * 49


def test_mnist_cond_mlp_baseline():
    netG, netD = build(model="mnist_cond_mlp")
    assert M.n_params(netG) == 110 * 1200 + 1210 * 1200 + 1210 * 784
    assert M.n_params(netD) == 794 * 1200 + 1210 * 1200 + 1210
    assert not any(isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) for m in [*netG.modules(), *netD.modules()])
    # BN everywhere except D's input layer (paper Sec. 3), without gain/bias as in the MNIST code
    assert [m.num_features for m in netD.modules() if isinstance(m, nn.BatchNorm1d)] == [1200]
    assert all(not m.affine for m in [*netG.modules(), *netD.modules()] if isinstance(m, nn.BatchNorm1d))
    g16, d16 = build(model="mnist_cond_mlp", ngf=16, ndf=16)
    assert g16.fc1.out_features == 300 and d16.fc1.out_features == 300


@pytest.mark.parametrize("model", ["mnist_cond_dcgan", "mnist_cond_mlp"])
def test_conditional_nets_use_y(model):
    netG, netD = build(model=model, ngf=16, ndf=16)
    netD.eval()                                             # dropout off, so only y differs
    z = M.sample_z(8, 100, "uniform")
    y1, y2 = torch.arange(8) % 10, (torch.arange(8) + 5) % 10
    x1, x2 = netG(z, y1), netG(z, y2)
    assert (x1 - x2).abs().max() > 1e-3
    assert (netD(x1, y1) - netD(x1, y2)).abs().max() > 1e-4
    with pytest.raises(ValueError, match="class-conditional"):
        netG(z)
    with pytest.raises(ValueError, match="shape"):
        netD(x1, y1[:3])


def test_unconditional_nets_refuse_labels():
    netG, _ = build(model="svhn32", ngf=8, ndf=8)
    with pytest.raises(ValueError, match="unconditional"):
        netG(M.sample_z(2, 100, "normal"), torch.tensor([1, 2]))


def test_unknown_model_names_the_setting():
    with pytest.raises(ValueError, match=r"'model': 'dcgan128' is not allowed; allowed values: dcgan64"):
        M.build_models(run_cfg("dcgan128"))


# --- init (paper recipe vs pytorch/examples) ---------------------------------------------------------------


def test_paper_init_statistics_and_no_biases():
    netG, netD = build(model="dcgan64", ngf=32, ndf=32)
    for net in (netG, netD):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                assert m.bias is None, f"{type(m).__name__} has a bias"
                w = m.weight.detach()
                if w.numel() > 5000:
                    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 1.5e-3
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                assert m.eps == 1e-8
    gains = torch.cat([m.weight.detach() for m in [*netG.modules(), *netD.modules()]
                       if isinstance(m, nn.modules.batchnorm._BatchNorm)])
    assert abs(gains.mean().item() - 1) < 2e-3 and abs(gains.std().item() - 0.02) < 2e-3
    assert all((m.bias == 0).all() for m in netG.modules() if isinstance(m, nn.BatchNorm2d))


def test_pytorch_examples_init_keeps_default_linear_init():
    torch.manual_seed(0)
    netG, _ = M.build_models(run_cfg("svhn32", recipe="pytorch_examples", ngf=16, ndf=16))
    # PyTorch's default Linear init is U(-1/sqrt(fan_in), 1/sqrt(fan_in)): std 1/sqrt(3*100) ~ 0.058, not 0.02
    assert abs(netG.project.weight.std().item() - (1 / 300) ** 0.5) < 3e-3
    conv = next(m for m in netG.modules() if isinstance(m, nn.ConvTranspose2d))
    assert abs(conv.weight.std().item() - 0.02) < 2e-3


def test_same_seed_same_weights():
    a, _ = build(seed=3, model="svhn32", ngf=8, ndf=8)
    b, _ = build(seed=3, model="svhn32", ngf=8, ndf=8)
    c, _ = build(seed=4, model="svhn32", ngf=8, ndf=8)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.project.weight, c.project.weight)


# --- noise, pixel ranges, sampling ---------------------------------------------------------------------------


def test_z_dist_and_sample_z():
    assert M.z_dist(run_cfg("dcgan64")) == "uniform"
    assert M.z_dist(run_cfg("svhn32")) == "normal"
    assert M.z_dist(run_cfg("dcgan64", recipe="pytorch_examples")) == "normal"
    u = M.sample_z(20000, 10, "uniform", generator=torch.Generator().manual_seed(1))
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.01 and abs(u.std() - 3 ** -0.5) < 0.01
    n = M.sample_z(20000, 10, "normal", generator=torch.Generator().manual_seed(1))
    assert abs(n.std() - 1) < 0.01
    assert torch.equal(u, M.sample_z(20000, 10, "uniform", generator=torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="allowed values: uniform, normal"):
        M.sample_z(2, 10, "gaussian")


@pytest.mark.parametrize("output_range", ["tanh", "sigmoid"])
def test_pixel_range_round_trip_is_exact(output_range):
    x = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    t = M.to_model_input(x, output_range)
    assert t.shape == (1, 3, 16, 16) and t.dtype == torch.float32
    lo, hi = (-1.0, 1.0) if output_range == "tanh" else (0.0, 1.0)
    assert t.min().item() == lo and t.max().item() == hi
    np.testing.assert_array_equal(M.to_uint8(t, output_range), x)
    with pytest.raises(ValueError, match="uint8"):
        M.to_model_input(x.astype(np.float32), output_range)


def test_generate_uses_batch_statistics_and_is_seeded():
    netG, _ = build(model="svhn32", ngf=8, ndf=8)
    a = M.generate(netG.train(), 10, z_dist="normal", seed=5, batch_size=4)
    b = M.generate(netG.eval(), 10, z_dist="normal", seed=5, batch_size=4)
    assert a.shape == (10, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)                       # same in train and eval: batch statistics
    assert not np.array_equal(a, M.generate(netG, 10, z_dist="normal", seed=6, batch_size=4))
    # chunks are near-equal (4, 3, 3), so the authors' batch-statistics sampling never sees a batch of 1
    assert M._chunk_sizes(10, 4) == [4, 3, 3] and min(M._chunk_sizes(513, 512)) >= 2
    # streaming gives the same samples
    np.testing.assert_array_equal(np.concatenate(list(M.iter_generate(netG, 10, z_dist="normal", seed=5,
                                                                      batch_size=4))), a)
    with pytest.raises(ValueError, match="n >= 2"):
        M.generate(netG, 1, z_dist="normal", seed=0)


def test_generate_conditional_needs_labels():
    netG, _ = build(model="mnist_cond_dcgan", ngf=8, ndf=8)
    labels = np.arange(20) % 10
    out = M.generate(netG, 20, z_dist="uniform", seed=0, labels=labels)
    assert out.shape == (20, 28, 28, 1)
    with pytest.raises(ValueError, match="pass labels"):
        M.generate(netG, 20, z_dist="uniform", seed=0)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        M.generate(netG, 20, z_dist="uniform", seed=0, labels=labels + 1)


# --- checkpoints -------------------------------------------------------------------------------------------


def _save(tmp_path: Path, run: dict) -> tuple[Path, nn.Module, nn.Module]:
    netG, netD = M.build_models(run)
    path = tmp_path / "model.pt"
    M.save_checkpoint(path, netG, netD, name="svhn", run=run, epoch=2, step=40, snapshots={2: "x/epoch002.pt"},
                      data_meta={"name": "svhn"}, provenance={"seed": 0})
    return path, netG, netD


def test_checkpoint_round_trip(tmp_path):
    run = {**run_cfg("svhn32", ngf=8, ndf=8), "seed": 0, "lr": 5e-4}
    path, netG, netD = _save(tmp_path, run)
    torch.manual_seed(11)
    g2, d2, ckpt = M.load_checkpoint(path, "cpu", run=run)
    # loading does not consume the caller's global RNG (same draw as straight after manual_seed(11))
    assert torch.equal(torch.rand(3), torch.rand(3, generator=torch.Generator().manual_seed(11)))
    assert ckpt["epoch"] == 2 and ckpt["step"] == 40 and ckpt["snapshots"] == {2: "x/epoch002.pt"}
    assert not d2.training
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    netD.eval()
    assert torch.equal(netD(x), d2(x))
    z = M.sample_z(4, 100, "normal")
    assert torch.equal(netG(z), g2(z))


def test_checkpoint_refuses_a_different_config(tmp_path):
    run = run_cfg("svhn32", ngf=8, ndf=8)
    path, _, _ = _save(tmp_path, run)
    with pytest.raises(ValueError) as e:
        M.load_checkpoint(path, "cpu", run={**run, "ngf": 16})
    msg = str(e.value)
    assert str(path) in msg and "'ngf': (8, 16)" in msg and "'ngf': 16" in msg


def test_checkpoint_refuses_weights_that_do_not_fit(tmp_path):
    run = run_cfg("svhn32", ngf=8, ndf=8)
    path, _, _ = _save(tmp_path, run)
    ckpt = torch.load(path, weights_only=True)
    ckpt["run"]["ngf"] = 16                                  # file's own config disagrees with its weights
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r".*generator does not match"):
        M.load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable"):
        M.load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="train_gan"):
        M.load_checkpoint(tmp_path / "missing.pt")


# --- the authors' released weights fit these modules (../shared/data, optional) ----------------------------


def _released(folder: Path, prefix: str) -> dict[int, np.ndarray]:
    return {int(f.stem.rsplit("_", 1)[1]): np.load(f, mmap_mode="r") for f in folder.glob(f"{prefix}.jl_*.npy")}


def _theano_to_torch(a: np.ndarray, p: torch.Tensor) -> tuple:
    """Expected torch shape of a released Theano array: Linear (in, out) -> (out, in); kernels unchanged."""
    return tuple(a.shape[::-1]) if a.ndim == 2 else tuple(a.shape)


@pytest.mark.shared_data
@pytest.mark.parametrize("folder,epoch,model,nz", [("dcgan_code_svhn", 200, "svhn32", 100),
                                                   ("dcgan_code_imagenet_partial", 30, "imagenet32", 256)])
def test_released_arrays_map_one_to_one_onto_our_parameters(shared_data, folder, epoch, model, nz):
    """Parameter i (in module order) has the shape of the authors' array i+1: same layers, same order, no
    biases, BN gain/bias pairs where the code has them."""
    ngf = 64 if model == "svhn32" else 128
    netG, netD = build(model=model, nz=nz, ngf=ngf, ndf=ngf)
    d = shared_data / "weights" / folder
    for net, prefix in ((netG, f"{epoch}_gen_params"), (netD, f"{epoch}_discrim_params")):
        arrays, params = _released(d, prefix), list(net.parameters())
        assert max(arrays) <= len(params) and len(arrays) >= 7
        for i, a in arrays.items():
            assert _theano_to_torch(a, params[i - 1]) == tuple(params[i - 1].shape), (prefix, i)
