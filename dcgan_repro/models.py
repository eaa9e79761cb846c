"""DCGAN generators and discriminators of Radford, Metz & Chintala (2015), as the authors' code builds them.

Architectures (docs/REFERENCE.md Sec. 3; paper Sec. 3 and Fig. 1), selected by ``run["model"]``:

- ``dcgan64``: faces / LSUN, Newmu/dcgan_code ``faces/train_uncond_dcgan.py``: 5x5 kernels, stride 2, padding 2;
  G projects z with a bias-free Linear, batch-normalises all C*4*4 units (BatchNorm1d), then 4 deconvolutions
  to 3x64x64 tanh. With ``recipe: pytorch_examples`` it is instead the pytorch/examples ``dcgan/main.py`` net
  (4x4 kernels, stride 2, padding 1, G starts with a ConvTranspose from 1x1, D ends with a 4x4 conv).
- ``imagenet32``: the released ImageNet-1k net (``imagenet_gan_pretrain_128f_relu_lrelu_7l_3x3_256z``), 3x3
  kernels, strides 2,1,2,1,..., the CIFAR-10 feature extractor of Sec. 5.1 (28672-d features at ndf=128).
- ``svhn32``: the released SVHN net (``svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb``), 5x5 stride 2,
  D 64-128-256 at ndf=64 (7168-d features, Sec. 5.2).
- ``mnist_cond_dcgan``: ``mnist/train_cond_dcgan.py``: class-conditional, one-hot y joined to z, to every
  fully connected input and as 10 constant maps before every (de)convolution; BN without gain/bias; sigmoid.
- ``mnist_cond_mlp``: the permutation-invariant GAN baseline of Table 3 (no code released), see
  :class:`CondMLPGenerator`.

What the authors' code does that the paper leaves out, and this module copies (docs/REFERENCE.md Sec. 2): no bias in
any layer; batchnorm eps 1e-8; BN gains N(1, 0.02); weights N(0, 0.02); LeakyReLU slope 0.2; **G's batchnorm
always uses the statistics of the batch being generated** (the Theano code has no running averages, and samples
are drawn with batch statistics). Here every BN layer in G is built with ``track_running_stats=False``, so
``netG(z)`` behaves the same in train and eval mode and never has hidden state; D's BN layers keep PyTorch
running statistics (used only when D is put in eval mode, e.g. for features; training uses batch statistics).
``recipe: pytorch_examples`` switches to BN eps 1e-5 and the pytorch/examples init (conv weights N(0, 0.02),
BN gains N(1, 0.02), biases 0; Linear layers keep PyTorch's default init, as pytorch/examples has none).

Weight layouts match the released Theano arrays up to the documented transforms: Linear ``w.T``, conv and deconv
kernels ``torch.flip(w, [2, 3])``; deconv weights are (C_in, C_out, k, k) like ConvTranspose2d.

Interface (docs/CONTRACTS.md "models API"): ``netG(z, y=None)`` -> images (N, C, H, W); ``netD(x, y=None)`` ->
logits (N,); ``netD.features(x, y=None)`` -> post-activation outputs of every conv layer; attributes ``nz``,
``n_classes``, ``image_shape``, ``output_range`` on both nets.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import pickle
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import io

log = logging.getLogger(__name__)

MODELS = ("dcgan64", "imagenet32", "svhn32", "mnist_cond_dcgan", "mnist_cond_mlp")
RECIPES = ("paper", "pytorch_examples")
Z_DISTS = ("uniform", "normal")
OUTPUT_RANGES = ("tanh", "sigmoid")
# Run-config keys that fix the architecture: a checkpoint is only loadable under a config that agrees on these.
ARCH_KEYS = ("model", "recipe", "nz", "ngf", "ndf")
CHECKPOINT_KEYS = ("netG", "netD", "name", "run", "epoch", "step", "snapshots", "data_meta", "provenance")

LRELU_SLOPE = 0.2       # paper Sec. 3 / code lrelu
PAPER_BN_EPS = 1e-8     # code: lib/ops.py batchnorm e=1e-8
TORCH_BN_EPS = 1e-5     # pytorch/examples (PyTorch default)
N_MNIST_CLASSES = 10


# --- small building blocks ---------------------------------------------------------------------------------


def _bn1d(n: int, eps: float, *, affine: bool = True, batch_stats: bool = False) -> nn.BatchNorm1d:
    """BatchNorm over features; ``batch_stats=True`` = always the current batch's statistics (authors' G)."""
    return nn.BatchNorm1d(n, eps=eps, affine=affine, track_running_stats=not batch_stats)


def _bn2d(n: int, eps: float, *, affine: bool = True, batch_stats: bool = False) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=eps, affine=affine, track_running_stats=not batch_stats)


def _deconv(c_in: int, c_out: int, k: int, stride: int) -> nn.ConvTranspose2d:
    """Theano ``deconv(..., subsample=(s, s), border_mode=(k//2, k//2))``: doubles H, W for stride 2, keeps them
    for stride 1 (``output_padding`` restores the even size that Theano's gradient-of-conv produces)."""
    return nn.ConvTranspose2d(c_in, c_out, k, stride=stride, padding=k // 2,
                              output_padding=stride - 1, bias=False)


def _conv(c_in: int, c_out: int, k: int, stride: int) -> nn.Conv2d:
    """Theano ``dnn_conv(..., subsample=(s, s), border_mode=(k//2, k//2))``: halves H, W for stride 2."""
    return nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False)


def _one_hot(y: Tensor | None, n_classes: int, like: Tensor) -> Tensor:
    """int64 labels (N,) -> one-hot (N, n_classes) in the dtype/device of ``like``; clear error on bad labels."""
    if y is None:
        raise ValueError(f"this is a class-conditional net ({n_classes} classes): pass y, int64 labels of shape (N,)")
    y = torch.as_tensor(y, device=like.device)
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    if y.shape != (like.shape[0],):
        raise ValueError(f"y must have shape ({like.shape[0]},) to match the batch, got {tuple(y.shape)}")
    return F.one_hot(y.long(), n_classes).to(like.dtype)  # (N, n_classes)


def _cond_maps(h: Tensor, y1h: Tensor) -> Tensor:
    """Theano ``conv_cond_concat``: append the one-hot y as constant feature maps. (N,C,H,W) -> (N,C+ny,H,W).

    The result keeps ``h``'s memory format: a channels_last ``h`` is joined along the last axis of its NHWC view,
    so the next convolution gets channels_last input without a conversion copy (same values)."""
    n, _, hh, ww = h.shape
    if h.is_contiguous(memory_format=torch.channels_last) and not h.is_contiguous():
        ymaps = y1h[:, None, None, :].expand(n, hh, ww, y1h.shape[1]).to(h.dtype)          # (N, H, W, ny)
        return torch.cat([h.permute(0, 2, 3, 1), ymaps], dim=3).permute(0, 3, 1, 2)      # NHWC cat -> NCHW view
    return torch.cat([h, y1h[:, :, None, None].expand(n, y1h.shape[1], hh, ww).to(h.dtype)], dim=1)


def _no_labels(net: nn.Module, y: Tensor | None) -> None:
    if y is not None:
        raise ValueError(f"{type(net).__name__} is unconditional (n_classes = 0): call it without y")


class _Net(nn.Module):
    """Attributes every net carries (CONTRACTS: nz, n_classes, image_shape, output_range)."""

    def __init__(self, *, nz: int, n_classes: int, image_shape: tuple[int, int, int], output_range: str,
                 model: str, recipe: str) -> None:
        super().__init__()
        self.nz = nz
        self.n_classes = n_classes
        self.image_shape = image_shape
        self.output_range = output_range
        self.model = model
        self.recipe = recipe


# --- unconditional convolutional nets (dcgan64 paper, imagenet32, svhn32) ----------------------------------


class ProjectedGenerator(_Net):
    """G of the authors' code: z -> Linear (no bias) -> BN1d over all C0*4*4 units -> ReLU -> (C0, 4, 4)
    -> deconvolutions (BN + ReLU after each but the last) -> tanh.

    ``widths`` lists output channels of each deconvolution, the last one being the image channels, ``strides``
    their strides. Matches faces/train_uncond_dcgan.py ``gen`` (dcgan64), the released ImageNet and SVHN G.
    """

    def __init__(self, *, nz: int, c0: int, widths: Sequence[int], strides: Sequence[int], kernel: int,
                 eps: float, image_shape: tuple[int, int, int], model: str, recipe: str) -> None:
        super().__init__(nz=nz, n_classes=0, image_shape=image_shape, output_range="tanh", model=model,
                         recipe=recipe)
        self.c0 = c0
        self.project = nn.Linear(nz, c0 * 4 * 4, bias=False)          # (N, nz) -> (N, c0*4*4)
        self.project_bn = _bn1d(c0 * 4 * 4, eps, batch_stats=True)    # per unit, before the reshape (code)
        layers: list[nn.Module] = []
        c_in, size = c0, 4
        for i, (c_out, s) in enumerate(zip(widths, strides)):
            size *= s
            layers.append(_deconv(c_in, c_out, kernel, s))            # (N, c_in, h, w) -> (N, c_out, h*s, w*s)
            if i < len(widths) - 1:
                layers += [_bn2d(c_out, eps, batch_stats=True), nn.ReLU(inplace=True)]
            c_in = c_out
        layers.append(nn.Tanh())                                      # (N, C, H, W) in [-1, 1]
        self.main = nn.Sequential(*layers)
        assert (c_in, size, size) == image_shape, (c_in, size, image_shape)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        _no_labels(self, y)
        h = F.relu(self.project_bn(self.project(z)))                  # (N, c0*4*4)
        h = h.view(z.shape[0], self.c0, 4, 4)                         # (N, c0, 4, 4)
        return self.main(h)                                           # (N, C, H, W)


class ConvDiscriminator(_Net):
    """D of the authors' code: convolutions (no BN on the first), LeakyReLU 0.2, flatten, Linear -> logit.

    ``widths``/``strides`` per conv layer. :meth:`features` returns every conv layer's post-activation output
    (Sec. 5.1; svhn_semisup_analysis.py). The logit is returned without the sigmoid (BCE on logits).
    """

    def __init__(self, *, widths: Sequence[int], strides: Sequence[int], kernel: int, eps: float,
                 image_shape: tuple[int, int, int], nz: int, model: str, recipe: str) -> None:
        super().__init__(nz=nz, n_classes=0, image_shape=image_shape, output_range="tanh", model=model,
                         recipe=recipe)
        blocks: list[nn.Module] = []
        c_in, size = image_shape[0], image_shape[1]
        for i, (c_out, s) in enumerate(zip(widths, strides)):
            size //= s
            block: list[nn.Module] = [_conv(c_in, c_out, kernel, s)]  # (N, c_in, h, w) -> (N, c_out, h/s, w/s)
            if i > 0:
                block.append(_bn2d(c_out, eps))                       # no BN on D's input layer (Sec. 3)
            block.append(nn.LeakyReLU(LRELU_SLOPE, inplace=True))
            blocks.append(nn.Sequential(*block))
            c_in = c_out
        self.convs = nn.ModuleList(blocks)
        self.head = nn.Linear(c_in * size * size, 1, bias=False)     # (N, C*h*w) -> (N, 1)

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        _no_labels(self, y)
        out = []
        for block in self.convs:
            x = block(x)                                              # (N, c_out, h, w)
            out.append(x)
        return out

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.features(x, y)[-1]                                   # (N, C, 4, 4)
        return self.head(h.flatten(1)).squeeze(1)                     # (N, C*16) -> (N,)


# --- pytorch/examples dcgan/main.py (recipe pytorch_examples, model dcgan64) -------------------------------


class ExamplesGenerator(_Net):
    """pytorch/examples dcgan/main.py ``Generator``: 4x4 kernels, stride 2, padding 1, from z as (nz, 1, 1)."""

    def __init__(self, *, nz: int, ngf: int, nc: int = 3, eps: float = TORCH_BN_EPS) -> None:
        super().__init__(nz=nz, n_classes=0, image_shape=(nc, 64, 64), output_range="tanh", model="dcgan64",
                         recipe="pytorch_examples")
        bn = lambda c: _bn2d(c, eps, batch_stats=True)  # noqa: E731  (pytorch/examples samples in train mode)
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), bn(ngf * 8), nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), bn(ngf * 4), nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), bn(ngf * 2), nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), bn(ngf), nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
            # state size. (nc) x 64 x 64
        )

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        _no_labels(self, y)
        return self.main(z.view(z.shape[0], self.nz, 1, 1))          # (N, nz, 1, 1) -> (N, 3, 64, 64)


