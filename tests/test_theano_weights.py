"""The authors' Theano weight format: round trip, the flip convention, strict shape checks, the partial release."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from dcgan_repro import features, models, theano_weights as tw

SMALL_SVHN = {"model": "svhn32", "recipe": "paper", "nz": 16, "ngf": 8, "ndf": 8}
SMALL_IMAGENET = {"model": "imagenet32", "recipe": "paper", "nz": 16, "ngf": 4, "ndf": 4}


def _nets(run, seed):
    torch.manual_seed(seed)
    return models.build_models(run)


def test_round_trip_restores_every_parameter(tmp_path):
    netG, netD = _nets(SMALL_SVHN, 0)
    tw.write_theano_params(netG, tmp_path / "gen.jl")
    tw.write_theano_params(netD, tmp_path / "discrim.jl")
    G2 = tw.load_generator(tmp_path / "gen.jl", run=SMALL_SVHN)
    D2 = tw.load_discriminator(tmp_path / "discrim.jl", run=SMALL_SVHN)
    for a, b in ((netG, G2), (netD, D2)):
        sa, sb = dict(a.named_parameters()), dict(b.named_parameters())
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    z = torch.randn(8, 16)
    with torch.no_grad():
        assert torch.equal(netG(z), G2(z))


def test_written_layout_is_theano_layout(tmp_path):
    """Linear weights stored (in, out), conv kernels flipped, list order = the authors' parameter order."""
    netG, _ = _nets(SMALL_SVHN, 1)
    files = tw.write_theano_params(netG, tmp_path / "gen.jl")
    assert [f.name for f in files[:3]] == ["gen.jl_01.npy", "gen.jl_02.npy", "gen.jl_03.npy"]
    arrays = tw.read_param_list(tmp_path / "gen.jl")
    assert arrays[0].shape == (16, 8 * 4 * 16)  # gw: (nz, C0*4*4)
    np.testing.assert_array_equal(arrays[0], netG.project.weight.detach().numpy().T)
    deconv = netG.main[0].weight.detach().numpy()  # (C_in, C_out, 5, 5)
    np.testing.assert_array_equal(arrays[3], deconv[:, :, ::-1, ::-1])
    assert [s.kind for s in tw.theano_slots(netG)] == ["linear", "bn_gain", "bn_bias", "conv", "bn_gain",
                                                      "bn_bias", "conv", "bn_gain", "bn_bias", "conv"]


def test_loaded_conv_is_theano_true_convolution():
    """A Theano kernel (conv_mode='conv': true convolution) loaded into our Conv2d gives scipy's convolve2d."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 3, 5, 5)).astype(np.float32)  # Theano (C_out, C_in, k, k)
    x = rng.normal(size=(1, 3, 9, 9)).astype(np.float32)
    conv = torch.nn.Conv2d(3, 2, 5, padding=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(tw.from_theano("conv", w))
        ours = conv(torch.from_numpy(x)).numpy()[0]
    ref = np.stack([sum(convolve2d(x[0, i], w[o, i], mode="same") for i in range(3)) for o in range(2)])
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-4)


def test_missing_arrays_are_named_and_a_prefix_loads(tmp_path):
    _, netD = _nets(SMALL_IMAGENET, 2)
    tw.write_theano_params(netD, tmp_path / "d.jl")
    # the partial ImageNet release: D's 5th conv kernel (array 11) absent
    (tmp_path / "d.jl_11.npy").unlink()
    with pytest.raises(tw.WeightFileError, match=r"array 11 \(convs.4.0.weight.*missing.*n_convs=4"):
        tw.load_discriminator(tmp_path / "d.jl", run=SMALL_IMAGENET)
    prefix = tw.load_discriminator(tmp_path / "d.jl", run=SMALL_IMAGENET, n_convs=4)
    assert isinstance(prefix, tw.DiscriminatorPrefix) and len(prefix.convs) == 4
    assert features.feature_dim(prefix) == (4 + 4 + 8 + 8) * 16
    x = torch.randn(4, 3, 32, 32)
    netD.eval()
    with torch.no_grad():
        for a, b in zip(prefix.features(x), netD.features(x)[:4]):
            assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="no logit head"):
        prefix(x)
    with pytest.raises(tw.WeightFileError, match="array 11"):
        tw.load_discriminator(tmp_path / "d.jl", run=SMALL_IMAGENET, n_convs=5)


def test_shape_and_count_mismatch_refused(tmp_path):
    netG, netD = _nets(SMALL_SVHN, 3)
    tw.write_theano_params(netD, tmp_path / "d.jl")
    wider = dict(SMALL_SVHN, ndf=16)
    with pytest.raises(tw.WeightFileError, match=r"array 01 \(convs.0.0.weight, conv\) has shape \(8, 3, 5, 5\), "
                                                 r"expected \(16, 3, 5, 5\)"):
        tw.load_discriminator(tmp_path / "d.jl", run=wider)
    with pytest.raises(tw.WeightFileError, match="lists 8 arrays but ProjectedGenerator"):
        tw.load_generator(tmp_path / "d.jl", run=SMALL_SVHN)  # the discriminator file into G
    with pytest.raises(tw.WeightFileError, match="not one of the authors' unconditional nets"):
        tw.theano_slots(models.build_models({**SMALL_SVHN, "model": "mnist_cond_dcgan"})[0])


def test_foreign_pickles_refused(tmp_path):
    (tmp_path / "evil.jl").write_bytes(pickle.dumps(["a", print]))
    with pytest.raises(tw.WeightFileError, match="not a joblib list pickle"):
        tw.read_param_list(tmp_path / "evil.jl")
    with pytest.raises(tw.WeightFileError, match="does not exist"):
        tw.read_param_list(tmp_path / "absent.jl")


# --- the released weights (../shared/data/weights) ---------------------------------------------------------


def test_released_svhn_model_loads_and_its_d_prefers_its_g(shared_data):
    """With the documented flip, the released D finds the released G's samples far more realistic than those of
    the same G loaded without the flip (a wrong convention breaks the pair). The figure rule
    ``authors_svhn_samples`` shows the samples are house numbers (checked by eye)."""
    folder = shared_data / "weights" / "dcgan_code_svhn"
    netG = tw.load_generator(folder)
    netD = tw.load_discriminator(folder)
    unflipped = tw.load_generator(folder)
    arrays = tw.read_param_list(folder / "200_gen_params.jl")
    params = dict(unflipped.named_parameters())
    with torch.no_grad():
        for s in tw.theano_slots(unflipped):
            if s.kind == "conv":
                params[s.name].copy_(torch.from_numpy(arrays[s.index]))
        z = torch.randn(128, 100, generator=torch.Generator().manual_seed(0))
        netD.train()  # batch statistics, as the authors' D
        good, bad = netD(netG(z)).mean().item(), netD(unflipped(z)).mean().item()
    assert good > bad + 3.0, (good, bad)


def test_released_imagenet_d_prefix(shared_data):
    folder = shared_data / "weights" / "dcgan_code_imagenet_partial"
    with pytest.raises(tw.WeightFileError, match="n_convs=4"):
        tw.load_discriminator(folder, "imagenet32")
    with pytest.raises(tw.WeightFileError, match="array 01 .*missing"):
        tw.load_generator(folder, "imagenet32")
    prefix = tw.load_discriminator(folder, "imagenet32", n_convs=4)
    assert features.feature_dim(prefix) == 12288
