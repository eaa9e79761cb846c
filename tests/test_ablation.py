"""The ablation study (dcgan_repro.model_variants, dcgan_repro.ablation): every variant switch changes the built nets
as intended and nothing else, the baseline is today's model exactly, refusals name the key, and the measures (CI,
oscillation, Frechet distance, FID through torch-fidelity with a stand-in network) respond to what they measure."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from scipy import stats as scipy_stats
from torch import nn

from dcgan_repro import config as config_mod
from dcgan_repro import io, train, variant_switches
from dcgan_repro import model_variants as MV
from dcgan_repro import models as M
from dcgan_repro import variant_switches as VS
from dcgan_repro.ablation import fid, frechet, plan, stability, stats, table, training

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
CONV_MODELS = ["mnist_cond_dcgan", "dcgan64", "svhn32", "imagenet32"]


def run_cfg(model: str, variant: dict | None = None, width: int = 12) -> dict:
    run = {"model": model, "recipe": "paper", "nz": 100, "ngf": width, "ndf": width}
    if variant is not None:
        run["variant"] = variant
    return run


def _forced_baseline(model: str, seed: int):
    torch.manual_seed(seed)
    g, d = MV._conv_plan(model, 12, 12) if model != "mnist_cond_dcgan" else (None, None)
    sw = dict(VS.BASELINE)
    common = dict(eps=M.PAPER_BN_EPS, model=model, recipe="paper", sw=sw)
    if model == "mnist_cond_dcgan":
        netG = MV.VariantCondGenerator(nz=100, ngf=12, eps=M.PAPER_BN_EPS, recipe="paper", sw=sw)
        netD = MV.VariantCondDiscriminator(nz=100, ndf=12, eps=M.PAPER_BN_EPS, recipe="paper", sw=sw)
    else:
        netG = MV.VariantProjectedGenerator(nz=100, image_shape=g.pop("image_shape"), **g, **common)
        netD = MV.VariantConvDiscriminator(nz=100, image_shape=d.pop("image_shape"), **d, **common)
    M.init_weights(netG, "paper")
    M.init_weights(netD, "paper")
    return netG, netD


def inputs(net, n: int = 4, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = M.sample_z(n, 100, "uniform", g)
    y = torch.arange(n) % 10 if net.n_classes else None
    return z, y


def shapes(net: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in net.state_dict().items()}


def types(net: nn.Module) -> list[str]:
    return sorted(type(m).__name__ for m in net.modules() if not list(m.children()))


# --- the baseline is today's model ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", CONV_MODELS)
def test_variant_nets_with_every_switch_at_baseline_are_the_models_nets(model):
    torch.manual_seed(0)
    G0, D0 = M.build_models(run_cfg(model))
    G1, D1 = _forced_baseline(model, 0)
    for a, b in ((G0, G1), (D0, D1)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), model
    z, y = inputs(G0)
    with torch.no_grad():
        x = G0(z, y)
        assert torch.equal(x, G1(z, y)) and torch.equal(D0(x, y), D1(x, y))


@pytest.mark.parametrize("model", [*CONV_MODELS, "mnist_cond_mlp"])
def test_baseline_run_is_built_by_the_unchanged_code_bit_for_bit(model):
    """No variant key, an empty one, or one that sets only baseline values: the models nets, same weights and
    outputs for the same seed."""
    built = []
    for variant in (None, {}, dict(VS.BASELINE)):
        torch.manual_seed(3)
        built.append(M.build_models(run_cfg(model, variant)))
    (G0, D0) = built[0]
    assert type(G0).__module__ == "dcgan_repro.models" and type(D0).__module__ == "dcgan_repro.models"
    z, y = inputs(G0)
    for G, D in built[1:]:
        assert type(G) is type(G0) and type(D) is type(D0)
        for a, b in ((G0, G), (D0, D)):
            assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
        with torch.no_grad():
            assert torch.equal(G0(z, y), G(z, y))


def test_the_ablation_baseline_run_is_the_base_run_with_its_seed():
    cfg = paper_config()
    base = cfg["runs"]["mnist_dcgan"]
    r = plan.variant_run(cfg, "baseline", 2)
    assert "variant" not in r.run and r.change == {} and r.name == "mnist_dcgan__abl_baseline_s2"
    assert {k: v for k, v in r.run.items() if k != "seed"} == {k: v for k, v in base.items() if k != "seed"}
    assert r.run["seed"] == 2


# --- each switch changes what it should and nothing else --------------------------------------------------------


def _diff(a: dict, b: dict) -> tuple[set, set, set]:
    """keys only in a, only in b, and in both with different shapes."""
    return a.keys() - b.keys(), b.keys() - a.keys(), {k for k in a.keys() & b.keys() if a[k] != b[k]}


# model, switch, value -> (G: only-in-baseline, only-in-variant, reshaped), (D: ...), module types changed?
EXPECTED = {
    ("mnist_cond_dcgan", "resampling", "pooling"): (
        ({"deconv1.weight", "deconv2.weight"}, {"deconv1.conv.weight", "deconv2.conv.weight"}, set()),
        ({"conv1.weight", "conv2.weight"}, {"conv1.conv.weight", "conv2.conv.weight"}, set())),
    ("mnist_cond_dcgan", "batchnorm", "none"): (
        (set(), set(), set()),  # G's BN has no gain/bias and no running statistics (affine=False, batch stats)
        ({"bn2.running_mean", "bn2.running_var", "bn2.num_batches_tracked", "bn3.running_mean", "bn3.running_var",
          "bn3.num_batches_tracked"}, set(), set())),
    ("mnist_cond_dcgan", "batchnorm", "all"): (
        (set(), {"bn_out.weight", "bn_out.bias"}, set()),
        (set(), {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"},
         set())),
    ("mnist_cond_dcgan", "fc_hidden", "removed"): (
        ({"fc1.weight"}, set(), {"fc2.weight"}),
        ({"fc3.weight", "bn3.running_mean", "bn3.running_var", "bn3.num_batches_tracked"}, set(), {"out.weight"})),
    ("dcgan64", "fc_hidden", "added"): (
        (set(), {"hidden.0.weight", "hidden.1.weight", "hidden.1.bias"}, {"project.weight"}),
        (set(), {"hidden.0.weight", "hidden.1.weight", "hidden.1.bias", "hidden.1.running_mean",
                 "hidden.1.running_var", "hidden.1.num_batches_tracked"}, {"head.weight"})),
}
ACTIVATIONS = {("g_activation", "lrelu"): ("G", "ReLU", "LeakyReLU"), ("g_activation", "elu"): ("G", "ReLU", "ELU"),
               ("d_activation", "relu"): ("D", "LeakyReLU", "ReLU")}


@pytest.mark.parametrize("model", CONV_MODELS)
@pytest.mark.parametrize("switch,value", [(k, v) for k, vals in VS.SWITCHES.items() for v in vals[1:]])
def test_each_switch_changes_the_built_nets_as_intended_and_nothing_else(model, switch, value):
    applies = value in VS.APPLICABLE[model].get(switch, set())
    if not applies:
        with pytest.raises(VS.VariantError, match=f"does not apply to model {model}"):
            M.build_models(run_cfg(model, {switch: value}))
        return
    G0, D0 = _forced_baseline(model, 0)
    torch.manual_seed(0)
    G1, D1 = M.build_models(run_cfg(model, {switch: value}))
    assert type(G1).__module__ == "dcgan_repro.model_variants"
    (g_out, g_in, g_re), (d_out, d_in, d_re) = _diff(shapes(G0), shapes(G1)), _diff(shapes(D0), shapes(D1))
    key = ("dcgan64" if (switch, value) == ("fc_hidden", "added") else model, switch, value)  # same in every conv net
    if key in EXPECTED:
        assert ((g_out, g_in, g_re), (d_out, d_in, d_re)) == EXPECTED[key]
    elif switch == "resampling":   # every stride-2 (de)conv becomes upsample+conv / conv+maxpool, same widths
        for net0, net1, out, new, cls in ((G0, G1, g_out, g_in, MV._UpConv), (D0, D1, d_out, d_in, MV._ConvPool)):
            n2 = sum(isinstance(m, cls) for m in net1.modules())
            assert n2 == len(out) == len(new) > 0
            assert {k.replace(".0.weight", ".0.conv.weight") if net1 is D1 else k.replace(".weight", ".conv.weight")
                    for k in out} == new
    elif switch == "batchnorm" and value == "none":
        assert not g_in and not d_in and not g_re and not d_re
        assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in [*G1.modules(), *D1.modules()])
        assert g_out and d_out and all(".bn" in k or "_bn" in k or "main." in k or "convs." in k for k in g_out | d_out)
    elif switch == "batchnorm" and value == "all":
        def bn(net):
            return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())

        assert (bn(G1), bn(D1)) == (bn(G0) + 1, bn(D0) + 1) and not g_out and not d_out and not g_re and not d_re
    else:
        # activation or init: the same parameters, shapes and layer order
        assert not (g_out or g_in or g_re or d_out or d_in or d_re)
    if (switch, value) in ACTIVATIONS:
        which, old, new = ACTIVATIONS[switch, value]
        a0, a1 = (types(G0), types(G1)) if which == "G" else (types(D0), types(D1))
        assert old not in a1 or (old == "ReLU" and "LeakyReLU" in a1 and a1.count("ReLU") < a0.count("ReLU"))
        assert new in a1
        other0, other1 = (types(D0), types(D1)) if which == "G" else (types(G0), types(G1))
        assert other0 == other1                                                  # the other net is untouched
    if switch == "init":
        assert all(map(_default_uniform, [*G1.modules(), *D1.modules()]))
        assert not all(map(_default_uniform, [*G0.modules(), *D0.modules()]))
    z, y = inputs(G1)
    with torch.no_grad():
        x = G1(z, y)
        assert x.shape == G0(z, y).shape and D1(x, y).shape == (len(z),) and torch.isfinite(x).all()


def test_init_switch_also_applies_to_the_mlp_baseline_and_pytorch_examples():
    for run in (run_cfg("mnist_cond_mlp", {"init": "pytorch_default"}),
                {**run_cfg("dcgan64", {"init": "pytorch_default"}), "recipe": "pytorch_examples"}):
        torch.manual_seed(0)
        G, D = M.build_models(run)
        assert type(G).__module__ == "dcgan_repro.models"
        assert all(map(_default_uniform, [*G.modules(), *D.modules()]))


def _default_uniform(m: nn.Module) -> bool:
    """A layer's weight looks like PyTorch's default init, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with
    a = sqrt(5)): inside the bound, and about half of it beyond half the bound. True for layers without weights."""
    if not isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        return True
    w = m.weight.detach()
    fan_in = nn.init._calculate_fan_in_and_fan_out(w)[0]
    bound = 1 / math.sqrt(fan_in)
    frac = float((w.abs() > bound / 2).float().mean())
    return bool(w.abs().max() <= bound * (1 + 1e-6)) and (0.4 < frac < 0.6 or w.numel() < 200)


# --- refusals ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("switch,value", [("resampling", "pooling"), ("batchnorm", "none"), ("fc_hidden", "removed"),
                                          ("g_activation", "lrelu"), ("d_activation", "relu")])
def test_switches_that_do_not_apply_to_the_mlp_baseline_are_refused(switch, value):
    with pytest.raises(VS.VariantError) as e:
        M.build_models(run_cfg("mnist_cond_mlp", {switch: value}))
    msg = str(e.value)
    assert f"variant.{switch}" in msg and "mnist_cond_mlp" in msg and "init=pytorch_default" in msg


def test_pytorch_examples_recipe_refuses_architecture_switches():
    with pytest.raises(VS.VariantError, match="pytorch_examples"):
        M.build_models({**run_cfg("dcgan64", {"batchnorm": "none"}), "recipe": "pytorch_examples"})


def paper_config() -> dict:
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    return config_mod.validate_config(cfg)


def raw_config() -> dict:
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_schema_lists_the_same_switches_and_values_as_the_code():
    schema = config_mod.load_schema()
    props = schema["$defs"]["variant"]["properties"]
    assert {k: tuple(v["enum"]) for k, v in props.items()} == variant_switches.SWITCHES
    assert set(schema["$defs"]["variant_change"]["properties"]) == {*variant_switches.SWITCHES, "lr", "beta1"}


@pytest.mark.parametrize("edit,expected", [
    (lambda c: c["ablation"]["changes"].update(x={"batchnorm": "off"}),
     "config key 'ablation.changes.x.batchnorm': 'off' is not allowed; allowed values: paper, none, all"),
    (lambda c: c["ablation"]["changes"].update(x={"batchnorm": "none", "lr": 0.1}),
     "config key 'ablation.changes.x'"),
    (lambda c: c["ablation"]["changes"].update(x={"dropout": 0.5}),
     "unknown config key(s) 'ablation.changes.x.dropout'"),
    (lambda c: c["runs"]["mnist_dcgan"].update(variant={"init": "xavier"}),
     "config key 'runs.mnist_dcgan.variant.init': 'xavier' is not allowed; allowed values: normal, pytorch_default"),
    (lambda c: c["ablation"].update(seeds=[0]), "config key 'ablation.seeds'"),
])
def test_schema_refuses_bad_variants_naming_the_key(edit, expected):
    cfg = raw_config()
    edit(cfg)
    with pytest.raises(config_mod.ConfigError) as e:
        config_mod.validate_config(cfg)
    assert expected in str(e.value)


def _plan_error(edit) -> str:
    cfg = raw_config()
    edit(cfg)
    cfg = config_mod.validate_config(cfg)
    with pytest.raises(plan.AblationConfigError) as e:
        plan.check_plan(cfg)
    return str(e.value)


def test_plan_refuses_switches_that_do_not_apply_to_the_base_model():
    msg = _plan_error(lambda c: c["ablation"].update(run="mnist_gan"))
    assert "ablation.changes.pooling.resampling" in msg and "mnist_cond_mlp" in msg
    assert "ablation.run is mnist_gan" in msg
    msg = _plan_error(lambda c: c["ablation"].update(variants=["baseline", "fc_hidden"]))
    assert "fc_hidden=added does not apply to model mnist_cond_dcgan" in msg and "already has FC hidden" in msg


def test_plan_refuses_a_baseline_that_changes_and_a_variant_that_does_not():
    assert "must change nothing" in _plan_error(lambda c: c["ablation"]["changes"].update(baseline={"lr": 0.001}))
    assert "is the base run's own value" in _plan_error(
        lambda c: (c["ablation"]["changes"].update(same={"beta1": 0.5}), c["ablation"]["variants"].append("same")))
    assert "is the baseline value" in _plan_error(
        lambda c: (c["ablation"]["changes"].update(same={"init": "normal"}), c["ablation"]["variants"].append("same")))
    assert "not defined under ablation.changes" in _plan_error(lambda c: c["ablation"]["variants"].append("nope"))


def test_plan_builds_every_variant_and_seed_with_one_change():
    cfg = paper_config()
    runs = plan.check_plan(cfg)
    assert len(runs) == len(cfg["ablation"]["variants"]) * len(cfg["ablation"]["seeds"])
    base = {k: v for k, v in cfg["runs"]["mnist_dcgan"].items() if k != "seed"}
    for r in runs:
        differ = {k for k in r.run.keys() | base.keys() if k != "seed" and r.run.get(k) != base.get(k)}
        assert differ == ({"variant"} if set(r.change) - {"lr", "beta1"} else set(r.change)), (r.variant, differ)
    lr = next(r for r in runs if r.variant == "lr_0_001")
    assert lr.run["lr"] == 0.001 and "variant" not in lr.run and plan.claim(lr.change) == 6
    assert plan.claim({"batchnorm": "all"}) == 3 and plan.claim({"batchnorm": "none"}) == 2
    # a shorter schedule in run_overrides reaches the derived keys
    cfg2 = copy.deepcopy(cfg)
    cfg2["ablation"]["run_overrides"] = {"epochs": 4, "decay_fraction": 0.5, "snapshot_every": 2}
    r = plan.variant_run(cfg2, "pooling", 0)
    assert (r.run["decay_epochs"], r.run["snapshot_epochs"]) == (2, [2, 4])
    assert r.run["variant"] == {"resampling": "pooling"}


def test_checkpoint_of_a_variant_reloads_and_is_refused_under_the_baseline(tmp_path):
    run = {**run_cfg("mnist_cond_dcgan", {"batchnorm": "none"})}
    torch.manual_seed(0)
    G, D = M.build_models(run)
    path = tmp_path / "model.pt"
    M.save_checkpoint(path, G, D, name="x", run=run, epoch=1, step=1, snapshots={}, data_meta={}, provenance={})
    G2, _, _ = M.load_checkpoint(path, run=run)
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G2.state_dict().values()))
    with pytest.raises(ValueError, match="variant"):
        M.load_checkpoint(path, run=run_cfg("mnist_cond_dcgan"))


# --- measures -----------------------------------------------------------------------------------------------


def test_welch_interval_matches_scipy():
    a, b = [2.1, 2.5, 2.2], [1.0, 1.3, 0.9, 1.1]
    got = stats.welch_interval(a, b, 0.95)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert got["difference"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (got["low"], got["high"]) == pytest.approx((ref.low, ref.high), rel=1e-10)
    assert math.isnan(stats.welch_interval([1.0], b)["low"])                     # one seed: no interval
    assert stats.welch_interval([1.0, 1.0], [0.5, 0.5])["low"] == 0.5           # no spread: the point
    assert stats.summary([1.0, None, float("nan"), 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "n": 2}


def _rows(d_fake, loss_d=None):
    return [{"step": 10 * (i + 1), "d_fake": v, "loss_d": 1.3 if loss_d is None else loss_d[i], "loss_g": 0.7}
            for i, v in enumerate(d_fake)]


def test_oscillation_measure_responds_to_a_planted_oscillation():
    rng = np.random.default_rng(0)
    n = 200
    noise = 0.3 + 0.01 * rng.standard_normal(n)
    planted = noise + 0.1 * np.sin(np.arange(n) * np.pi / 2)                    # swings between windows
    trend = 0.3 + np.linspace(0, 0.2, n) + 0.01 * rng.standard_normal(n)       # a slow drift is not oscillation
    calm, osc, drift = (stability.measure(_rows(list(v)), 0.25)["osc_d_fake"] for v in (noise, planted, trend))
    assert calm == pytest.approx(0.01, rel=0.3) and osc > 5 * calm and drift < 1.5 * calm
    assert stability.oscillation([0.0, 1.0, 0.0, 1.0]) == pytest.approx(math.sqrt(0.5))


def test_stability_flags_divergence_and_collapse():
    ok = stability.measure(_rows([0.3] * 20), 0.25)
    assert not ok["unstable"]
    nan = stability.measure(_rows([0.3] * 20, [1.3] * 19 + [float("nan")]), 0.25)
    assert nan["diverged"] and nan["unstable"] and not nan["collapsed"]
    low = stability.measure(_rows([0.0] * 20, [1.3] * 10 + [train.D_LOSS_FLOOR / 2] * 10), 0.25)
    assert low["collapsed"] and not low["diverged"]
    assert stability.measure(_rows([0.3] * 20), 0.25, stopped=True)["collapsed"]


def test_frechet_distance_responds_to_a_planted_shift_and_spread():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4000, 8))
    b = rng.standard_normal((4000, 8))
    same = frechet.frechet_distance(*frechet.gaussian(a), *frechet.gaussian(b))
    shifted = frechet.frechet_distance(*frechet.gaussian(a), *frechet.gaussian(b + 0.5))
    wider = frechet.frechet_distance(*frechet.gaussian(a), *frechet.gaussian(2 * b))
    assert same < 0.05
    assert shifted == pytest.approx(8 * 0.25 + same, abs=0.05)                  # |delta mu|^2 = 8 * 0.5^2
    assert wider == pytest.approx(8 * (1 + 4 - 2 * 2), abs=0.3)                 # tr(S1 + S2 - 2 sqrt(S1 S2))


def test_frechet_distance_of_a_generator_through_the_classifier(tmp_path):
    """fd_of_generator end to end on a tiny untrained G and classifier (the plumbing; values mean nothing here)."""
    rng = np.random.default_rng(0)
    io.write_dataset(tmp_path, "test", rng.integers(0, 256, (40, 28, 28, 1), dtype=np.uint8),
                     rng.integers(0, 10, 40).astype(np.int64))
    torch.manual_seed(0)
    G, _ = M.build_models(run_cfg("mnist_cond_dcgan"))
    out = frechet.fd_of_generator(G, "uniform", frechet.MnistClassifier(4).eval(), tmp_path, 20, 0, 10)
    assert out["n_generated"] == 20 and out["n_real"] == 40 and math.isfinite(out["fd"]) and out["fd"] >= 0


class _StandIn:
    """A small torch-fidelity feature extractor standing in for Inception (no download)."""

    name = "dcgan-repro-standin"

    @classmethod
    def register(cls) -> str:
        import torch_fidelity
        from torch_fidelity.feature_extractor_base import FeatureExtractorBase

        class Tiny(FeatureExtractorBase):
            def __init__(self, name, features_list, **kwargs):
                super().__init__(name, features_list)
                self.conv = nn.Conv2d(3, 8, 4, stride=4, bias=False)
                nn.init.normal_(self.conv.weight, 0, 0.1, generator=torch.Generator().manual_seed(0))

            @staticmethod
            def get_provided_features_list():
                return ("pool",)

            @staticmethod
            def get_default_feature_layer_for_metric(metric):
                return "pool"

            @staticmethod
            def can_be_compiled():
                return False

            @staticmethod
            def get_dummy_input_for_compile():
                return torch.zeros(1, 3, 64, 64, dtype=torch.uint8)

            def forward(self, x):
                h = self.conv(x.float() / 255)                                     # (N, 8, H/4, W/4)
                return (nn.functional.adaptive_avg_pool2d(h, 2).flatten(1).double(),)   # (N, 32)

        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        if cls.name not in FEATURE_EXTRACTORS_REGISTRY:       # once per process
            torch_fidelity.register_feature_extractor(cls.name, Tiny)
        return cls.name


def test_fid_plumbing_runs_offline_through_torch_fidelity_with_a_stand_in_network():
    name = _StandIn.register()
    rng = np.random.default_rng(0)
    a = rng.integers(0, 200, (120, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 200, (120, 64, 64, 3), dtype=np.uint8)
    same = fid.fid(a, b, extractor=name, batch_size=40)
    shifted = fid.fid(a, np.clip(b.astype(int) + 50, 0, 255).astype(np.uint8), extractor=name, batch_size=40)
    assert 0 <= same < shifted
    grey = rng.integers(0, 255, (50, 28, 28, 1), dtype=np.uint8)                 # grey images go in as RGB
    assert math.isfinite(fid.fid(grey, grey[::-1].copy(), extractor=name, batch_size=25))
    with pytest.raises(ValueError, match="uint8"):
        fid.fid(a.astype(np.float32), b, extractor=name)


def test_fid_weights_fail_clearly_offline_and_on_a_bad_checksum(tmp_path):
    missing = tmp_path / "fid" / "weights.pth"
    with pytest.raises(fid.FidWeightsUnavailable) as e:
        fid.ensure_weights(missing, url="http://127.0.0.1:9/weights.pth", timeout=5)
    msg = str(e.value)
    assert str(missing) in msg and "ablation.fid.weights" in msg and "offline" in msg and not missing.exists()
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not the weights")
    with pytest.raises(fid.FidWeightsUnavailable, match="does not start with 6726825d"):
        fid.ensure_weights(bad)
    digest = fid.verify(bad, prefix="")
    assert fid.ensure_weights(bad, prefix=digest[:8])["sha256"] == digest      # a file that matches is used as is


# --- outcome of a stopped run, table ------------------------------------------------------------------------


def test_a_run_the_health_check_stops_is_recorded_not_raised(tmp_path, monkeypatch):
    def diverging(run, name, data_dir, out_model, out_summary, checkpoint_dir, common, holdout):
        stats_path = Path(out_model).parent / "stats.jsonl"
        stats_path.parent.mkdir(parents=True, exist_ok=True)
        stats_path.write_text('{"step": 10, "loss_d": 1.0, "loss_g": 1.0, "d_fake": 0.4}\n'
                              '{"step": 20, "loss_d": NaN, "loss_g": 1.0, "d_fake": 0.4}\n')
        raise train.TrainingDiverged("non-finite loss")

    monkeypatch.setattr(train, "train_gan", diverging)
    out = tmp_path / "v" / "s0" / "train.json"
    (tmp_path / "v" / "s0").mkdir(parents=True)
    (tmp_path / "v" / "s0" / "model.pt").write_text("stale")
    rec = training.train_variant(run={"seed": 0}, name="x", variant="v", seed=0, change={"lr": 0.001},
                                 data_dir=tmp_path, out_json=out, checkpoint_dir=tmp_path / "ck", common={},
                                 holdout=None, tail=0.5)
    assert rec["status"] == "diverged" and rec["model"] is None and rec["claim"] == 6
    assert not (tmp_path / "v" / "s0" / "model.pt").exists()                   # nothing stale left to score


def _score(variant, seed, err, claim=None, status="finished", osc=0.01):
    return {"variant": variant, "seed": seed, "kind": "mnist", "status": status, "claim": claim,
            "change": {} if claim is None else {"x": 1}, "change_text": variant,
            "nn_test_error_pct": err if status == "finished" else None, "fd": 1.0, "epoch": 3, "epochs_trained": 4,
            "classifier_accuracy_on_samples_pct": 90.0, "train_time_s": 10.0,
            "stability": {"unstable": status != "finished", "osc_d_fake": osc, "osc_loss_d": osc, "osc_loss_g": osc},
            "_path": f"results/ablation/{variant}/s{seed}/score.json", "provenance": {"seed": seed}}


def test_table4_has_mean_std_per_seed_and_the_difference_with_its_interval(tmp_path):
    scores = [_score("baseline", s, e) for s, e in enumerate([2.0, 2.2, 2.1])]
    scores += [_score("no_batchnorm", s, e, claim=2) for s, e in enumerate([3.0, 3.4, 3.2])]
    scores += [_score("beta1_0_9", 0, 2.5, claim=7), _score("beta1_0_9", 1, None, claim=7, status="collapsed"),
               _score("beta1_0_9", 2, 2.7, claim=7)]
    df = table.build_frame(scores, baseline="baseline", level=0.95, preset="demo")
    err = df[(df["metric"].str.startswith("1-NN")) & (df["statistic"] == "mean")].set_index("variant")
    assert err.loc["no_batchnorm", "ours"] == pytest.approx(3.2) and err.loc["no_batchnorm", "n_scored"] == 3
    ref = stats.welch_interval([3.0, 3.4, 3.2], [2.0, 2.2, 2.1])
    assert err.loc["no_batchnorm", "difference"] == pytest.approx(1.1)
    assert err.loc["no_batchnorm", ["diff_ci_low", "diff_ci_high"]].tolist() == pytest.approx([ref["low"], ref["high"]])
    assert err.loc["beta1_0_9", "n_scored"] == 2 and "seed 1 collapsed" in err.loc["beta1_0_9", "note"]
    per_seed = df[(df["metric"].str.startswith("1-NN")) & (df["statistic"] == "seed")]
    assert len(per_seed) == 9 and set(per_seed["seed"].dropna()) == {0, 1, 2}
    unstable = df[(df["metric"].str.startswith("collapsed")) & (df["statistic"] == "mean")].set_index("variant")
    assert unstable.loc["beta1_0_9", "ours"] == pytest.approx(1 / 3)
    paths = {k: tmp_path / f"table4_ablations.{k}" for k in ("csv", "md", "tex", "html")}
    table.write_table(df, **paths, preset="demo", level=0.95)
    md = paths["md"].read_text()
    assert "Welch t-interval" in md and "no_batchnorm" in md and "2.00%, 2.20%, 2.10%" in md
    assert "\\begin{table}" in paths["tex"].read_text() and "<table" in paths["html"].read_text()
