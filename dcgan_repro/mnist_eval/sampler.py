"""Fast class-conditional sampling of the MNIST DCGAN (the 10M generated samples of Table 3's "@10M" column).

:class:`CondDCGANSampler` is the forward pass of ``models.CondDCGANGenerator`` rearranged for speed: the same
function, exact in real arithmetic (tests prove it in float64). :func:`iter_generate` / :func:`generate` are
``models.iter_generate`` / ``models.generate`` (same arguments, z, labels and per-batch BN statistics) with the
MNIST DCGAN run through the sampler and any other generator through the module itself. In float32 an 8-bit pixel
can differ from the module's by one level where the sigmoid output sits on a rounding boundary.

This module depends on ``models``; ``models`` knows nothing of it.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dcgan_repro import models, runtime

FAST_SAMPLES = 512  # samples per CondDCGANSampler call (whole BN batches): large matmuls, ~30 MB of activations


class CondDCGANSampler:
    """Fast sampling forward of a ``models.CondDCGANGenerator``: the same function, rearranged (exact up to rounding).

    Used to stream millions of samples (Table 3 "@10M"). Per batch of ``group`` consecutive samples the result is
    ``netG(z, y)`` of that batch (BN with that batch's statistics, as the authors sample); many batches go through
    one call, so the matmuls are large. Rearrangements, each exact in real arithmetic:

    - y's constant maps into a deconv: their contribution is a per-class, position-dependent map (borders
      included) computed once per class with the module's own ``conv_transpose2d``; the deconvs then see only the
      128 (64) feature channels, not 138 (74);
    - deconv1 in channels_last (oneDNN's fast layout on CPU), BN batch statistics on a (groups, group * H * W, C)
      view; deconv2 (64 -> 1 channel, slow as a oneDNN deconv) as one matmul and a col2im (``F.fold``).

    In fp32 it beats the module forward in bf16 autocast on a CPU without AMX (benchmarks/README.md, "MNIST
    sampler"). Any autocast context of the caller applies to its matmuls and deconv as to the module's; BN runs in the
    weights' dtype (fp32 for a trained G; float64 after ``netG.double()``, with float64 z, as the tests check).
    """

    def __init__(self, netG: models.CondDCGANGenerator) -> None:
        if not isinstance(netG, models.CondDCGANGenerator):
            raise TypeError(f"CondDCGANSampler needs a CondDCGANGenerator, got {type(netG).__name__}")
        nz, ny, ngf = netG.nz, netG.n_classes, netG.ngf
        self.nz, self.ny, self.ngf, self.n_classes = nz, ny, ngf, ny
        self.output_range = netG.output_range
        self.eps = (netG.bn1.eps, netG.bn2.eps, netG.bn3.eps)
        self.dtype = dt = netG.fc1.weight.dtype                        # float32 (float64 after netG.double())
        with torch.no_grad():
            w1 = netG.fc1.weight.detach()                              # (fc, nz + ny)
            self.w1 = w1.T.contiguous()                                # (nz + ny, fc)
            self.w2 = netG.fc2.weight.detach().T.contiguous()          # (fc + ny, 6272)
            eye = torch.eye(ny, dtype=dt, device=w1.device)            # (ny, ny) one-hot of each class
            wd1 = netG.deconv1.weight.detach()                         # (2ngf + ny, ngf, 5, 5)
            self.wd1 = wd1[:2 * ngf].contiguous()                      # (2ngf, ngf, 5, 5)
            maps = eye[:, :, None, None].expand(ny, ny, 7, 7)          # (ny, ny, 7, 7) y maps per class
            self.b3 = netG.deconv1(torch.cat([torch.zeros(ny, 2 * ngf, 7, 7, dtype=dt, device=w1.device), maps], 1))
            self.b3 = self.b3.permute(0, 2, 3, 1).reshape(ny, -1).contiguous()  # (ny, 14*14*ngf) NHWC order
            wd2 = netG.deconv2.weight.detach()                         # (ngf + ny, 1, 5, 5)
            self.wd2 = wd2[:ngf].reshape(ngf, 25).contiguous()         # (ngf, 25)
            maps = eye[:, :, None, None].expand(ny, ny, 14, 14)        # (ny, ny, 14, 14)
            self.b4 = netG.deconv2(torch.cat([torch.zeros(ny, ngf, 14, 14, dtype=dt, device=w1.device), maps], 1))
            self.b4 = self.b4.reshape(ny, 28 * 28).contiguous()        # (ny, 784)

    @staticmethod
    def _bn_relu_(h: Tensor, eps: float) -> Tensor:
        """BN with each group's biased batch statistics, then ReLU: (groups, m, C) in place, stats over m.

        Two-pass (centre, then the mean square) as ``batch_norm`` does; the sums are batched matmuls with a
        ones row, much faster on a CPU core than ``var_mean`` over a middle dimension.
        """
        g, m, _ = h.shape
        avg = torch.full((g, 1, m), 1.0 / m, dtype=h.dtype, device=h.device)       # (g, 1, m)
        h.sub_(torch.bmm(avg, h))                                                   # centred, (g, m, C)
        var = torch.bmm(avg, h * h)                                                 # (g, 1, C) biased variance
        return h.relu_().mul_(var.add_(eps).rsqrt_())                               # relu(x) r = relu(x r), r > 0

    def __call__(self, z: Tensor, y: Tensor, group: int) -> Tensor:
        """(N, nz), (N,) int -> (N, 1, 28, 28) in [0, 1]; BN statistics per ``group`` consecutive samples."""
        n = z.shape[0]
        if n % group or y.shape != (n,):
            raise ValueError(f"CondDCGANSampler: {n} samples / labels {tuple(y.shape)} do not split into batches "
                             f"of {group}")
        g, ngf, dt = n // group, self.ngf, self.dtype
        y = y.long()
        y1h = F.one_hot(y, self.ny).to(z.dtype)                                     # (N, 10)
        h = torch.cat([z, y1h], 1) @ self.w1                                        # (N, 1024)
        h = self._bn_relu_(h.to(dt).view(g, group, -1), self.eps[0]).view(n, -1)   # (N, 1024)
        h = torch.cat([h, y1h], 1) @ self.w2                                        # (N, 6272)
        h = self._bn_relu_(h.to(dt).view(g, group, -1), self.eps[1])               # (g, group, 6272)
        h = h.view(n, 2 * ngf, 7, 7).contiguous(memory_format=torch.channels_last)  # (N, 128, 7, 7)
        h = F.conv_transpose2d(h, self.wd1, stride=2, padding=2, output_padding=1)  # (N, 64, 14, 14) NHWC
        h = h.permute(0, 2, 3, 1).to(dt)                                            # (N, 14, 14, 64)
        if not h.is_contiguous():
            h = h.contiguous()
        h.view(n, -1).add_(self.b3.index_select(0, y))                              # + y maps' share
        h = self._bn_relu_(h.view(g, group * 196, ngf), self.eps[2])                # (g, group*196, 64)
        cols = torch.matmul(h.view(n, 196, ngf), self.wd2)                          # (N, 196, 25)
        x = F.fold(cols.transpose(1, 2), (28, 28), 5, stride=2, padding=2)          # (N, 1, 28, 28)
        x = x.to(dt).view(n, 784).add_(self.b4.index_select(0, y))                  # + y maps' share
        return torch.sigmoid_(x).view(n, 1, 28, 28)


def iter_generate(netG: torch.nn.Module, n: int, *, z_dist: str, seed: int,
                  labels: np.ndarray | Tensor | None = None, batch_size: int = 512,
                  device: str | torch.device = "cpu", precision: str = "fp32") -> Iterator[np.ndarray]:
    """``models.iter_generate`` with a ``CondDCGANGenerator`` run through :class:`CondDCGANSampler`.

    Same arguments, the same z (drawn batch by batch from a CPU generator seeded with ``seed``), labels and
    per-batch BN statistics (``models.sampling_plan``); the same function up to float rounding, so an 8-bit pixel
    can differ by one level where the sigmoid output sits on a rounding boundary. Runs of equal-sized BN batches
    go through the sampler together, ``FAST_SAMPLES`` samples per call. Any other generator is sampled by
    ``models.iter_generate`` itself.
    """
    if not isinstance(netG, models.CondDCGANGenerator):
        yield from models.iter_generate(netG, n, z_dist=z_dist, seed=seed, labels=labels, batch_size=batch_size,
                                        device=device, precision=precision)
        return
    labels, sizes = models.sampling_plan(netG, n, labels, batch_size)
    dev = torch.device(device)
    netG.to(dev)
    g = torch.Generator().manual_seed(int(seed))
    sampler = CondDCGANSampler(netG)
    start = i = 0
    with torch.inference_mode(), runtime.autocast(dev, precision):
        while i < len(sizes):
            size = sizes[i]
            k = 1
            while i + k < len(sizes) and sizes[i + k] == size and (k + 1) * size <= max(FAST_SAMPLES, size):
                k += 1
            z = torch.cat([models.sample_z(size, sampler.nz, z_dist, generator=g) for _ in range(k)])  # (k*size, nz)
            y = labels[start:start + k * size].to(dev)                                         # (k*size,)
            x = sampler(z.to(dev), y, size)                                                    # (k*size, 1, 28, 28)
            yield models.to_uint8(x, sampler.output_range)                                     # (k*size, 28, 28, 1)
            start += k * size
            i += k


def generate(netG: torch.nn.Module, n: int, *, z_dist: str, seed: int, labels: np.ndarray | Tensor | None = None,
             batch_size: int = 512, device: str | torch.device = "cpu", precision: str = "fp32") -> np.ndarray:
    """``n`` samples as uint8 (n, H, W, C): :func:`iter_generate` concatenated (``models.generate``'s fast twin)."""
    return np.concatenate(list(iter_generate(netG, n, z_dist=z_dist, seed=seed, labels=labels,
                                             batch_size=batch_size, device=device, precision=precision)))