class ExamplesDiscriminator(_Net):
    """pytorch/examples dcgan/main.py ``Discriminator`` with the final sigmoid left to the loss (logits)."""

    def __init__(self, *, ndf: int, nz: int, nc: int = 3, eps: float = TORCH_BN_EPS) -> None:
        super().__init__(nz=nz, n_classes=0, image_shape=(nc, 64, 64), output_range="tanh", model="dcgan64",
                         recipe="pytorch_examples")
        lrelu = lambda: nn.LeakyReLU(LRELU_SLOPE, inplace=True)  # noqa: E731
        self.convs = nn.ModuleList([
            nn.Sequential(nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), lrelu()),                 # (ndf) x 32 x 32
            nn.Sequential(nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), _bn2d(ndf * 2, eps), lrelu()),
            # state size. (ndf*2) x 16 x 16
            nn.Sequential(nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), _bn2d(ndf * 4, eps), lrelu()),
            # state size. (ndf*4) x 8 x 8
            nn.Sequential(nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), _bn2d(ndf * 8, eps), lrelu()),
            # state size. (ndf*8) x 4 x 4
        ])
        self.head = nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False)      # (N, ndf*8, 4, 4) -> (N, 1, 1, 1)

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        """The four hidden conv layers (the 4x4 output conv is the logit, not a feature layer)."""
        _no_labels(self, y)
        out = []
        for block in self.convs:
            x = block(x)
            out.append(x)
        return out

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.head(self.features(x, y)[-1]).view(-1)            # (N, 1, 1, 1) -> (N,)


