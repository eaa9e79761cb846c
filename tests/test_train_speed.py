"""dcgan_repro.train's faster paths change no result: foreach Adam is bitwise the per-parameter loop (also across a
resume that switches between them), the label maps keep channels_last with the same values, ``compile: true``
trains exactly as without it where torch.compile is missing or fails, and the allocator tuning degrades to a no-op
without glibc. Tiny synthetic datasets, CPU, a few seconds each."""

from __future__ import annotations

import ctypes
import logging

import pytest
import torch

from dcgan_repro import models, runtime, train
# pytest puts tests/ on sys.path; not `from tests.test_train`: torch-fidelity installs a top-level `tests` package
from test_train import COMMON, Crash, fit, make_data, make_run, same_weights

torch.set_num_threads(1)


@pytest.mark.parametrize("model", ["mnist_cond_dcgan", "dcgan64"])
def test_foreach_adam_trains_bitwise_like_the_per_parameter_loop(tmp_path, monkeypatch, model):
    """The faster multi-tensor Adam gives the same fp32 weights, bit for bit, as torch's CPU default."""
    recipe = "paper" if model == "mnist_cond_dcgan" else "pytorch_examples"
    run = make_run(model, recipe, epochs=2, snapshot_epochs=[2], ngf=4, ndf=4)
    data = make_data(tmp_path, model)
    monkeypatch.setattr(train, "ADAM_IMPL", "single")
    _, out_single = fit(tmp_path, "single", run, data)
    monkeypatch.setattr(train, "ADAM_IMPL", "foreach")
    _, out_foreach = fit(tmp_path, "foreach", run, data)
    same_weights(out_single / "model.pt", out_foreach / "model.pt")


def test_a_run_stopped_under_one_adam_resumes_under_the_other_bitwise(tmp_path, monkeypatch):
    """A checkpoint carries its optimiser's settings; the resumed run uses the current Adam kernel and still ends
    bitwise equal to an uninterrupted run."""
    run = make_run("mnist_cond_dcgan")
    data = make_data(tmp_path, "mnist_cond_dcgan")
    _, out_full = fit(tmp_path, "full", run, data)

    def crash_at_7(step):                                       # last checkpoint: step 5, the epoch end
        if step == 7:
            raise Crash

    monkeypatch.setattr(train, "ADAM_IMPL", "single")
    monkeypatch.setattr(train, "_after_step", crash_at_7)
    with pytest.raises(Crash):
        fit(tmp_path, "resumed", run, data)
    monkeypatch.setattr(train, "ADAM_IMPL", "foreach")
    monkeypatch.setattr(train, "_after_step", lambda step: None)
    made = []
    real_step = torch.optim.Adam.step
    monkeypatch.setattr(torch.optim.Adam, "step",
                        lambda self, *a, **k: made.append(self.param_groups[0]["foreach"]) or real_step(self, *a, **k))
    resumed, out_res = fit(tmp_path, "resumed", run, data)
    assert resumed["resumed_from_step"] == 5 and made and all(made)    # epoch end (5 steps per epoch)
    same_weights(out_full / "model.pt", out_res / "model.pt")


def test_an_adam_implementation_outside_the_list_is_refused():
    netG, netD = models.build_models(make_run())
    with pytest.raises(ValueError, match="foreach, single, fused"):
        train.make_optimizers(netG, netD, make_run(), impl="fast")


def test_label_maps_keep_the_memory_format_and_the_values():
    """channels_last in -> channels_last out (no conversion before the next conv); NCHW stays NCHW; same values."""
    h = torch.randn(4, 6, 5, 5)
    y1h = torch.nn.functional.one_hot(torch.tensor([0, 3, 9, 3]), 10).float()
    want = torch.cat([h, y1h[:, :, None, None].expand(4, 10, 5, 5)], dim=1)             # (4, 16, 5, 5)
    plain = models._cond_maps(h, y1h)
    fast = models._cond_maps(h.contiguous(memory_format=torch.channels_last), y1h)
    assert torch.equal(plain, want) and plain.is_contiguous()
    assert torch.equal(fast, want) and fast.is_contiguous(memory_format=torch.channels_last)


def test_mnist_nets_give_the_same_outputs_in_both_memory_formats():
    """The conditional nets as training runs them (channels_last) and as sampling runs them (NCHW) agree."""
    torch.manual_seed(0)
    netG, netD = models.build_models(make_run("mnist_cond_dcgan", ngf=8, ndf=8))
    z, y = torch.rand(6, 8) * 2 - 1, torch.arange(6)
    x_plain, logit_plain = netG(z, y), netD(netG(z, y), y)
    for net in (netG, netD):
        net.to(memory_format=torch.channels_last)
    x_cl = netG(z, y)
    torch.testing.assert_close(x_cl, x_plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(netD(x_cl.contiguous(memory_format=torch.channels_last), y), logit_plain,
                               rtol=1e-4, atol=1e-5)


def _raise(*args, **kwargs):
    raise RuntimeError("torch.compile is not supported on this platform")


class _FailsWhenCalled(torch.nn.Module):
    """What torch.compile returns where the backend fails: a module that raises on its first call."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args, **kwargs):
        raise RuntimeError("C++ compile error: no working compiler found")


@pytest.mark.parametrize("broken", [_raise, _FailsWhenCalled], ids=["compile raises", "compiled net raises"])
def test_compile_falls_back_to_eager_and_trains_bitwise_the_same(tmp_path, monkeypatch, caplog, broken):
    """``compile: true`` where torch.compile cannot work: a warning naming the error, then the same run, bit for bit,
    as without compile (the trial step leaves no trace: weights, Adam states, BN statistics and RNGs put back)."""
    run = make_run("mnist_cond_dcgan", max_steps=6)
    data = make_data(tmp_path, "mnist_cond_dcgan")
    _, out_eager = fit(tmp_path, "eager", run, data)
    monkeypatch.setattr(torch, "compile", broken)
    out = tmp_path / "compiled"
    with caplog.at_level(logging.WARNING, logger="dcgan_repro.train"):
        s = train.train_gan(run, "t", data, out / "model.pt", out / "summary.json", tmp_path / "ck_c",
                            {**COMMON, "compile": True})
    assert s["steps"] == 6
    assert any("compile requested but torch.compile fails here" in r.getMessage() and "RuntimeError" in r.getMessage()
               for r in caplog.records)
    same_weights(out_eager / "model.pt", out / "model.pt")


def test_compile_trial_restores_the_state_it_started_from(tmp_path, monkeypatch):
    """When compiling works, the trial steps still leave nets, optimisers and RNGs as they were: here "compile" is
    the identity, so the run must equal an eager one bit for bit."""
    run = make_run("svhn32", max_steps=5)
    data = make_data(tmp_path, "svhn32")
    _, out_eager = fit(tmp_path, "eager", run, data)
    monkeypatch.setattr(torch, "compile", lambda net, **kw: net)
    out = tmp_path / "identity"
    train.train_gan(run, "t", data, out / "model.pt", out / "summary.json", tmp_path / "ck_i",
                    {**COMMON, "compile": True})
    same_weights(out_eager / "model.pt", out / "model.pt")


def test_allocator_tuning_is_a_no_op_without_glibc(monkeypatch):
    monkeypatch.setattr(runtime, "_allocator_tuned", None)

    class NoMallopt:
        pass

    monkeypatch.setattr(ctypes, "CDLL", lambda name: NoMallopt())
    assert runtime.tune_allocator() is False
    assert runtime.tune_allocator() is False                    # decided once

