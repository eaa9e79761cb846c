"""Variant switches: the paper's architecture guidelines and init (Sec. 3, 4), each one undone at a time.

A run config may carry ``variant: {switch: value, ...}`` (config.yaml ``runs.<name>.variant``, or set per variant by
the ablation study, ``ablation.variants``). :func:`models.build_models` hands such a run to :func:`build_models`
here; a run without ``variant`` (or with only baseline values) is built by ``models`` exactly as before, so the
baseline is the current model bit for bit. Switches and the claim each tests (docs/ABLATIONS.md):

==============  =======================  ===================================================================
switch          values (baseline first)  paper claim
==============  =======================  ===================================================================
resampling      strided, pooling         1. strided conv in D, fractional-strided conv in G (Sec. 3) instead
                                         of max-pooling (D) / nearest upsampling + stride-1 conv (G)
batchnorm       paper, none, all         2. BN in G and D (Sec. 3); 3. not on G's output and D's input layer
                                         ("all": BN there too, which the paper says caused "sample oscillation
                                         and model instability")
fc_hidden       paper, removed, added    4. no fully connected hidden layers (Sec. 3): ``removed`` takes out
                                         the authors' MNIST FC hidden layers (G's 1024-unit layer, D's
                                         1024-unit layer); ``added`` puts one 1024-unit FC hidden layer into
                                         the all-convolutional nets (before G's projection, after D's flatten)
g_activation    relu, lrelu, elu         5. ReLU in G (Sec. 3; output layer unchanged)
d_activation    lrelu, relu              5. LeakyReLU 0.2 in D instead of ReLU (Sec. 3)
init            normal, pytorch_default  8. weights N(0, 0.02) (Sec. 4) vs PyTorch's own default init
==============  =======================  ===================================================================

Claims 6 and 7 (Adam lr 0.0002, beta1 0.5; Sec. 4) are the run settings ``lr`` and ``beta1``: no switch.

Every other detail of a variant net is the baseline's: widths, kernels, no biases, BN eps and affine, y
conditioning, the order in which modules are created (so with every switch at its baseline value the nets here
are the ``models`` nets parameter for parameter; tests/test_ablation.py checks this and, per switch, that only
the intended modules differ). BN layers a switch adds (``batchnorm: all``) have a learned gain and bias (the
faces/LSUN code's BN), so G can still reach its pixel range; BN layers of G use batch statistics, as G's always do.

A switch that does not apply to a model is refused with a :class:`VariantError` naming the switch, the model and
what does apply (:func:`check_variant`), never silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import models
from .models import LRELU_SLOPE, _bn1d, _bn2d, _cond_maps, _conv, _deconv, _Net, _no_labels, _one_hot
from .variant_switches import BASELINE, active, check_variant

FC_HIDDEN_UNITS = 1024   # width of an added FC hidden layer: the authors' MNIST FC width (16 * 64)


# --- building blocks ------------------------------------------------------------------------------------------


def _act(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "lrelu": nn.LeakyReLU(LRELU_SLOPE), "elu": nn.ELU()}[name]


class _UpConv(nn.Module):
    """G's upsampling without a fractional-strided conv: nearest x2 upsampling, then a stride-1 conv with the
    deconvolution's kernel and widths (claim 1's alternative)."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))     # (N, C, 2H, 2W) -> (N, C', 2H, 2W)