# --- MNIST, class-conditional (Sec. 5.3, Table 3) ----------------------------------------------------------


class CondDCGANGenerator(_Net):
    """mnist/train_cond_dcgan.py ``gen``: [z, y] -> FC 1024 -> BN -> ReLU -> [., y] -> FC 2ngf*7*7 -> BN -> ReLU
    -> (2ngf, 7, 7) -> [., y maps] -> deconv -> (ngf, 14, 14) -> BN -> ReLU -> [., y maps] -> deconv -> sigmoid.

    BN without gain and bias (``affine=False``, as the code's ``batchnorm(X)`` with no g, b). Widths: ngf=64 gives
    the code's 1024 FC units, 128x7x7 and 64x14x14; all scale with ngf/64.
    """

    def __init__(self, *, nz: int, ngf: int, eps: float, recipe: str, n_classes: int = N_MNIST_CLASSES) -> None:
        super().__init__(nz=nz, n_classes=n_classes, image_shape=(1, 28, 28), output_range="sigmoid",
                         model="mnist_cond_dcgan", recipe=recipe)
        ny, fc = n_classes, 16 * ngf                                  # fc = 1024 at ngf = 64 (code: ngfc)
        self.ngf = ngf
        self.fc1 = nn.Linear(nz + ny, fc, bias=False)                 # (N, nz+10) -> (N, 1024)
        self.bn1 = _bn1d(fc, eps, affine=False, batch_stats=True)
        self.fc2 = nn.Linear(fc + ny, 2 * ngf * 7 * 7, bias=False)    # (N, 1034) -> (N, 6272)
        self.bn2 = _bn1d(2 * ngf * 7 * 7, eps, affine=False, batch_stats=True)
        self.deconv1 = _deconv(2 * ngf + ny, ngf, 5, 2)               # (N, 138, 7, 7) -> (N, 64, 14, 14)
        self.bn3 = _bn2d(ngf, eps, affine=False, batch_stats=True)
        self.deconv2 = _deconv(ngf + ny, 1, 5, 2)                     # (N, 74, 14, 14) -> (N, 1, 28, 28)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        y1h = _one_hot(y, self.n_classes, z)                          # (N, 10)
        h = F.relu(self.bn1(self.fc1(torch.cat([z, y1h], 1))))        # (N, 1024)
        h = F.relu(self.bn2(self.fc2(torch.cat([h, y1h], 1))))        # (N, 6272)
        h = h.view(z.shape[0], 2 * self.ngf, 7, 7)                    # (N, 128, 7, 7)
        h = F.relu(self.bn3(self.deconv1(_cond_maps(h, y1h))))        # (N, 64, 14, 14)
        return torch.sigmoid(self.deconv2(_cond_maps(h, y1h)))        # (N, 1, 28, 28) in [0, 1]


