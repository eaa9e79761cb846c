"""Fig. 5 (Sec. 6.2, rule ``figures_fig05_guided_backprop``): guided backpropagation (Springenberg et al. 2014) of the
maximal spatial response of each of the first 6 channels of D's last conv layer, trained D beside a fresh one.
The paper gives no code for it (docs/REFERENCE.md Sec. 6); the choices are documented at each function."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import features, io, models, paper
from dcgan_repro.figures.layout import Layout, Panel, figure_title, footer_text, render_figure
from dcgan_repro.figures.runs import load_run, run_device
from dcgan_repro.images import image_grid

PathLike = io.PathLike


class _GuidedReLUGrad(torch.autograd.Function):
    """Identity forward; backward lets only positive gradient through where the activation is positive."""

    @staticmethod
    def forward(ctx: Any, y: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(y > 0)
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        (mask,) = ctx.saved_tensors
        return grad.clamp(min=0) * mask


@contextlib.contextmanager
def guided_relus(net: nn.Module) -> Iterator[list[int]]:
    """Guided backpropagation (Springenberg et al. 2014) inside the block: every ``nn.ReLU``/``nn.LeakyReLU`` of
    ``net`` passes gradient only where both its output and the incoming gradient are positive.

    A forward hook wraps each activation's output in :class:`_GuidedReLUGrad`; the mask is ``output > 0``, which
    equals ``input > 0`` for (leaky) ReLU even when the module works in place. Yields a one-element list
    counting hooked calls, so callers can check that the net's activations are modules (functional
    activations cannot be hooked).
    """
    calls = [0]

    def hook(_m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> Tensor:
        calls[0] += 1
        return _GuidedReLUGrad.apply(out)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    try:
        yield calls
    finally:
        for h in handles:
            h.remove()


def guided_backprop(net: nn.Module, forward: Callable[[Tensor], Tensor], x: Tensor,
                    select: Sequence[tuple[int, int, int, int]]) -> Tensor:
    """Guided gradients of chosen activations with respect to the input.

    ``forward(x)`` returns a (N, C, h, w) activation; ``select`` lists (image n, channel c, row i, col j), at
    most one per image; the result is d a[n, c, i, j] / d x[n] for every image (zero for unselected ones),
    shape of ``x``. ``net`` must normalise without batch statistics (eval mode) so images do not interact.
    """
    x = x.detach().clone().requires_grad_(True)
    with guided_relus(net) as calls:
        a = forward(x)                                                         # (N, C, h, w)
        if calls[0] == 0:
            raise RuntimeError(f"{type(net).__name__} has no nn.ReLU/nn.LeakyReLU modules on this path; guided "
                               "backpropagation needs module activations")
        n, c, i, j = (torch.as_tensor([s[k] for s in select], device=a.device) for k in range(4))
        (grad,) = torch.autograd.grad(a[n, c, i, j].sum(), x)
    return grad                                                                # (N, C, H, W)


def gradient_image(grad: Tensor) -> np.ndarray:
    """Guided gradients (N, C, H, W) -> uint8 (N, H, W, C) for display: per image, divided by its 99.5th
    percentile of |g|, mapped to 0.5 + 0.5 g and clipped (grey = no gradient)."""
    g = grad.detach().float().cpu()
    s = torch.quantile(g.abs().flatten(1), 0.995, dim=1).clamp(min=1e-12)       # (N,)
    v = (0.5 + 0.5 * g / s[:, None, None, None]).clamp(0, 1)
    return (v * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def top_responses(acts: Tensor, channel: int, k: int) -> list[tuple[int, int, int, int]]:
    """The ``k`` images with the largest spatial maximum of ``channel`` in ``acts`` (N, C, h, w), as
    (image, channel, row, col) of that maximum, strongest first."""
    a = acts[:, channel].flatten(1)                                            # (N, h*w)
    vals, pos = a.max(1)                                                       # (N,) each
    order = torch.argsort(vals, descending=True)[:k]
    w = acts.shape[3]
    return [(int(n), channel, int(pos[n]) // w, int(pos[n]) % w) for n in order]


def _fixed_bn_copy(netD: nn.Module, images: np.ndarray, seed: int, device: torch.device) -> nn.Module:
    """A copy of D in eval mode whose BN uses the average statistics of ``images`` (Sec. 5.1 features)."""
    stats = features.fixed_bn_statistics(netD, images, netD.output_range, seed=seed, device=device)
    net = copy.deepcopy(netD).to(device)
    features.apply_bn_statistics(net, stats)
    return net.eval()


def guided_backprop_panel(netD: nn.Module, images: np.ndarray, *, n_features: int, top: int, seed: int,
                          device: torch.device) -> tuple[np.ndarray, list[list[tuple[int, int, int, int]]]]:
    """For each of the first ``n_features`` channels of D's last conv layer: the ``top`` real images with the
    strongest response and the guided gradient of that single activation. Returns uint8 visualisations
    (n_features*top, H, W, C), row-major by feature, and the chosen (image, channel, row, col)."""
    net = _fixed_bn_copy(netD, images, seed, device)
    x = models.to_model_input(images, net.output_range).to(device)            # (N, C, H, W)
    with torch.no_grad():
        acts = torch.cat([net.features(x[s:s + 256])[-1] for s in range(0, len(x), 256)])  # (N, C_L, h, w)
    n_features = min(n_features, acts.shape[1])
    chosen = [top_responses(acts, c, top) for c in range(n_features)]
    vis = []
    for sel in chosen:
        idx = [s[0] for s in sel]
        local = [(i, *s[1:]) for i, s in enumerate(sel)]
        grad = guided_backprop(net, lambda t: net.features(t)[-1], x[idx], local)  # (top, C, H, W)
        vis.append(gradient_image(grad))
    return np.concatenate(vis), chosen


def fig05_guided_backprop(model: PathLike, data_dir: PathLike, png: PathLike, pdf: PathLike, *,
                          figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 5 (Sec. 6.2): guided backpropagation of the maximal axis-aligned responses of the first 6 features
    of D's last conv layer, on ``bn_reference`` real training images: a freshly initialised D (random filters,
    left) beside the trained D (right), plus the real images of the trained D's responses."""
    dev = run_device(common)
    _, netD, ckpt = load_run(model, dev)
    x_all, _ = io.read_dataset(data_dir, "train")
    rng = np.random.default_rng(figures["seed"])
    n = min(figures["bn_reference"], len(x_all))
    idx = np.sort(rng.choice(len(x_all), n, replace=False))
    images = np.asarray(x_all[idx])                                            # (n, H, W, C)
    torch.manual_seed(figures["seed"])
    _, fresh = models.build_models(ckpt["run"])                                # same architecture, paper init
    top = min(figures["grid_cols"], n)
    nf = paper.FIG5_FEATURES
    vis_rand, _ = guided_backprop_panel(fresh.to(dev), images, n_features=nf, top=top, seed=figures["seed"],
                                        device=dev)
    vis_trained, chosen = guided_backprop_panel(netD, images, n_features=nf, top=top, seed=figures["seed"],
                                                device=dev)
    real = images[[s[0] for sel in chosen for s in sel]]
    with torch.no_grad():
        layer = len(netD.features(models.to_model_input(images[:2], netD.output_range).to(dev)))
    panels = [Panel(image_grid(vis_rand, top), "random filters (fresh D, same architecture)"),
              Panel(image_grid(vis_trained, top), f"trained D, conv layer {layer} (last)"),
              Panel(image_grid(real, top), "the real images (trained D)")]
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Rows: the first {len(chosen)} channels of D's last conv layer; columns: the {top} of {n} random real "
        f"training images with the largest response, strongest first; guided backpropagation (Springenberg et "
        f"al. 2014) of that single maximal activation to the pixels (grey = 0). BN: fixed statistics averaged "
        f"over the same {n} images, as for the Sec. 5.1 features. Random filters: the same architecture freshly "
        f"initialised (paper init) with torch seed {figures['seed']}."])
    return render_figure([panels], title=figure_title("fig05"), footer=foot, png=png, pdf=pdf)