class _ConvPool(nn.Module):
    """D's downsampling without a strided conv: a stride-1 conv with the same kernel and widths, then 2x2
    max-pooling (the "deterministic spatial pooling" Sec. 3 replaces)."""

    def __init__(self, c_in: int, c_out: int, k: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, stride=1, padding=k // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool2d(self.conv(x), 2)                                    # (N, C, H, W) -> (N, C', H/2, W/2)


def _up(c_in: int, c_out: int, k: int, stride: int, resampling: str) -> nn.Module:
    return _UpConv(c_in, c_out, k) if resampling == "pooling" and stride == 2 else _deconv(c_in, c_out, k, stride)


def _down(c_in: int, c_out: int, k: int, stride: int, resampling: str) -> nn.Module:
    return _ConvPool(c_in, c_out, k) if resampling == "pooling" and stride == 2 else _conv(c_in, c_out, k, stride)


def _maybe(module: nn.Module, keep: bool) -> nn.Module:
    return module if keep else nn.Identity()


# --- MNIST class-conditional DCGAN (models.CondDCGANGenerator / CondDCGANDiscriminator with switches) ----------


class VariantCondGenerator(_Net):
    """``models.CondDCGANGenerator`` with switches; the same attribute names for the same roles."""

    def __init__(self, *, nz: int, ngf: int, eps: float, recipe: str, sw: dict[str, str],
                 n_classes: int = models.N_MNIST_CLASSES) -> None:
        super().__init__(nz=nz, n_classes=n_classes, image_shape=(1, 28, 28), output_range="sigmoid",
                         model="mnist_cond_dcgan", recipe=recipe)
        ny, fc = n_classes, 16 * ngf
        bn, rs = sw["batchnorm"] != "none", sw["resampling"]
        self.ngf, self.hidden = ngf, sw["fc_hidden"] != "removed"
        if self.hidden:
            self.fc1 = nn.Linear(nz + ny, fc, bias=False)                           # (N, nz+10) -> (N, 1024)
            self.bn1 = _maybe(_bn1d(fc, eps, affine=False, batch_stats=True), bn)
        self.fc2 = nn.Linear((fc if self.hidden else nz) + ny, 2 * ngf * 7 * 7, bias=False)   # -> (N, 6272)
        self.bn2 = _maybe(_bn1d(2 * ngf * 7 * 7, eps, affine=False, batch_stats=True), bn)
        self.deconv1 = _up(2 * ngf + ny, ngf, 5, 2, rs)                             # -> (N, 64, 14, 14)
        self.bn3 = _maybe(_bn2d(ngf, eps, affine=False, batch_stats=True), bn)
        self.deconv2 = _up(ngf + ny, 1, 5, 2, rs)                                   # -> (N, 1, 28, 28)
        self.bn_out = _maybe(_bn2d(1, eps, batch_stats=True), sw["batchnorm"] == "all")   # claim 3
        self.act = _act(sw["g_activation"])

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        y1h = _one_hot(y, self.n_classes, z)                                        # (N, 10)
        h = z
        if self.hidden:
            h = self.act(self.bn1(self.fc1(torch.cat([z, y1h], 1))))                # (N, 1024)
        h = self.act(self.bn2(self.fc2(torch.cat([h, y1h], 1))))                    # (N, 6272)
        h = h.view(z.shape[0], 2 * self.ngf, 7, 7)                                  # (N, 128, 7, 7)
        h = self.act(self.bn3(self.deconv1(_cond_maps(h, y1h))))                    # (N, 64, 14, 14)
        return torch.sigmoid(self.bn_out(self.deconv2(_cond_maps(h, y1h))))        # (N, 1, 28, 28)


class VariantCondDiscriminator(_Net):
    """``models.CondDCGANDiscriminator`` with switches; the same attribute names for the same roles."""

    def __init__(self, *, nz: int, ndf: int, eps: float, recipe: str, sw: dict[str, str],
                 n_classes: int = models.N_MNIST_CLASSES) -> None:
        super().__init__(nz=nz, n_classes=n_classes, image_shape=(1, 28, 28), output_range="sigmoid",
                         model="mnist_cond_dcgan", recipe=recipe)
        ny, fc = n_classes, 16 * ndf
        bn, rs = sw["batchnorm"] != "none", sw["resampling"]
        self.hidden = sw["fc_hidden"] != "removed"
        self.conv1 = _down(1 + ny, ndf, 5, 2, rs)                                   # -> (N, 64, 14, 14)
        self.bn1 = _maybe(_bn2d(ndf, eps), sw["batchnorm"] == "all")                # claim 3: D's input layer
        self.conv2 = _down(ndf + ny, 2 * ndf, 5, 2, rs)                             # -> (N, 128, 7, 7)
        self.bn2 = _maybe(_bn2d(2 * ndf, eps, affine=False), bn)
        if self.hidden:
            self.fc3 = nn.Linear(2 * ndf * 7 * 7 + ny, fc, bias=False)              # (N, 6282) -> (N, 1024)
            self.bn3 = _maybe(_bn1d(fc, eps, affine=False), bn)
        self.out = nn.Linear((fc if self.hidden else 2 * ndf * 7 * 7) + ny, 1, bias=False)   # -> (N, 1)
        self.act = _act(sw["d_activation"])

    def _convs(self, x: Tensor, y1h: Tensor) -> tuple[Tensor, Tensor]:
        h1 = self.act(self.bn1(self.conv1(_cond_maps(x, y1h))))                    # (N, 64, 14, 14)
        h2 = self.act(self.bn2(self.conv2(_cond_maps(h1, y1h))))                   # (N, 128, 7, 7)
        return h1, h2

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        return list(self._convs(x, _one_hot(y, self.n_classes, x)))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        y1h = _one_hot(y, self.n_classes, x)
        _, h2 = self._convs(x, y1h)
        h = torch.cat([h2.flatten(1), y1h], 1)                                      # (N, 6272 + 10)
        if self.hidden:
            h = torch.cat([self.act(self.bn3(self.fc3(h))), y1h], 1)                # (N, 1024 + 10)
        return self.out(h).squeeze(1)                                               # (N,)


# --- unconditional conv nets (models.ProjectedGenerator / ConvDiscriminator with switches) -------------------


class VariantProjectedGenerator(_Net):
    """``models.ProjectedGenerator`` with switches (dcgan64 paper, imagenet32, svhn32)."""

    def __init__(self, *, nz: int, c0: int, widths: Sequence[int], strides: Sequence[int], kernel: int,
                 eps: float, image_shape: tuple[int, int, int], model: str, recipe: str,
                 sw: dict[str, str]) -> None:
        super().__init__(nz=nz, n_classes=0, image_shape=image_shape, output_range="tanh", model=model,
                         recipe=recipe)
        bn = sw["batchnorm"] != "none"
        self.c0 = c0
        self.hidden: nn.Module = nn.Identity()
        n_in = nz
        if sw["fc_hidden"] == "added":                                              # claim 4: z -> 1024 -> project
            self.hidden = nn.Sequential(nn.Linear(nz, FC_HIDDEN_UNITS, bias=False),
                                        _maybe(_bn1d(FC_HIDDEN_UNITS, eps, batch_stats=True), bn),
                                        _act(sw["g_activation"]))
            n_in = FC_HIDDEN_UNITS
        self.project = nn.Linear(n_in, c0 * 4 * 4, bias=False)                      # (N, nz) -> (N, c0*4*4)
        self.project_bn = _maybe(_bn1d(c0 * 4 * 4, eps, batch_stats=True), bn)
        self.project_act = _act(sw["g_activation"])
        layers: list[nn.Module] = []
        c_in, size = c0, 4
        for i, (c_out, s) in enumerate(zip(widths, strides)):
            size *= s
            layers.append(_up(c_in, c_out, kernel, s, sw["resampling"]))    # (N, c_in, h, w) -> (N, c_out, h*s, w*s)
            if i < len(widths) - 1:
                layers += [_maybe(_bn2d(c_out, eps, batch_stats=True), bn), _act(sw["g_activation"])]
            elif sw["batchnorm"] == "all":                                          # claim 3: BN on G's output
                layers.append(_bn2d(c_out, eps, batch_stats=True))
            c_in = c_out
        layers.append(nn.Tanh())
        self.main = nn.Sequential(*layers)
        assert (c_in, size, size) == image_shape, (c_in, size, image_shape)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        _no_labels(self, y)
        h = self.project_act(self.project_bn(self.project(self.hidden(z))))         # (N, c0*4*4)
        return self.main(h.view(z.shape[0], self.c0, 4, 4))                         # (N, C, H, W)


class VariantConvDiscriminator(_Net):
    """``models.ConvDiscriminator`` with switches (dcgan64 paper, imagenet32, svhn32)."""

    def __init__(self, *, widths: Sequence[int], strides: Sequence[int], kernel: int, eps: float,
                 image_shape: tuple[int, int, int], nz: int, model: str, recipe: str, sw: dict[str, str]) -> None:
        super().__init__(nz=nz, n_classes=0, image_shape=image_shape, output_range="tanh", model=model,
                         recipe=recipe)
        bn = sw["batchnorm"] != "none"
        blocks: list[nn.Module] = []
        c_in, size = image_shape[0], image_shape[1]
        for i, (c_out, s) in enumerate(zip(widths, strides)):
            size //= s
            block: list[nn.Module] = [_down(c_in, c_out, kernel, s, sw["resampling"])]
            if (i > 0 and bn) or sw["batchnorm"] == "all":                          # claim 3: BN on D's input
                block.append(_bn2d(c_out, eps))
            block.append(_act(sw["d_activation"]))
            blocks.append(nn.Sequential(*block))
            c_in = c_out
        self.convs = nn.ModuleList(blocks)
        n_flat = c_in * size * size
        self.hidden: nn.Module = nn.Identity()
        if sw["fc_hidden"] == "added":                                              # claim 4: flatten -> 1024 -> logit
            self.hidden = nn.Sequential(nn.Linear(n_flat, FC_HIDDEN_UNITS, bias=False),
                                        _maybe(_bn1d(FC_HIDDEN_UNITS, eps), bn), _act(sw["d_activation"]))
            n_flat = FC_HIDDEN_UNITS
        self.head = nn.Linear(n_flat, 1, bias=False)

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        _no_labels(self, y)
        out = []
        for block in self.convs:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.features(x, y)[-1]
        return self.head(self.hidden(h.flatten(1))).squeeze(1)                      # (N,)


# --- construction ---------------------------------------------------------------------------------------------


def build_models(run: dict[str, Any]) -> tuple[_Net, _Net]:
    """``(netG, netD)`` of a run with variant switches (``models.build_models`` calls this only when
    ``run["variant"]`` differs from the baseline); the same widths, kernels and init as the baseline nets."""
    check_variant(run)
    sw = {**BASELINE, **active(run)}
    model, recipe, nz, ngf, ndf = (run[k] for k in models.ARCH_KEYS)
    eps = models.PAPER_BN_EPS if recipe == "paper" else models.TORCH_BN_EPS
    common = dict(eps=eps, model=model, recipe=recipe, sw=sw)
    netG: _Net
    netD: _Net
    if model == "mnist_cond_dcgan":
        netG = VariantCondGenerator(nz=nz, ngf=ngf, eps=eps, recipe=recipe, sw=sw)
        netD = VariantCondDiscriminator(nz=nz, ndf=ndf, eps=eps, recipe=recipe, sw=sw)
    elif model in ("dcgan64", "imagenet32", "svhn32") and recipe == "paper":
        g, d = _conv_plan(model, ngf, ndf)
        netG = VariantProjectedGenerator(nz=nz, image_shape=g.pop("image_shape"), **g, **common)
        netD = VariantConvDiscriminator(nz=nz, image_shape=d.pop("image_shape"), **d, **common)
    else:  # mnist_cond_mlp, or pytorch_examples' dcgan64: only init applies (check_variant refused the rest)
        netG, netD = models.build_models({k: run[k] for k in models.ARCH_KEYS})
    if sw["init"] != "pytorch_default":
        models.init_weights(netG, recipe)
        models.init_weights(netD, recipe)
    elif not isinstance(netG, (VariantCondGenerator, VariantProjectedGenerator)):
        _reset_default_init(netG)
        _reset_default_init(netD)
    return netG, netD


def _reset_default_init(net: nn.Module) -> None:
    """Undo a recipe init: every layer back to PyTorch's construction-time default (``reset_parameters``)."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d, nn.modules.batchnorm._BatchNorm)):
            m.reset_parameters()


def _conv_plan(model: str, ngf: int, ndf: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The widths, strides and kernels ``models.build_models`` gives each unconditional conv net (same numbers)."""
    if model == "dcgan64":
        return (dict(c0=ngf * 8, widths=[ngf * 4, ngf * 2, ngf, 3], strides=[2, 2, 2, 2], kernel=5,
                     image_shape=(3, 64, 64)),
                dict(widths=[ndf, ndf * 2, ndf * 4, ndf * 8], strides=[2, 2, 2, 2], kernel=5,
                     image_shape=(3, 64, 64)))
    if model == "imagenet32":
        return (dict(c0=ngf * 4, widths=[ngf * 4, ngf * 2, ngf * 2, ngf, ngf, 3], strides=[2, 1, 2, 1, 2, 1],
                     kernel=3, image_shape=(3, 32, 32)),
                dict(widths=[ndf, ndf, ndf * 2, ndf * 2, ndf * 4, ndf * 4], strides=[1, 2, 1, 2, 1, 2], kernel=3,
                     image_shape=(3, 32, 32)))
    return (dict(c0=ngf * 4, widths=[ngf * 2, ngf, 3], strides=[2, 2, 2], kernel=5, image_shape=(3, 32, 32)),
            dict(widths=[ndf, ndf * 2, ndf * 4], strides=[2, 2, 2], kernel=5, image_shape=(3, 32, 32)))