class CondDCGANDiscriminator(_Net):
    """mnist/train_cond_dcgan.py ``discrim``: [x, y maps] -> conv (ndf, 14, 14) -> LReLU -> [., y maps] -> conv
    (2ndf, 7, 7) -> BN -> LReLU -> flatten -> [., y] -> FC 1024 -> BN -> LReLU -> [., y] -> FC 1 (logit)."""

    def __init__(self, *, nz: int, ndf: int, eps: float, recipe: str, n_classes: int = N_MNIST_CLASSES) -> None:
        super().__init__(nz=nz, n_classes=n_classes, image_shape=(1, 28, 28), output_range="sigmoid",
                         model="mnist_cond_dcgan", recipe=recipe)
        ny, fc = n_classes, 16 * ndf                                  # fc = 1024 at ndf = 64 (code: ndfc)
        self.conv1 = _conv(1 + ny, ndf, 5, 2)                         # (N, 11, 28, 28) -> (N, 64, 14, 14)
        self.conv2 = _conv(ndf + ny, 2 * ndf, 5, 2)                   # (N, 74, 14, 14) -> (N, 128, 7, 7)
        self.bn2 = _bn2d(2 * ndf, eps, affine=False)
        self.fc3 = nn.Linear(2 * ndf * 7 * 7 + ny, fc, bias=False)    # (N, 6282) -> (N, 1024)
        self.bn3 = _bn1d(fc, eps, affine=False)
        self.out = nn.Linear(fc + ny, 1, bias=False)                  # (N, 1034) -> (N, 1)

    def _convs(self, x: Tensor, y1h: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.leaky_relu(self.conv1(_cond_maps(x, y1h)), LRELU_SLOPE)             # (N, 64, 14, 14)
        h2 = F.leaky_relu(self.bn2(self.conv2(_cond_maps(h1, y1h))), LRELU_SLOPE)  # (N, 128, 7, 7)
        return h1, h2

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        return list(self._convs(x, _one_hot(y, self.n_classes, x)))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        y1h = _one_hot(y, self.n_classes, x)
        _, h2 = self._convs(x, y1h)
        h = torch.cat([h2.flatten(1), y1h], 1)                        # (N, 6272 + 10)
        h = F.leaky_relu(self.bn3(self.fc3(h)), LRELU_SLOPE)          # (N, 1024)
        return self.out(torch.cat([h, y1h], 1)).squeeze(1)            # (N, 1034) -> (N,)


class CondMLPGenerator(_Net):
    """Permutation-invariant GAN baseline of Table 3 (no code released; our choice, documented here).

    The paper's sample sheet for this baseline has the DCGAN's 10 classes x 20 layout, so it was
    class-conditional. We keep everything equal to ``mnist_cond_dcgan`` except the convolutions, so Table 3
    compares exactly "convolutional vs fully connected": y joined to z and to every layer's input (the authors'
    conditioning), BN without gain/bias, ReLU, sigmoid output, no biases, the same optimiser settings.
    Hidden width 1200 (Goodfellow et al. 2014's MNIST generator width, also Mirza & Osindero's conditional GAN),
    scaled by ngf/64: G: [z, y] -> 1200 -> BN -> ReLU -> [., y] -> 1200 -> BN -> ReLU -> [., y] -> 784 sigmoid.
    """

    def __init__(self, *, nz: int, ngf: int, eps: float, recipe: str, n_classes: int = N_MNIST_CLASSES) -> None:
        super().__init__(nz=nz, n_classes=n_classes, image_shape=(1, 28, 28), output_range="sigmoid",
                         model="mnist_cond_mlp", recipe=recipe)
        ny, w = n_classes, mlp_width(ngf)
        self.fc1 = nn.Linear(nz + ny, w, bias=False)                  # (N, nz+10) -> (N, 1200)
        self.bn1 = _bn1d(w, eps, affine=False, batch_stats=True)
        self.fc2 = nn.Linear(w + ny, w, bias=False)                   # (N, 1210) -> (N, 1200)
        self.bn2 = _bn1d(w, eps, affine=False, batch_stats=True)
        self.out = nn.Linear(w + ny, 28 * 28, bias=False)             # (N, 1210) -> (N, 784)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        y1h = _one_hot(y, self.n_classes, z)
        h = F.relu(self.bn1(self.fc1(torch.cat([z, y1h], 1))))        # (N, 1200)
        h = F.relu(self.bn2(self.fc2(torch.cat([h, y1h], 1))))        # (N, 1200)
        x = torch.sigmoid(self.out(torch.cat([h, y1h], 1)))           # (N, 784)
        return x.view(z.shape[0], 1, 28, 28)                          # (N, 1, 28, 28)


class CondMLPDiscriminator(_Net):
    """Permutation-invariant baseline D: [x (784), y] -> 1200 -> LReLU -> [., y] -> 1200 -> BN -> LReLU -> [., y]
    -> 1 (logit); widths scaled by ndf/64.

    The paper's own rules applied to fully connected layers: BN everywhere except D's input layer (BN without
    gain/bias, as in the MNIST code), LeakyReLU 0.2, y joined to every layer's input, exactly like the fully
    connected part of ``mnist_cond_dcgan``'s D. Measured on real MNIST (12,800 images, 800 steps, widths 1200):
    this D gives class-conditional digits, while the original GAN's recipe (dropout 0.5, no BN; Goodfellow et al.
    2014) gave faint speckle that mostly ignored y, and no BN and no dropout collapsed G to one image. Pixels are
    flattened, so the net is invariant to a fixed pixel permutation. :meth:`features` returns the two hidden
    layers (there are no conv layers).
    """

    def __init__(self, *, nz: int, ndf: int, eps: float, recipe: str, n_classes: int = N_MNIST_CLASSES) -> None:
        super().__init__(nz=nz, n_classes=n_classes, image_shape=(1, 28, 28), output_range="sigmoid",
                         model="mnist_cond_mlp", recipe=recipe)
        ny, w = n_classes, mlp_width(ndf)
        self.fc1 = nn.Linear(28 * 28 + ny, w, bias=False)             # (N, 794) -> (N, 1200)
        self.fc2 = nn.Linear(w + ny, w, bias=False)                   # (N, 1210) -> (N, 1200)
        self.bn2 = _bn1d(w, eps, affine=False)
        self.out = nn.Linear(w + ny, 1, bias=False)                   # (N, 1210) -> (N, 1)

    def _hidden(self, x: Tensor, y1h: Tensor) -> tuple[Tensor, Tensor]:
        h1 = F.leaky_relu(self.fc1(torch.cat([x.flatten(1), y1h], 1)), LRELU_SLOPE)            # (N, 1200)
        h2 = F.leaky_relu(self.bn2(self.fc2(torch.cat([h1, y1h], 1))), LRELU_SLOPE)            # (N, 1200)
        return h1, h2

    def features(self, x: Tensor, y: Tensor | None = None) -> list[Tensor]:
        return list(self._hidden(x, _one_hot(y, self.n_classes, x)))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        y1h = _one_hot(y, self.n_classes, x)
        _, h2 = self._hidden(x, y1h)
        return self.out(torch.cat([h2, y1h], 1)).squeeze(1)           # (N,)


def mlp_width(base: int) -> int:
    """Hidden width of the MLP baseline: 1200 at ngf/ndf = 64, scaled linearly."""
    return max(1, round(1200 * base / 64))


# --- construction and init ---------------------------------------------------------------------------------


def _check_run(run: dict[str, Any]) -> None:
    missing = [k for k in ARCH_KEYS if k not in run]
    if missing:
        raise KeyError(f"run config lacks {missing}; it needs {list(ARCH_KEYS)} (config.yaml runs.<name>)")
    if run["model"] not in MODELS:
        raise ValueError(f"run config 'model': {run['model']!r} is not allowed; allowed values: {', '.join(MODELS)}")
    if run["recipe"] not in RECIPES:
        raise ValueError(f"run config 'recipe': {run['recipe']!r} is not allowed; allowed values: "
                         f"{', '.join(RECIPES)}")
    for k in ("nz", "ngf", "ndf"):
        if not isinstance(run[k], int) or run[k] < 1:
            raise ValueError(f"run config {k!r} must be a positive integer, got {run[k]!r}")


def build_models(run: dict[str, Any]) -> tuple[_Net, _Net]:
    """``(netG, netD)`` for a run config (config.yaml ``runs.<name>``: model, recipe, nz, ngf, ndf), initialised
    with the recipe's init from torch's global RNG (seed it first: :func:`dcgan_repro.runtime.seed_everything`).
    """
    _check_run(run)
    if run.get("variant") is not None:   # ablation switches (Sec. 3-4): dcgan_repro/model_variants.py
        from . import model_variants, variant_switches

        if variant_switches.check_variant(run):   # any switch off its baseline; else the code below, unchanged
            return model_variants.build_models(run)
    model, recipe, nz, ngf, ndf = (run[k] for k in ARCH_KEYS)
    eps = PAPER_BN_EPS if recipe == "paper" else TORCH_BN_EPS
    common = dict(eps=eps, model=model, recipe=recipe)
    netG: _Net
    netD: _Net
    if model == "dcgan64" and recipe == "pytorch_examples":
        netG, netD = ExamplesGenerator(nz=nz, ngf=ngf, eps=eps), ExamplesDiscriminator(ndf=ndf, nz=nz, eps=eps)
    elif model == "dcgan64":
        # G: (ngf*8)x4x4 -> (ngf*4)x8x8 -> (ngf*2)x16x16 -> ngf x32x32 -> 3x64x64 (1024 channels at ngf=128)
        netG = ProjectedGenerator(nz=nz, c0=ngf * 8, widths=[ngf * 4, ngf * 2, ngf, 3], strides=[2, 2, 2, 2],
                                  kernel=5, image_shape=(3, 64, 64), **common)
        # D: 3x64x64 -> ndf x32x32 -> (ndf*2)x16x16 -> (ndf*4)x8x8 -> (ndf*8)x4x4 -> Linear(ndf*8*16 -> 1)
        netD = ConvDiscriminator(widths=[ndf, ndf * 2, ndf * 4, ndf * 8], strides=[2, 2, 2, 2], kernel=5,
                                 image_shape=(3, 64, 64), nz=nz, **common)
    elif model == "imagenet32":
        # G (ngf=128): Linear nz->8192, (512)x4x4 -> 512@8 (s2) -> 256@8 -> 256@16 (s2) -> 128@16 -> 128@32 (s2)
        #   -> 3@32 (s1) tanh; widths scale with ngf/128
        g = [ngf * 4, ngf * 2, ngf * 2, ngf, ngf, 3]
        netG = ProjectedGenerator(nz=nz, c0=ngf * 4, widths=g, strides=[2, 1, 2, 1, 2, 1], kernel=3,
                                  image_shape=(3, 32, 32), **common)
        # D (ndf=128): 128@32 (s1) -> 128@16 -> 256@16 -> 256@8 -> 512@8 -> 512@4 -> Linear 8192 -> 1
        d = [ndf, ndf, ndf * 2, ndf * 2, ndf * 4, ndf * 4]
        netD = ConvDiscriminator(widths=d, strides=[1, 2, 1, 2, 1, 2], kernel=3, image_shape=(3, 32, 32),
                                 nz=nz, **common)
    elif model == "svhn32":
        # G (ngf=64): Linear nz->4096, (256)x4x4 -> 128@8 -> 64@16 -> 3@32 tanh
        netG = ProjectedGenerator(nz=nz, c0=ngf * 4, widths=[ngf * 2, ngf, 3], strides=[2, 2, 2], kernel=5,
                                  image_shape=(3, 32, 32), **common)
        # D (ndf=64): 64@16 -> 128@8 -> 256@4 -> Linear 4096 -> 1
        netD = ConvDiscriminator(widths=[ndf, ndf * 2, ndf * 4], strides=[2, 2, 2], kernel=5,
                                 image_shape=(3, 32, 32), nz=nz, **common)
    elif model == "mnist_cond_dcgan":
        netG = CondDCGANGenerator(nz=nz, ngf=ngf, eps=eps, recipe=recipe)
        netD = CondDCGANDiscriminator(nz=nz, ndf=ndf, eps=eps, recipe=recipe)
    else:  # mnist_cond_mlp (validated above)
        netG = CondMLPGenerator(nz=nz, ngf=ngf, eps=eps, recipe=recipe)
        netD = CondMLPDiscriminator(nz=nz, ndf=ndf, eps=eps, recipe=recipe)
    init_weights(netG, recipe)
    init_weights(netD, recipe)
    return netG, netD


def init_weights(net: nn.Module, recipe: str) -> None:
    """Initialise by module type (isinstance, never class-name strings).

    ``paper`` (code: ``Normal(scale=0.02)`` for every weight, ``Normal(loc=1., scale=0.02)`` for BN gains):
    conv, deconv and Linear weights N(0, 0.02); BN gains N(1, 0.02), BN biases 0.
    ``pytorch_examples`` (dcgan/main.py ``weights_init``): the same for conv and BN; Linear keeps PyTorch's
    default init, which pytorch/examples never overrides.
    """
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) or (isinstance(m, nn.Linear) and recipe == "paper"):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


