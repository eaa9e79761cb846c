"""Fig. 6 (Sec. 6.3.1, rule ``figures_fig06_window_dropout``): forgetting to draw windows. A logistic regression finds
the 'window' feature maps of one of G's layers from boxes drawn on samples; new samples are shown with and without
those maps. The paper gives no code for it (docs/REFERENCE.md Sec. 6): the classifier's features and negatives are
chosen here and documented at each function.

The layer (``figures.window_layer``) is counted from z, as the paper counts: "the second highest convolution layer"
with z's projection (1024x4x4) the highest, i.e. the 8x8 layer of the 64x64 G (512 maps at ngf = 128, of which the
paper drops "200 in total"); :func:`feature_layers`, :func:`layer_site`. The model is the run
``figures.window_run`` (paper: LSUN bedrooms). Footer and statistics JSON record both.

Window boxes (``figures.window_boxes``): a JSON file ::

    {"samples": {"z_seed": 0, "n": 150},
     "boxes": [{"sample": 3, "x0": 10, "y0": 4, "x1": 30, "y1": 28}, ...]}

``samples`` says how the boxed images are drawn: ``n`` z from ``models.sample_z`` with a CPU generator seeded
with ``z_seed``, generated as one batch (so the images match those shown by the template). Each box gives a
sample index in ``[0, n)`` and a rectangle in that sample's output pixels (``0 <= x0 < x1 <= W``,
``0 <= y0 < y1 <= H``; x to the right, y down, x1/y1 exclusive). Optional keys: ``model``, ``image_size``, ``note``.
Make an empty one with its sample sheet and the individual samples to draw on (:func:`make_box_template`)::

    python -m dcgan_repro.figures make-box-template --model results/models/lsun/model.pt --out boxes/

(the paper drew 52 boxes on 150 samples). Without a box file, :func:`proxy_window_boxes` places one box on the
brightest 16x16 region of the 52 of 150 samples where it stands out most (windows are usually the brightest
part of a bedroom) and the figure and its JSON say that a proxy was used.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import io, models, paper, runtime
from dcgan_repro.figures.layout import Panel, figure_title, footer_text, index_sheet, render_figure
from dcgan_repro.figures.runs import load_run, run_device, z_generator
from dcgan_repro.images import image_grid

log = logging.getLogger(__name__)
PathLike = io.PathLike


@dataclass
class BoxSpec:
    """A Fig. 6 box file (module docstring): how the boxed samples are drawn, and the boxes."""

    z_seed: int
    n: int
    boxes: list[dict[str, int]]
    source: str


_BOX_TOP_KEYS = {"samples", "boxes", "model", "image_size", "note"}


def read_box_file(path: PathLike, image_hw: tuple[int, int]) -> BoxSpec:
    """Read and check a box file; every error names the file, the box and what is allowed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figures.window_boxes: box file {path} does not exist (make one with "
                                f"`python -m dcgan_repro.figures make-box-template`)")
    try:
        spec = io.read_json(path)
    except ValueError as e:
        raise ValueError(f"figures.window_boxes: {path} is not valid JSON: {e}") from e
    if not isinstance(spec, dict) or not {"samples", "boxes"} <= set(spec) or set(spec) - _BOX_TOP_KEYS:
        raise ValueError(f"figures.window_boxes: {path} must be a JSON object with keys 'samples' and 'boxes' "
                         f"(optional: model, image_size, note); got {sorted(spec) if isinstance(spec, dict) else spec}")
    s = spec["samples"]
    if not isinstance(s, dict) or not all(isinstance(s.get(k), int) for k in ("z_seed", "n")) or s["n"] < 2:
        raise ValueError(f"figures.window_boxes: {path}: 'samples' must be {{\"z_seed\": int, \"n\": int >= 2}}, "
                         f"got {s!r}")
    h, w = image_hw
    boxes = []
    for i, b in enumerate(spec["boxes"]):
        keys = ("sample", "x0", "y0", "x1", "y1")
        if not isinstance(b, dict) or not all(isinstance(b.get(k), int) for k in keys):
            raise ValueError(f"figures.window_boxes: {path}: box {i} must have integer {', '.join(keys)}; got {b!r}")
        if not (0 <= b["sample"] < s["n"] and 0 <= b["x0"] < b["x1"] <= w and 0 <= b["y0"] < b["y1"] <= h):
            raise ValueError(f"figures.window_boxes: {path}: box {i} {b} is outside the allowed range: sample in "
                             f"[0, {s['n']}), 0 <= x0 < x1 <= {w}, 0 <= y0 < y1 <= {h}")
        boxes.append({k: int(b[k]) for k in keys})
    if not boxes:
        raise ValueError(f"figures.window_boxes: {path} has no boxes; draw some (the paper drew 52 on 150 "
                         f"samples) or set figures.window_boxes: null to use the automatic proxy")
    return BoxSpec(z_seed=s["z_seed"], n=s["n"], boxes=boxes, source=str(path))


