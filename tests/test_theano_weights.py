"""The authors' Theano weight format: round trip, the flip convention, strict shape checks, the partial release."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

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
    ``figures_authors_svhn_samples`` shows the samples are house numbers (checked by eye)."""
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


# --- hostile files: nothing in a .jl or .npy may make the loader allocate more than the nets need ------------

_HUGE = b"J\x00\x00\x40\x00" * 2  # BININT 2**22, twice: shape (2**22, 2**22) float64 = 128 TiB


def _hostile(tmp_path, body: bytes) -> Path:
    path = tmp_path / "evil.jl"
    path.write_bytes(b"\x80\x02" + body + b".")
    return path


def test_pickle_cannot_call_ndarray_via_reduce(tmp_path):
    """GLOBAL numpy.ndarray + ((2**22, 2**22),) + REDUCE: the unfixed loader called the real class (MemoryError)."""
    path = _hostile(tmp_path, b"cnumpy\nndarray\n" + _HUGE + b"\x86\x85R")
    with pytest.raises(tw.WeightFileError, match=r"evil\.jl is not a joblib list pickle of arrays: opcode BININT "
                                                 r"at byte 17 does not occur in joblib list pickles"):
        tw.read_param_list(path)
    path = _hostile(tmp_path, b"cnumpy\nndarray\n)R")  # only REDUCE is foreign here
    with pytest.raises(tw.WeightFileError, match=r"opcode REDUCE at byte 18 does not occur"):
        tw.read_param_list(path)


def test_pickle_cannot_call_ndarray_via_newobj(tmp_path):
    """... + NEWOBJ: ndarray.__new__(ndarray, (2**22, 2**22)), and NEWOBJ alone (which the real files use)."""
    path = _hostile(tmp_path, b"cnumpy\nndarray\n" + _HUGE + b"\x86\x85\x81")
    with pytest.raises(tw.WeightFileError, match=r"evil\.jl is not a joblib list pickle of arrays: opcode BININT"):
        tw.read_param_list(path)
    path = _hostile(tmp_path, b"cnumpy\nndarray\n)\x81")
    with pytest.raises(tw.WeightFileError, match=r"evil\.jl is not a joblib list pickle of arrays: the pickle "
                                                 r"calls numpy\.ndarray"):
        tw.read_param_list(path)


def test_unpickler_itself_refuses_to_call_the_ndarray_marker():
    """Defence in depth: even past the opcode check, numpy.ndarray resolves to a marker that cannot be called."""
    for body in (_HUGE + b"\x86\x85R", _HUGE + b"\x86\x85\x81", b"}b"):  # REDUCE, NEWOBJ, BUILD on the class
        with pytest.raises(pickle.UnpicklingError, match="numpy.ndarray"):
            tw._ListUnpickler(io.BytesIO(b"\x80\x02cnumpy\nndarray\n" + body + b"."), encoding="latin1").load()


@pytest.mark.parametrize("module,name", [("numpy.core.multiarray", "_reconstruct"),
                                         ("numpy._core.multiarray", "_reconstruct"), ("numpy", "dtype"),
                                         ("numpy", "frombuffer"), ("builtins", "eval"), ("copyreg", "_reconstructor")])
def test_pickle_other_globals_refused(tmp_path, module, name):
    """numpy's own array pickles (_reconstruct + dtype + BUILD) and anything else callable are refused by name."""
    body = b"c" + f"{module}\n{name}\n".encode() + b"cnumpy\nndarray\n" + _HUGE + b"\x86U\x01b\x87\x81"
    with pytest.raises(tw.WeightFileError, match=rf"unexpected object {module}\.{name}"):
        tw.read_param_list(_hostile(tmp_path, body))


def test_pickle_declaring_a_huge_string_refused(tmp_path):
    """BINBYTES8 claiming 2**40 bytes: the unfixed loader asked the file for that many bytes at once (MemoryError).
    A string opcode the real files may use, claiming more bytes than the file holds, is refused before reading."""
    path = _hostile(tmp_path, b"\x8e" + (1 << 40).to_bytes(8, "little") + b"xyz")
    with pytest.raises(tw.WeightFileError, match=r"evil\.jl is not a joblib list pickle of arrays: opcode BINBYTES8 "
                                                 r"at byte 2 does not occur"):
        tw.read_param_list(path)
    path = _hostile(tmp_path, b"X\xff\xff\xff\xffxyz")  # BINUNICODE of 4 GiB - 1
    with pytest.raises(tw.WeightFileError, match=r"opcode BINUNICODE at byte 2: expected 4294967295 bytes"):
        tw.read_param_list(path)


