"""Figs. 7 and 8 (Sec. 6.3.2, rules ``figures_fig07_vector_arithmetic`` and ``figures_fig08_turn_vector``): vector
arithmetic on face samples and a 'turn' vector.

The paper picked its exemplars by hand and gives no code (docs/REFERENCE.md Sec. 6). Here they are picked
automatically from a pool of ``figures.exemplar_pool`` samples by OpenCV Haar cascades (loaded with
``faces.load_cascade``), with documented fallbacks, unless ``figures.exemplar_ids`` lists them; the pool with
each sample's index, to choose from, is written by :func:`exemplar_pool_sheet`::

    python -m dcgan_repro.figures exemplar-pool --model results/models/faces/model.pt --out pool.png
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import faces, io, models, paper, runtime
from dcgan_repro.figures.layout import Panel, figure_title, footer_text, index_sheet, render_figure
from dcgan_repro.figures.runs import load_run, render, run_device, z_generator
from dcgan_repro.images import image_grid

log = logging.getLogger(__name__)
PathLike = io.PathLike


def _cascade(name: str) -> Any:
    """OpenCV's shipped cascade ``name``, through the project's one cascade loader (``faces.load_cascade``). The
    full path is passed so a file of that name in the working folder is never picked up instead."""
    try:
        return faces.load_cascade(str(Path(cv2.data.haarcascades) / name))
    except ValueError as e:  # its message names the config key faces.cascade, which is not the setting at fault here
        raise RuntimeError(f"OpenCV cascade {name} not found in {cv2.data.haarcascades} (needs opencv < 5)") from e


def _gray(images: np.ndarray) -> np.ndarray:
    rgb = images.astype(np.float32) if images.shape[3] == 3 else np.repeat(images.astype(np.float32), 3, 3)
    return (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).round().clip(0, 255).astype(np.uint8)


def cascade_counts(gray: np.ndarray, cascade: str, *, region: tuple[float, float, float, float] = (0, 0, 1, 1),
                   mirror: bool = False, min_size: int = 12, min_neighbors: int = 0) -> np.ndarray:
    """Detections of an OpenCV Haar cascade per image of ``gray`` (N, H, W) inside ``region`` (fractions y0, x0,
    y1, x1), on the mirrored image if ``mirror``. With ``min_neighbors=0`` these are the raw hits, whose number
    serves as a confidence score."""
    c = _cascade(cascade)
    n, h, w = gray.shape
    y0, x0, y1, x1 = int(region[0] * h), int(region[1] * w), int(region[2] * h), int(region[3] * w)
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        g = gray[i, y0:y1, x0:x1]
        g = np.ascontiguousarray(g[:, ::-1] if mirror else g)
        out[i] = len(c.detectMultiScale(g, scaleFactor=1.1, minNeighbors=min_neighbors, minSize=(min_size, min_size)))
    return out


def _ranks(v: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] (ties share their mean rank)."""
    from scipy.stats import rankdata

    return (rankdata(v) - 1) / max(1, len(v) - 1)