def proxy_window_boxes(images: np.ndarray, n_boxes: int) -> list[dict[str, int]]:
    """Automatic stand-in for hand-drawn window boxes: on every sample, the (H/4 x W/4) box of highest mean
    luminance; kept on the ``n_boxes`` samples where that box exceeds the sample's mean luminance most (windows
    are usually the brightest part of a bedroom picture). One box per kept sample, strongest first."""
    import cv2

    n, h, w = images.shape[:3]
    bh, bw = max(1, h // 4), max(1, w // 4)
    lum = images.astype(np.float32).mean(axis=3)                               # (N, H, W)
    found = []
    for i in range(n):
        # mean over each bh x bw window, indexed by its top-left corner (valid positions only)
        m = cv2.boxFilter(lum[i], -1, (bw, bh), anchor=(0, 0), normalize=True,
                          borderType=cv2.BORDER_CONSTANT)[: h - bh + 1, : w - bw + 1]
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        found.append((float(m[y, x] - lum[i].mean()), i, int(x), int(y)))
    found.sort(key=lambda f: (-f[0], f[1]))
    return [{"sample": i, "x0": x, "y0": y, "x1": x + bw, "y1": y + bh} for _, i, x, y in found[:n_boxes]]


class _SiteHooks:
    """Forward hooks on G's ``nn.ReLU``/``nn.LeakyReLU`` modules that index every 4-D activation in call order
    ("sites"), record their shapes, optionally keep one site's output and zero chosen maps at one site."""

    def __init__(self, netG: nn.Module, *, capture: int | None = None,
                 drop: tuple[int, Sequence[int]] | None = None) -> None:
        self.netG, self.capture, self.drop = netG, capture, drop
        self.shapes: list[tuple[int, ...]] = []
        self.names: list[str] = []
        self.captured: Tensor | None = None
        self._count = 0
        self._handles: list[Any] = []

    def __enter__(self) -> _SiteHooks:
        def reset(_m: nn.Module, _inp: Any) -> None:
            self._count = 0
            self.shapes, self.names = [], []

        self._handles.append(self.netG.register_forward_pre_hook(reset))
        for name, m in self.netG.named_modules():
            if isinstance(m, (nn.ReLU, nn.LeakyReLU)):
                self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Callable[..., Tensor | None]:
        def hook(_m: nn.Module, _inp: Any, out: Tensor) -> Tensor | None:
            if out.dim() != 4:
                return None
            site = self._count
            self._count += 1
            self.shapes.append(tuple(out.shape[1:]))
            self.names.append(name)
            if self.drop is not None and site == self.drop[0]:
                keep = torch.ones(out.shape[1], device=out.device, dtype=out.dtype)
                keep[list(self.drop[1])] = 0
                out = out * keep[None, :, None, None]                          # (N, C, h, w), maps zeroed
            if site == self.capture:
                self.captured = out.detach()
            return out

        return hook

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()


def activation_sites(netG: nn.Module, z: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, (C, h, w)) of every 4-D ReLU output of G, in call order (the conv feature layers)."""
    with _SiteHooks(netG) as hk, torch.no_grad():
        netG(z)
    return list(zip(hk.names, hk.shapes))


def feature_layers(netG: nn.Module, z: Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """G's feature layers counted from z, as the paper counts them (Sec. 6.3.1): (module name, (C, h, w)), the
    highest first. The projection of z (``ProjectedGenerator``: Linear + BN + ReLU, reshaped to (c0, 4, 4)) is
    the highest layer and has no ReLU module to hook (name ``"project"``); then every 4-D ReLU output in call
    order (:func:`activation_sites`). dcgan64 at ngf = 128: 1024x4x4 (projection), 512x8x8, 256x16x16,
    128x32x32."""
    sites = activation_sites(netG, z)
    if hasattr(netG, "project") and hasattr(netG, "c0"):
        return [("project", (int(netG.c0), 4, 4)), *sites]
    return sites


def layer_site(netG: nn.Module, z: Tensor, layer: int) -> int:
    """The hook site (index into :func:`activation_sites`) of G's feature layer ``layer`` counted from z
    (``figures.window_layer``: 1 = the highest, z's own projection; 2 = the paper's "second highest", the 8x8
    layer of the 64x64 G)."""
    layers = feature_layers(netG, z)
    n_sites = len(activation_sites(netG, z))
    offset = len(layers) - n_sites                                            # 1 when the projection leads
    allowed = f"{offset + 1}..{len(layers)}"
    if not offset + 1 <= layer <= len(layers):
        names = ", ".join(f"{i + 1} = {n} {'x'.join(map(str, sh))}" for i, (n, sh) in enumerate(layers))
        raise ValueError(f"figures.window_layer = {layer}: {type(netG).__name__}'s feature layers counted from z "
                         f"are {names}; allowed: {allowed} (the projection has no ReLU module whose maps can be "
                         "dropped)")
    return layer - 1 - offset


def generate_with_sites(netG: nn.Module, z: Tensor, *, capture: int | None = None,
                        drop: tuple[int, Sequence[int]] | None = None,
                        reference: Tensor | None = None) -> tuple[np.ndarray, Tensor | None]:
    """Images of ``z`` (one batch, or beside ``reference``) with site ``drop[0]``'s maps ``drop[1]`` zeroed
    at every spatial location, and the activation (N, C, h, w) of site ``capture`` (of ``z`` only)."""
    dev = next(netG.parameters()).device
    zz = z.to(dev) if reference is None else torch.cat([reference.to(dev), z.to(dev)])
    with _SiteHooks(netG, capture=capture, drop=drop) as hk, torch.no_grad():
        out = netG(zz)
    m = 0 if reference is None else len(reference)
    act = None if hk.captured is None else hk.captured[m:]
    return models.to_uint8(out[m:], netG.output_range), act


def window_training_set(acts: np.ndarray, boxes: Sequence[dict[str, int]], image_hw: tuple[int, int],
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sec. 6.3.1 data for the window classifier: each spatial position of a (N, C, h, w) feature layer is a
    C-vector; positives are positions whose receptive-field centre (cell centre in output pixels) lies in a
    box (the cell under the box centre when the box is smaller than a cell); negatives are as many random
    positions outside every box of the same images. Returns X (M, C), y (M,) in {0, 1}."""
    n, c, h, w = acts.shape
    H, W = image_hw
    cy = (np.arange(h) + 0.5) * H / h                                          # (h,) cell centres, pixels
    cx = (np.arange(w) + 0.5) * W / w                                          # (w,)
    pos_mask = np.zeros((n, h, w), dtype=bool)
    for b in boxes:
        inside = ((cy[:, None] >= b["y0"]) & (cy[:, None] < b["y1"])) & ((cx[None, :] >= b["x0"]) &
                                                                          (cx[None, :] < b["x1"]))
        if not inside.any():
            iy = min(h - 1, int((b["y0"] + b["y1"]) / 2 * h / H))             # cell under the box centre
            ix = min(w - 1, int((b["x0"] + b["x1"]) / 2 * w / W))
            inside[iy, ix] = True
        pos_mask[b["sample"]] |= inside
    X, y = [], []
    for i in sorted({b["sample"] for b in boxes}):
        pos = np.flatnonzero(pos_mask[i].ravel())
        neg_all = np.flatnonzero(~pos_mask[i].ravel())
        neg = rng.choice(neg_all, size=min(len(pos), len(neg_all)), replace=False)
        feats = acts[i].reshape(c, h * w).T                                    # (h*w, C)
        X += [feats[pos], feats[neg]]
        y += [np.ones(len(pos)), np.zeros(len(neg))]
    return np.concatenate(X), np.concatenate(y).astype(np.int64)


def fit_window_classifier(X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Logistic regression (sklearn, default L2, C = 1) window vs not-window; the maps to drop are those with
    weight > 0 (Sec. 6.3.1). Returns (maps to drop, stats incl. training and 5-fold CV accuracy)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    if len(np.unique(y)) < 2:
        raise ValueError("window classifier needs positives and negatives; every position was inside a box")
    clf = LogisticRegression(max_iter=2000).fit(X, y)
    stats: dict[str, Any] = {"n_positive": int(y.sum()), "n_negative": int((1 - y).sum()),
                             "train_accuracy": float(clf.score(X, y)), "cv_accuracy": None}
    if np.bincount(y).min() >= 5:
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        stats["cv_accuracy"] = float(cross_val_score(LogisticRegression(max_iter=2000), X, y, cv=cv).mean())
    return np.flatnonzero(clf.coef_[0] > 0), stats


def _draw_boxes(images: np.ndarray, boxes: Sequence[dict[str, int]]) -> np.ndarray:
    import cv2

    out = np.ascontiguousarray(images.copy())
    for b in boxes:
        cv2.rectangle(out[b["sample"]], (b["x0"], b["y0"]), (b["x1"] - 1, b["y1"] - 1), (255, 0, 0), 1)
    return out


def fig06_window_dropout(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike,
                         stats_path: PathLike, *, figures: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """Fig. 6 (Sec. 6.3.1): fit window vs not-window on G's layer ``figures.window_layer`` counted from z
    (:func:`layer_site`; paper: the second highest), drop the maps with positive weight everywhere, and show new
    samples without (top) and with (bottom) the drop.

    Boxes come from ``figures.window_boxes`` or, when null, from :func:`proxy_window_boxes` on
    ``paper.FIG6_SAMPLES`` samples (``paper.FIG6_BOXES`` boxes); the caption and ``stats_path`` say which.
    """
    t0 = time.time()
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    dist, nz, seed = models.z_dist(ckpt["run"]), netG.nz, figures["seed"]
    H, W = netG.image_shape[1:]
    spec = read_box_file(figures["window_boxes"], (H, W)) if figures["window_boxes"] else None
    z_seed, n = (spec.z_seed, spec.n) if spec else (seed, paper.FIG6_SAMPLES)
    z_boxed = models.sample_z(n, nz, dist, generator=z_generator(z_seed))     # (n, nz), one batch (template)
    layer = int(figures["window_layer"])
    site = layer_site(netG, z_boxed[:2].to(dev), layer)
    images, acts = generate_with_sites(netG, z_boxed, capture=site)           # (n, H, W, C), (n, C, h, w)
    boxes = spec.boxes if spec else proxy_window_boxes(images, paper.FIG6_BOXES)
    rng = np.random.default_rng(seed)
    X, y = window_training_set(acts.float().cpu().numpy(), boxes, (H, W), rng)
    drop, clf_stats = fit_window_classifier(X, y, seed)
    # new samples: figure-seed stream after the first n draws (never the boxed samples when z_seed == seed)
    g = z_generator(seed)
    models.sample_z(n, nz, dist, generator=g)
    pairs, cols = max(1, figures["grid_rows"] // 2), figures["grid_cols"]
    z_new = models.sample_z(pairs * cols, nz, dist, generator=g)
    ref = models.sample_z(figures["bn_reference"], nz, dist, generator=g)
    plain, _ = generate_with_sites(netG, z_new, reference=ref)
    dropped, act_dropped = generate_with_sites(netG, z_new, capture=site, drop=(site, drop), reference=ref)
    c_maps = int(acts.shape[1])
    src = (f"box file {spec.source}" if spec else
           f"AUTOMATIC PROXY, no hand-drawn boxes: the brightest {H // 4}x{W // 4} region of the {len(boxes)} "
           f"of {n} samples where it stands out most (figures.window_boxes is null; draw boxes on "
           "the samples of `python -m dcgan_repro.figures make-box-template` and set it to that file)")
    stats = {
        "figure": "fig06_window_dropout", "proxy_used": spec is None, "boxes_source": src,
        "n_samples": n, "z_seed": z_seed, "n_boxes": len(boxes),
        "layer": {"from_z": layer, "site": site, "module": activation_sites(netG, z_boxed[:2].to(dev))[site][0],
                  "shape": list(acts.shape[1:]), "setting": "figures.window_layer",
                  "layers_from_z": [[name, list(sh)] for name, sh in feature_layers(netG, z_boxed[:2].to(dev))]},
        "run": ckpt["name"],
        "n_maps": c_maps, "n_maps_dropped": int(len(drop)), "dropped_maps": drop.tolist(),
        "classifier": {"model": "sklearn LogisticRegression (L2, C=1)", **clf_stats},
        "dropped_maps_all_zero": bool(act_dropped[:, torch.as_tensor(drop)].abs().max() == 0) if len(drop) else True,
        "mean_abs_pixel_change": float(np.abs(plain.astype(np.float32) - dropped.astype(np.float32)).mean()),
        "paper": {"n_samples": paper.FIG6_SAMPLES, "n_boxes": paper.FIG6_BOXES,
                  "n_maps_dropped": paper.FIG6_MAPS_DROPPED},
    }
    stats["provenance"] = io.provenance(config={"figures": figures, "common": common}, seed=seed,
                                        inputs={"model": model, **({"window_boxes": spec.source} if spec else {})},
                                        started=t0)
    io.write_json(stats_path, stats)
    cv = clf_stats["cv_accuracy"]
    shown = sorted({b["sample"] for b in boxes})[:cols]
    boxed = _draw_boxes(images, [b for b in boxes if b["sample"] in shown])[shown]
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=seed, notes=[
        f"Run '{ckpt['name']}' (figures.window_run; paper: LSUN bedrooms). Boxes: {src}. Layer {layer} counted "
        f"from z (figures.window_layer; paper: 2, 'the second highest', z's projection being the highest): module "
        f"'{stats['layer']['module']}', {'x'.join(map(str, acts.shape[1:]))}. Logistic regression on its {c_maps} "
        f"maps; {clf_stats['n_positive']} in-box positions vs "
        f"{clf_stats['n_negative']} random out-of-box positions of the same images; training accuracy "
        f"{clf_stats['train_accuracy']:.3f}" + (f", 5-fold CV {cv:.3f}" if cv is not None else "") +
        f". {len(drop)} maps with positive weight dropped at every position (paper: ~{paper.FIG6_MAPS_DROPPED} "
        f"from {paper.FIG6_BOXES} boxes on {paper.FIG6_SAMPLES} samples). Rendered beside "
        f"{figures['bn_reference']} reference z."])
    rows = [[Panel(image_grid(boxed, cols), f"boxes used ({'proxy' if spec is None else 'hand-drawn'}), "
                                            f"first {len(shown)} boxed samples")],
            [Panel(image_grid(plain, cols), "unmodified samples")],
            [Panel(image_grid(dropped, cols), f"same z, {len(drop)} 'window' maps dropped")]]
    render_figure(rows, title=figure_title("fig06", "PROXY boxes" if spec is None else ""), footer=foot, png=png,
                  pdf=pdf)
    return stats


def make_box_template(model: PathLike, out_dir: PathLike, *, n: int = paper.FIG6_SAMPLES, z_seed: int = 0,
                      device: str = "cpu") -> Path:
    """Write ``window_boxes.json`` (empty box list), ``window_boxes_sheet.png`` (all samples with their index)
    and ``samples/sample_NNN.png`` (each sample at its own pixel size, to read box coordinates from) into
    ``out_dir``; the images are exactly those :func:`fig06_window_dropout` boxes. Returns the JSON path."""
    from PIL import Image

    dev = runtime.resolve_device(device)
    netG, _, ckpt = models.load_checkpoint(model, dev)
    z = models.sample_z(n, netG.nz, models.z_dist(ckpt["run"]), generator=z_generator(z_seed))
    images, _ = generate_with_sites(netG, z)                                   # (n, H, W, C), one batch
    out = Path(out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        with io.atomic_path(out / "samples" / f"sample_{i:03d}.png") as tmp:
            Image.fromarray(im.squeeze(-1) if im.shape[2] == 1 else im).save(tmp, format="png")
    index_sheet(images, out / "window_boxes_sheet.png")
    h, w = images.shape[1:3]
    spec = {"samples": {"z_seed": int(z_seed), "n": int(n)}, "boxes": [], "model": str(model),
            "image_size": [int(h), int(w)],
            "note": ("Add one {\"sample\": i, \"x0\", \"y0\", \"x1\", \"y1\"} per window, in the pixels of "
                     "samples/sample_<i>.png (x right, y down, x1/y1 exclusive); the paper drew 52 boxes on 150 "
                     "samples. Then set figures.window_boxes to this file.")}
    io.write_json(out / "window_boxes.json", spec)
    log.info("wrote box template for %d samples to %s", n, out)
    return out / "window_boxes.json"