def test_pickle_larger_than_any_release_refused(tmp_path):
    path = tmp_path / "big.jl"
    path.write_bytes(tw._list_pickle(["big.jl_01.npy"]) + b"\0" * tw.MAX_PICKLE_BYTES)
    with pytest.raises(tw.WeightFileError, match=r"big\.jl has \d+ bytes.*at most 1048576"):
        tw.read_param_list(path)


def _npy_with_header(path, header: dict, data: bytes) -> None:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    path.write_bytes(buf.getvalue() + data)


def _one_array_release(tmp_path, npy_writer) -> Path:
    (tmp_path / "w.jl").write_bytes(tw._list_pickle(["w.jl_01.npy"]))
    npy_writer(tmp_path / "w.jl_01.npy")
    return tmp_path / "w.jl"


def test_npy_header_claiming_16_tib_refused(tmp_path):
    """A header claiming (2**21, 2**20) float64 (16 TiB) over 16 bytes of data: the unfixed np.load allocated
    first (MemoryError)."""
    jl = _one_array_release(tmp_path, lambda p: _npy_with_header(
        p, {"descr": "<f8", "fortran_order": False, "shape": (2**21, 2**20)}, b"\0" * 16))
    with pytest.raises(tw.WeightFileError, match=r"w\.jl_01\.npy: the header says shape \(2097152, 1048576\), "
                                                 r"dtype <f8 \(17592186044416 bytes = 16\.0 TiB\).*at most 1\.0 GiB"):
        tw.read_param_list(jl)


def test_npy_truncated_or_padded_refused(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    jl = _one_array_release(tmp_path, lambda p: np.save(p, a))
    npy = tmp_path / "w.jl_01.npy"
    full = npy.read_bytes()
    npy.write_bytes(full[:-5])  # truncated
    with pytest.raises(tw.WeightFileError, match=r"w\.jl_01\.npy: the header says shape \(4, 3\), dtype <f4 "
                                                 r"\(48 bytes\), but the file holds 43 bytes of data"):
        tw.read_param_list(jl)
    npy.write_bytes(full + b"junk")  # trailing bytes the header does not account for
    with pytest.raises(tw.WeightFileError, match=r"holds 52 bytes of data.*expected exactly 48"):
        tw.read_param_list(jl)
    npy.write_bytes(full)
    np.testing.assert_array_equal(tw.read_param_list(jl)[0], a)


@pytest.mark.parametrize("descr,match", [("|O", "object"), ("<i8", "not a floating-point"),
                                         ([("a", "<f4")], "not a floating-point"),
                                         (("<f4", (1024,)), "not a floating-point")])
def test_npy_object_and_non_float_dtypes_refused(tmp_path, descr, match):
    jl = _one_array_release(tmp_path, lambda p: _npy_with_header(
        p, {"descr": descr, "fortran_order": False, "shape": (2,)}, b"\0" * 64))
    with pytest.raises(tw.WeightFileError, match=rf"w\.jl_01\.npy: the header says .*{match}"):
        tw.read_param_list(jl)


def test_npy_not_an_npy_refused(tmp_path):
    jl = _one_array_release(tmp_path, lambda p: p.write_bytes(b"\x93NUMPY\x01"))
    with pytest.raises(tw.WeightFileError, match=r"w\.jl_01\.npy is not a \.npy file"):
        tw.read_param_list(jl)
    (tmp_path / "w.jl_01.npy").write_bytes(b"\x93NUMPY\x03\x00" + b"\0" * 64)
    with pytest.raises(tw.WeightFileError, match=r"w\.jl_01\.npy: \.npy format version 3\.0; expected 1\.0 or 2\.0"):
        tw.read_param_list(jl)


def test_npy_shape_checked_against_the_net_before_reading(tmp_path, monkeypatch):
    """A well-formed file of the wrong shape is refused from its header alone: no array of it is allocated."""
    netG, _ = _nets(SMALL_SVHN, 4)
    tw.write_theano_params(netG, tmp_path / "g.jl")
    _npy_with_header(tmp_path / "g.jl_01.npy", {"descr": "<f4", "fortran_order": False, "shape": (1024, 1024)},
                     b"\0" * (1024 * 1024 * 4))
    monkeypatch.setattr(tw, "read_npy", lambda *a, **k: pytest.fail("an array was read before the shape check"))
    with pytest.raises(tw.WeightFileError, match=r"array 01 \(project.weight, linear\) has shape \(1024, 1024\), "
                                                 r"expected \(16, 512\)"):
        tw.load_generator(tmp_path / "g.jl", run=SMALL_SVHN)
