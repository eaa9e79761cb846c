"""Fig. 9 (Sec. 8.1, rule ``figures_fig09_mnist_samples``): real MNIST, the GAN baseline and the DCGAN side by side."""

from __future__ import annotations

from typing import Any

import numpy as np

from dcgan_repro import io, models, paper, runtime
from dcgan_repro.figures.layout import Layout, Panel, figure_title, footer_text, render_figure
from dcgan_repro.figures.runs import load_run, run_device
from dcgan_repro.images import image_grid

PathLike = io.PathLike


def real_per_class(data_dir: PathLike, n_classes: int, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` random training images of each class, class-major: (n_classes*per_class, H, W, C)."""
    x, y = io.read_dataset(data_dir, "train")
    rng = np.random.default_rng(seed)
    out = []
    for c in range(n_classes):
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            raise ValueError(f"{data_dir}: no training image of class {c} (labels: train_y.npy)")
        out.append(np.asarray(x[np.sort(rng.choice(idx, per_class, replace=len(idx) < per_class))]))
    return np.concatenate(out)


def fig09_mnist_samples(dcgan: PathLike, gan: PathLike, data_dir: PathLike, png: PathLike, pdf: PathLike, *,
                        figures: dict[str, Any], common: dict[str, Any]) -> Layout:
    """Fig. 9 (Sec. 8.1): real MNIST, the GAN baseline and the DCGAN side by side; 10 classes (rows) x 20
    samples, generated class-conditionally with ``models.generate`` from ``figures.seed``."""
    dev = run_device(common)
    gG, _, ckpt_gan = load_run(gan, dev)
    dG, _, ckpt_dcgan = load_run(dcgan, dev)
    n_classes, per = dG.n_classes or paper.FIG9_CLASSES, paper.FIG9_PER_CLASS
    labels = np.repeat(np.arange(n_classes), per)                               # class-major rows
    real = real_per_class(data_dir, n_classes, per, figures["seed"])
    panels = [Panel(image_grid(real, per), "real data")]
    for netG, ckpt, label in ((gG, ckpt_gan, "GAN baseline"), (dG, ckpt_dcgan, "DCGAN")):
        imgs = models.generate(netG, len(labels), z_dist=models.z_dist(ckpt["run"]), seed=figures["seed"],
                               labels=labels if netG.n_classes else None, device=dev,
                               precision=runtime.job_precision(common, dev))
        panels.append(Panel(image_grid(imgs, per), f"{label} ('{ckpt['name']}')"))
    foot = footer_text([ckpt_dcgan, ckpt_gan], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Rows: classes 0-{n_classes - 1}; {per} samples each; generated samples conditioned on the row's class."])
    return render_figure([panels], title=figure_title("fig09"), footer=foot, png=png, pdf=pdf)