# --- noise, pixel ranges, sampling -------------------------------------------------------------------------


def z_dist(run: dict[str, Any]) -> str:
    """The noise a run's G is trained and sampled with: paper U[-1, 1] (Sec. 4); ``svhn32`` normal (the released
    folder name says ``gaussian``); ``pytorch_examples`` N(0, 1) (dcgan/main.py ``torch.randn``)."""
    if run.get("recipe") == "pytorch_examples" or run.get("model") == "svhn32":
        return "normal"
    return "uniform"


def sample_z(n: int, nz: int, dist: str, generator: torch.Generator | None = None,
             device: str | torch.device = "cpu") -> Tensor:
    """(n, nz) float32 noise: ``uniform`` = U[-1, 1] (code ``np_rng.uniform(-1., 1.)``), ``normal`` = N(0, 1).

    Drawn on the CPU (``generator`` must be a CPU generator) and then moved, so a seed gives the same z on
    every device.
    """
    if dist == "uniform":
        z = torch.rand(n, nz, generator=generator) * 2 - 1
    elif dist == "normal":
        z = torch.randn(n, nz, generator=generator)
    else:
        raise ValueError(f"z distribution {dist!r} is not allowed; allowed values: {', '.join(Z_DISTS)}")
    return z.to(device)


def _check_range(output_range: str) -> None:
    if output_range not in OUTPUT_RANGES:
        raise ValueError(f"output_range {output_range!r} is not allowed; allowed values: {', '.join(OUTPUT_RANGES)}")