def attribute_values(images: np.ndarray, mode: str) -> dict[str, np.ndarray]:
    """Fig. 7 attribute scores of face samples (N, H, W, C): ``a2`` = mean luminance of the central half
    ("light face"); ``a1`` = raw smile-cascade detections in the lower half (``mode="smile"``) or mean luminance
    of the outer border, 1/8 of the side (``mode="background"``, "light background")."""
    gray = _gray(images)
    n, h, w = gray.shape
    out = {"a2": gray[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4].reshape(n, -1).mean(1)}
    if mode == "smile":
        out["a1"] = cascade_counts(gray, "haarcascade_smile.xml", region=(0.5, 0.0, 1.0, 1.0),
                                   min_size=8).astype(np.float64)
    elif mode == "background":
        b = max(1, h // 8)
        out["a1"] = np.concatenate([gray[:, :b].reshape(n, -1), gray[:, -b:].reshape(n, -1),
                                    gray[:, :, :b].reshape(n, -1), gray[:, :, -b:].reshape(n, -1)], 1).mean(1)
    else:
        raise ValueError(f"attribute mode {mode!r}; allowed: smile, background")
    return out


ATTRIBUTE_NAMES = {"smile": {"a1": "smiling", "a2": "light face"},
                   "background": {"a1": "light background", "a2": "light face"}}


def concept_mode(images: np.ndarray, k: int) -> tuple[str, np.ndarray]:
    """Which attributes Fig. 7 can use on this pool, and which samples may serve as exemplars.

    "smile" (OpenCV ``haarcascade_smile.xml``) only where ``haarcascade_frontalface_default.xml`` finds a face
    (the smile cascade also fires on noise), and only if at least ``3k`` samples have a face, ``k`` of them
    smile (a detection with 5 neighbours) and ``2k`` do not; otherwise the "background" fallback over all
    samples. Both are crude proxies for the paper's hand-picked concepts (e.g. smiling woman, neutral man).
    The face cascade looks at each sample with a replicated border of a quarter side: samples of a model trained
    on tight face crops fill the frame and leave the cascade no context (measured on the faces model trained on
    the LFW crops, 1000 samples: 14% found without the border, 92% with it).
    """
    gray = _gray(images)
    h = gray.shape[1]
    pad = h // 4
    framed = np.stack([cv2.copyMakeBorder(g, pad, pad, pad, pad, cv2.BORDER_REPLICATE) for g in gray])
    face = cascade_counts(framed, "haarcascade_frontalface_default.xml", min_size=max(12, h // 3),
                          min_neighbors=3) > 0
    smiling = cascade_counts(gray, "haarcascade_smile.xml", region=(0.5, 0.0, 1.0, 1.0), min_size=8,
                             min_neighbors=5) > 0
    if int(face.sum()) >= 3 * k and int((face & smiling).sum()) >= k and int((face & ~smiling).sum()) >= 2 * k:
        return "smile", face
    return "background", np.ones(len(gray), dtype=bool)


def pick_concepts(a1: np.ndarray, a2: np.ndarray, k: int, eligible: np.ndarray | None = None
                  ) -> dict[str, np.ndarray]:
    """Exemplar indices for Y = A - B + C: A = high a1 & high a2, B = low a1 & high a2, C = low a1 & low a2, so
    Y should show high a1 & low a2. Each is the top ``k`` of a sum of percentile ranks (among ``eligible``
    samples), without reuse."""
    idx = np.arange(len(a1)) if eligible is None else np.flatnonzero(eligible)
    if len(idx) < 3 * k:
        raise ValueError(f"need at least {3 * k} candidate samples for 3 concepts x {k} exemplars, got {len(idx)} "
                         f"(figures.exemplar_pool / figures.exemplars)")
    r1, r2 = _ranks(a1[idx]), _ranks(a2[idx])
    used: set[int] = set()
    out = {}
    for name, score in (("A", r1 + r2), ("B", -r1 + r2), ("C", -r1 - r2)):
        order = [int(i) for i in np.argsort(-score, kind="stable") if int(i) not in used][:k]
        used |= set(order)
        out[name] = idx[np.array(order)]
    return out


def arithmetic_z(zA: Tensor, zB: Tensor, zC: Tensor, noise: float, generator: torch.Generator) -> Tensor:
    """Fig. 7: Y = mean(zA) - mean(zB) + mean(zC); returns (9, nz) with Y at index 4 (the centre of a 3x3
    grid) and 8 neighbours Y + U(-noise, noise)."""
    y = zA.mean(0) - zB.mean(0) + zC.mean(0)                                   # (nz,)
    eps = (torch.rand(paper.FIG7_NEIGHBOURS, y.shape[0], generator=generator) * 2 - 1) * noise  # (8, nz)
    nb = y[None] + eps
    return torch.cat([nb[:4], y[None], nb[4:]])                                 # (9, nz)


def _pool(netG: nn.Module, ckpt: dict[str, Any], figures: dict[str, Any]
          ) -> tuple[torch.Generator, Tensor, Tensor, np.ndarray]:
    """Figure-seed generator, reference z, pool z and pool images (rendered beside the reference)."""
    dist, nz = models.z_dist(ckpt["run"]), netG.nz
    g = z_generator(figures["seed"])
    ref = models.sample_z(figures["bn_reference"], nz, dist, generator=g)       # (M, nz)
    pool_z = models.sample_z(figures["exemplar_pool"], nz, dist, generator=g)   # (P, nz)
    return g, ref, pool_z, render(netG, pool_z, ref)


def fig07_vector_arithmetic(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                            figures: dict[str, Any], common: dict[str, Any],
                            exemplar_ids: dict[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Fig. 7 (Sec. 6.3.2): average Z of ``exemplars`` samples per concept, Y = A - B + C, Y and 8 neighbours
    with uniform noise ``arithmetic_noise``; the same arithmetic in pixel space for comparison.

    ``exemplar_ids`` ({"A": [...], "B": [...], "C": [...]}, indices into the pool of ``exemplar_pool`` samples)
    overrides the automatic choice (:func:`concept_mode`, :func:`attribute_values`, :func:`pick_concepts`).
    Returns what was chosen, with Y's measured attribute percentiles in the pool (a check that the arithmetic
    did something).
    """
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    k = figures["exemplars"]
    g, ref, pool_z, pool = _pool(netG, ckpt, figures)
    mode, eligible = concept_mode(pool, k)
    attrs, names, fallback = attribute_values(pool, mode), ATTRIBUTE_NAMES[mode], mode != "smile"
    if exemplar_ids:
        picks = {c: np.asarray(exemplar_ids[c], dtype=np.int64).reshape(-1) for c in "ABC"}
        bad = {c: v.tolist() for c, v in picks.items() if len(v) == 0 or v.min() < 0 or v.max() >= len(pool)}
        if bad:
            raise ValueError(f"figures.exemplar_ids: {bad} are not non-empty lists of sample indices in "
                             f"[0, {len(pool)}) (figures.exemplar_pool = {len(pool)})")
        how = "exemplars listed by the user"
    else:
        picks = pick_concepts(attrs["a1"], attrs["a2"], k, eligible)
        how = (f"exemplars picked AUTOMATICALLY from {len(pool)} samples by proxy attributes: "
               f"'{names['a1']}'" + (" (FALLBACK: too few samples with a frontal face and a smile for the OpenCV "
                                     "smile cascade)" if fallback else
                                     f" (OpenCV haarcascade_smile.xml on the lower half of the {int(eligible.sum())} "
                                     "samples with a frontal-face detection)") +
               f" and '{names['a2']}' (mean luminance of the central region)")
    zs = {c: pool_z[picks[c]] for c in "ABC"}
    z9 = arithmetic_z(zs["A"], zs["B"], zs["C"], figures["arithmetic_noise"], g)
    means = torch.stack([zs[c].mean(0) for c in "ABC"])                        # (3, nz)
    imgs = render(netG, torch.cat([means, z9]), ref)                           # (12, H, W, C)
    mean_imgs, result = imgs[:3], imgs[3:]
    pix = (pool[picks["A"]].astype(np.float32).mean(0) - pool[picks["B"]].astype(np.float32).mean(0)
           + pool[picks["C"]].astype(np.float32).mean(0)).round().clip(0, 255).astype(np.uint8)
    # where Y's image lands among the pool (percentiles of the same attributes)
    y_attrs = attribute_values(result[4:5], mode)
    pct = {a: float((attrs[a][eligible] < y_attrs[a][0]).mean() * 100) for a in ("a1", "a2")}
    lab = {"A": f"A: {names['a1']}, {names['a2']}", "B": f"- B: not {names['a1']}, {names['a2']}",
           "C": f"+ C: not {names['a1']}, not {names['a2']}"}
    panels = [Panel(image_grid(np.concatenate([pool[picks[c]], mean_imgs[i:i + 1]]), 1), lab[c])
              for i, c in enumerate("ABC")]
    panels.append(Panel(image_grid(result, 3), f"= Y (centre), Y + U(±{figures['arithmetic_noise']})"))
    panels.append(Panel(image_grid(pix[None], 1), "pixel space A-B+C"))
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"Concepts: {how}. Columns: {k} exemplars and, below, G(mean z). Expected: Y shows '{names['a1']}' and "
        f"not '{names['a2']}'; measured percentiles of Y in the pool: {names['a1']} {pct['a1']:.0f}, "
        f"{names['a2']} {pct['a2']:.0f}. Rendered beside {figures['bn_reference']} reference z."])
    render_figure([panels], title=figure_title("fig07", "automatic proxy exemplars" if not exemplar_ids else ""),
                  footer=foot, png=png, pdf=pdf)
    return {"picks": {c: v.tolist() for c, v in picks.items()}, "attributes": names, "fallback": fallback,
            "y_percentiles": pct}


def exemplar_pool_sheet(model: PathLike, out: PathLike, *, figures: dict[str, Any], device: str = "cpu") -> Path:
    """Fig. 7 by hand: write the ``exemplar_pool`` samples that :func:`fig07_vector_arithmetic` draws (same
    ``figures.seed``, ``bn_reference`` and ``exemplar_pool``), each labelled with its index, so a user can pick
    concepts A, B, C (e.g. smiling woman, neutral woman, neutral man) and set ``figures.exemplar_ids``."""
    netG, _, ckpt = models.load_checkpoint(model, runtime.resolve_device(device))
    _, _, _, pool = _pool(netG, ckpt, figures)
    index_sheet(pool, out, cols=25)
    log.info("wrote the %d Fig. 7 pool samples with their indices to %s", len(pool), out)
    return Path(out)


def turn_scores(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 8 pose score per face sample: > 0 looking left (nose toward the image's left), < 0 looking right.

    OpenCV's ``haarcascade_profileface.xml`` detects left-facing profiles only; run on the image it counts
    left-looking evidence, on the mirror image right-looking evidence; the score is the difference of raw
    detection counts. Returns (score (N,), counts (2, N): left, right). See :func:`fig08_turn_vector` for the
    fallback when the cascade finds too few profiles.
    """
    gray = _gray(images)
    left = cascade_counts(gray, "haarcascade_profileface.xml", min_size=max(12, gray.shape[1] // 3))
    right = cascade_counts(gray, "haarcascade_profileface.xml", mirror=True, min_size=max(12, gray.shape[1] // 3))
    score = (left - right).astype(np.float64)
    return score, np.stack([left, right])


def luminance_offset(images: np.ndarray) -> np.ndarray:
    """Fallback pose proxy: horizontal offset of the luminance centroid from the image centre, in fractions
    of the width (negative = the bright face mass sits left, read as looking left). Crude: lighting moves it."""
    lum = _gray(images).astype(np.float64)                                     # (N, H, W)
    w = lum.shape[2]
    x = (np.arange(w) + 0.5) / w - 0.5                                         # (W,)
    col = lum.sum(1)                                                           # (N, W)
    return (col * x).sum(1) / np.maximum(col.sum(1), 1e-9)


def fig08_turn_vector(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike, *,
                      figures: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """Fig. 8 (Sec. 6.3.2): turn = mean z of ``turn_exemplars`` left-looking minus right-looking faces;
    rows are random faces z + a * turn for a from -1 to 1 (``interp_steps + 1`` columns).

    Left/right come from the profile cascade (:func:`turn_scores`); when it fires on fewer than
    ``turn_exemplars`` samples per direction (tiny demo models), the luminance-centroid proxy
    (:func:`luminance_offset`) decides instead and the title and footer say so.
    """
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    k = figures["turn_exemplars"]
    g, ref, pool_z, pool = _pool(netG, ckpt, figures)
    score, counts = turn_scores(pool)
    proxy = int((score > 0).sum()) < k or int((score < 0).sum()) < k
    if proxy:
        score = -luminance_offset(pool)
    order = np.argsort(-score, kind="stable")
    left, right = order[:k].copy(), order[::-1][:k].copy()
    turn = pool_z[left].mean(0) - pool_z[right].mean(0)                        # (nz,)
    rows, cols = figures["interp_rows"], figures["interp_steps"] + 1
    base = models.sample_z(rows, netG.nz, models.z_dist(ckpt["run"]), generator=g)  # (rows, nz)
    alphas = torch.linspace(-1, 1, cols)                                       # (cols,)
    z = (base[:, None, :] + alphas[None, :, None] * turn[None, None, :]).reshape(-1, netG.nz)  # (rows*cols, nz)
    imgs = render(netG, z, ref)
    how = ("AUTOMATIC PROXY: the profile-face cascade fired on too few samples "
           f"({int((counts[0] > 0).sum())} left, {int((counts[1] > 0).sum())} right of {len(pool)}), so 'looking "
           "left' = luminance centroid left of centre (crude; lighting also moves it)") if proxy else (
           f"left/right from OpenCV haarcascade_profileface.xml on each sample and its mirror image "
           f"({len(pool)} samples scored)")
    panels = [[Panel(image_grid(pool[left], k), f"{k} 'looking left'"),
               Panel(image_grid(pool[right], k), f"{k} 'looking right'")],
              [Panel(image_grid(imgs, cols), "z + a·turn, a = -1 (left column) ... +1 (right column)")]]
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=figures["seed"], notes=[
        f"turn = mean z of {k} left-looking minus {k} right-looking samples; {how}. Rendered beside "
        f"{figures['bn_reference']} reference z."])
    render_figure(panels, title=figure_title("fig08", "PROXY pose" if proxy else ""), footer=foot, png=png, pdf=pdf)
    return {"proxy_used": proxy, "left": left.tolist(), "right": right.tolist(),
            "turn_norm": float(turn.norm())}