def to_model_input(x_uint8_nhwc: np.ndarray | Tensor, output_range: str) -> Tensor:
    """uint8 images (N, H, W, C) -> float32 (N, C, H, W) in the model's range.

    ``tanh``: x / 127.5 - 1 (faces code ``transform``); ``sigmoid``: x / 255 (MNIST code). A tensor input stays
    on its device (so a uint8 batch can be moved to the GPU first, 4x less traffic).
    """
    _check_range(output_range)
    if isinstance(x_uint8_nhwc, np.ndarray):
        x = torch.from_numpy(np.array(x_uint8_nhwc, copy=True))      # copy: memmaps are read-only
    else:
        x = x_uint8_nhwc
    if x.dtype != torch.uint8 or x.dim() != 4:
        raise ValueError(f"expected uint8 images N x H x W x C, got {x.dtype} {tuple(x.shape)}")
    x = x.permute(0, 3, 1, 2).float()                                 # (N, H, W, C) -> (N, C, H, W)
    x = x / 127.5 - 1.0 if output_range == "tanh" else x / 255.0
    return x.contiguous()


def to_uint8(images: Tensor, output_range: str) -> np.ndarray:
    """Model output (N, C, H, W) -> uint8 (N, H, W, C), rounded and clipped (inverse of :func:`to_model_input`)."""
    _check_range(output_range)
    x = images.detach().float()
    x = (x + 1.0) * 127.5 if output_range == "tanh" else x * 255.0
    x = x.round().clamp_(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()          # (N, C, H, W) -> (N, H, W, C)


def _chunk_sizes(n: int, batch_size: int) -> list[int]:
    """Near-equal chunks of at most ``batch_size`` and at least 2 (G's batchnorm needs 2 samples)."""
    k = max(1, min(math.ceil(n / batch_size), n // 2))
    return [len(c) for c in np.array_split(np.arange(n), k)]


def sampling_plan(netG: nn.Module, n: int, labels: np.ndarray | Tensor | None,
                  batch_size: int) -> tuple[Tensor | None, list[int]]:
    """Check a request for ``n`` samples of ``netG`` and cut it into BN batches: ``(labels, sizes)``.

    ``labels`` come back as int64 (n,) (required, in [0, n_classes), for a class-conditional G; refused for an
    unconditional one, which gets None); ``sizes`` are the near-equal batch sizes of :func:`_chunk_sizes`. Shared by
    :func:`iter_generate` and faster samplers of particular nets, so every path draws the same samples.
    """
    if n < 2:
        raise ValueError(f"generate needs n >= 2 samples (G's batchnorm uses batch statistics), got n = {n}")
    n_classes = getattr(netG, "n_classes", 0)
    if n_classes:
        if labels is None:
            raise ValueError(f"netG is class-conditional ({n_classes} classes): pass labels, shape ({n},)")
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        if labels.shape != (n,) or labels.min() < 0 or labels.max() >= n_classes:
            raise ValueError(f"labels must be {n} ints in [0, {n_classes}), got shape {tuple(labels.shape)}")
    elif labels is not None:
        raise ValueError("netG is unconditional: call generate without labels")
    return labels, _chunk_sizes(n, batch_size)


def iter_generate(netG: nn.Module, n: int, *, z_dist: str, seed: int, labels: np.ndarray | Tensor | None = None,
                  batch_size: int = 512, device: str | torch.device = "cpu",
                  precision: str = "fp32") -> Iterator[np.ndarray]:
    """Yield ``n`` generated images as uint8 NHWC chunks (streaming form of :func:`generate`, same samples).

    z is drawn chunk by chunk from a CPU generator seeded with ``seed``. G's batchnorm uses the statistics of
    each chunk (authors' sampling), so chunks are near-equal in size (:func:`sampling_plan`). ``labels`` (n,) int
    are required for a class-conditional G. ``netG`` is moved to ``device``.
    """
    from . import runtime

    labels, sizes = sampling_plan(netG, n, labels, batch_size)
    dev = torch.device(device)
    netG.to(dev)
    g = torch.Generator().manual_seed(int(seed))
    start = 0
    with torch.no_grad(), runtime.autocast(dev, precision):
        for size in sizes:
            z = sample_z(size, netG.nz, z_dist, generator=g, device=dev)             # (size, nz)
            y = None if labels is None else labels[start:start + size].to(dev)     # (size,)
            yield to_uint8(netG(z, y), netG.output_range)                           # (size, H, W, C)
            start += size


def generate(netG: nn.Module, n: int, *, z_dist: str, seed: int, labels: np.ndarray | Tensor | None = None,
             batch_size: int = 512, device: str | torch.device = "cpu", precision: str = "fp32") -> np.ndarray:
    """``n`` samples as uint8 (n, H, W, C). BN uses batch statistics when sampling, as the authors' code does
    (G's BN layers have no running statistics, so this holds in train and eval mode alike)."""
    return np.concatenate(list(iter_generate(netG, n, z_dist=z_dist, seed=seed, labels=labels,
                                             batch_size=batch_size, device=device, precision=precision)))


@contextlib.contextmanager
def frozen(net: nn.Module) -> Iterator[nn.Module]:
    """Temporarily stop gradients into ``net``'s parameters (G step: gradients flow through D to G only)."""
    flags = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        yield net
    finally:
        for p, f in zip(net.parameters(), flags):
            p.requires_grad_(f)


# --- checkpoints (results/models/<run>/model.pt and epochNNN.pt) -------------------------------------------


def cpu_state(net: nn.Module) -> dict[str, Tensor]:
    """A state_dict detached and copied to the CPU (files load on machines without a GPU)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def save_checkpoint(path: io.PathLike, netG: nn.Module, netD: nn.Module, *, name: str, run: dict[str, Any],
                    epoch: int, step: int, snapshots: dict[int, str], data_meta: dict[str, Any],
                    provenance: dict[str, Any], **extra: Any) -> None:
    """Write a model file in the CONTRACTS format, atomically (``extra`` keys are added alongside)."""
    obj = {"netG": cpu_state(netG), "netD": cpu_state(netD), "name": name, "run": dict(run), "epoch": int(epoch),
           "step": int(step), "snapshots": {int(k): str(v) for k, v in snapshots.items()},
           "data_meta": _plain(data_meta), "provenance": _plain(provenance), **extra}
    with io.atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _plain(obj: Any) -> Any:
    """JSON-type copy (e.g. torch's TorchVersion -> str), so model files load with ``weights_only=True``."""
    return json.loads(json.dumps(obj, default=str))


def _arch(run: dict[str, Any]) -> dict[str, Any]:
    arch = {k: run.get(k) for k in ARCH_KEYS}
    if run.get("variant"):                  # variant switches change the architecture too (model_variants)
        arch["variant"] = dict(run["variant"])
    return arch


def load_checkpoint(path: io.PathLike, device: str | torch.device = "cpu",
                    run: dict[str, Any] | None = None) -> tuple[_Net, _Net, dict[str, Any]]:
    """``(netG, netD, ckpt)`` from a model file; nets rebuilt from ``ckpt["run"]``, loaded strictly, in eval mode.

    With ``run`` (the current config's ``runs.<name>``), a file trained with a different architecture (model,
    recipe, nz, ngf, ndf) is refused with a message naming the file and both configs. A file whose weights do
    not fit the architecture its own config describes is refused likewise.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (made by rule train_gan)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:  # corrupt or foreign files
        raise ValueError(f"{path} is not a readable dcgan-repro model file: {e}") from e
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt] if isinstance(ckpt, dict) else list(CHECKPOINT_KEYS)
    if missing:
        raise ValueError(f"{path} is not a dcgan-repro model file: missing keys {missing}")
    if run is not None and _arch(run) != _arch(ckpt["run"]):
        diff = {k: (ckpt["run"].get(k), run.get(k)) for k in ARCH_KEYS if ckpt["run"].get(k) != run.get(k)}
        raise ValueError(
            f"{path} (run {ckpt['name']!r}) was trained with architecture {_arch(ckpt['run'])}, but the config "
            f"asks for {_arch(run)}; differing (file, config): {diff}. Retrain (delete {path}) or fix the config.")
    with torch.random.fork_rng(devices=[]):       # the throw-away init must not shift the caller's RNG stream
        netG, netD = build_models(ckpt["run"])
    for label, net, key in (("generator", netG, "netG"), ("discriminator", netD, "netD")):
        try:
            net.load_state_dict(ckpt[key], strict=True)
        except RuntimeError as e:
            raise ValueError(f"{path}: the stored {label} does not match the architecture of its run config "
                             f"{_arch(ckpt['run'])}: {e}") from e
    netG.to(device).eval()
    netD.to(device).eval()
    return netG, netD, ckpt


def n_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
