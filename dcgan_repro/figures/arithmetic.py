"""Figs. 7 and 8 (Sec. 6.3.2, rules ``figures_fig07_vector_arithmetic`` and ``figures_fig08_turn_vector``): vector
arithmetic on face samples and a 'turn' vector, each with the effect it claims measured.

Exemplars. The paper's authors picked exemplars by hand and give no code (docs/REFERENCE.md Sec. 6). So can a user
here: ``figures.exemplar_ids`` (Fig. 7, per equation) and ``figures.turn_ids`` (Fig. 8) list indices into a pool of
``figures.exemplar_pool`` samples (same ``seed`` and ``bn_reference``), drawn with their indices by
:func:`exemplar_pool_sheet`::

    python -m dcgan_repro.figures exemplar-pool --model results/models/faces/model.pt --out pool.png

Left null, the exemplars are picked automatically by the measures of :mod:`.measures` and the figure says it used
this proxy (the measures see the target attribute only, not e.g. gender).

Fig. 7 draws the paper's equations, each in its own row with its pixel-space counterpart (the paper's "bottom two
examples"): smiling woman - neutral woman + neutral man (target: smile) and man with glasses - man without glasses
+ woman without glasses (target: glasses). What is measured (:func:`arithmetic_effect`): over
``figures.measure_draws`` random draws of ``exemplars`` exemplars per concept from the listed exemplars, the share
of results Y = mean(A) - mean(B) + mean(C) whose target score lies in the pool's top quarter (a random sample:
25% by construction), beside the same for single exemplars (the paper: "unstable") and for C alone (G(mean z_C):
what the arithmetic added). An equation is left out, with the reason in the footer, when the pool holds fewer than
``exemplars`` samples that score like real faces with the attribute (``measures.REAL_FACE_THRESHOLDS``) and no
exemplars were listed by hand.

Fig. 8: turn = mean z of ``turn_exemplars`` faces looking left minus looking right; rows are random faces
z + a * turn, a from -1 to 1. What is measured (:func:`turn_effect`): the pose score (``measures.pose_score``)
of ``figures.measure_draws`` random faces along the axis, as the median per-face Spearman rho with a, the share of
faces whose pose rises with a, and the pooled slope (pose score per unit a, with a bootstrap 95% interval over
faces), also in units of the pool's pose spread; as a control, the same for :data:`RANDOM_DIRECTIONS` random
directions of the same length (any smooth change of the image moves a measure monotonically over a short path, so
the turn's slope is compared with theirs, not with zero).

Each figure writes its numbers into a JSON and a one-line-per-measure CSV beside its PNG.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from dcgan_repro import io, models, paper, runtime
from dcgan_repro.figures import measures
from dcgan_repro.figures.layout import Panel, figure_title, footer_text, index_sheet, render_figure
from dcgan_repro.figures.runs import load_run, render, run_device, z_generator
from dcgan_repro.images import image_grid

log = logging.getLogger(__name__)
PathLike = io.PathLike

SUCCESS_QUANTILE = 0.75  # Fig. 7 success: Y's target score in the pool's top quarter (a random sample: 25%)
RANDOM_DIRECTIONS = 8    # Fig. 8 control: random directions of the turn's length ...
CONTROL_FACES = 50       # ... each measured on this many of the random faces


@dataclass(frozen=True)
class Equation:
    """One Fig. 7 equation A - B + C (the paper's concepts) and the attribute it should add."""

    key: str
    target: str                       # a measures.ATTRIBUTES name
    concepts: tuple[str, str, str]    # A, B, C as the paper names them
    result: str


EQUATIONS = {
    "smile": Equation("smile", "smile", ("smiling woman", "neutral woman", "neutral man"), "smiling man"),
    "glasses": Equation("glasses", "glasses", ("man with glasses", "man without glasses", "woman without glasses"),
                        "woman with glasses"),
}


def normalize_exemplar_ids(ids: Mapping[str, Any] | None) -> dict[str, dict[str, list[int]]]:
    """``figures.exemplar_ids`` as {equation: {"A": [...], "B": [...], "C": [...]}}; a bare {A, B, C} is the
    smile equation (the paper's first); null = {} (all automatic)."""
    if not ids:
        return {}
    if set(ids) == {"A", "B", "C"}:
        ids = {"smile": ids}
    bad = set(ids) - set(EQUATIONS)
    if bad:
        raise ValueError(f"figures.exemplar_ids: unknown equation(s) {sorted(bad)}; allowed: {sorted(EQUATIONS)} "
                         "(or a bare {A, B, C} for the smile equation)")
    out = {}
    for eq, abc in ids.items():
        if not isinstance(abc, Mapping) or set(abc) != {"A", "B", "C"}:
            raise ValueError(f"figures.exemplar_ids.{eq} must be {{A: [..], B: [..], C: [..]}}, got {abc!r}")
        out[eq] = {c: [int(i) for i in np.asarray(abc[c]).reshape(-1)] for c in "ABC"}
    return out


def _check_ids(ids: Mapping[str, Sequence[int]], n_pool: int, setting: str) -> None:
    bad = {c: list(v) for c, v in ids.items() if len(v) == 0 or min(v) < 0 or max(v) >= n_pool}
    if bad:
        raise ValueError(f"{setting}: {bad} are not non-empty lists of sample indices in [0, {n_pool}) "
                         f"(figures.exemplar_pool = {n_pool})")


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


def _wilson(k: int, n: int) -> list[float]:
    """95% Wilson interval of a proportion k / n."""
    if n == 0:
        return [float("nan"), float("nan")]
    p, zz = k / n, 1.959964
    c = (p + zz * zz / (2 * n)) / (1 + zz * zz / n)
    h = zz * math.sqrt(p * (1 - p) / n + zz * zz / (4 * n * n)) / (1 + zz * zz / n)
    return [max(0.0, c - h), min(1.0, c + h)]


def auto_concepts(score: np.ndarray, k: int, threshold: float, rng: np.random.Generator
                  ) -> dict[str, np.ndarray] | str:
    """Automatic (proxy) exemplar lists for A - B + C from the target scores of the pool: A = the up to ``3k``
    highest-scoring samples above ``threshold`` (those that score like a real face with the attribute), B and C
    = two disjoint random sets of ``3k`` samples below the pool's median. Returns the reason as a string when
    fewer than ``k`` samples pass the threshold."""
    above = np.flatnonzero(score > threshold)
    if len(above) < k:
        return (f"only {len(above)} of {len(score)} pool samples score above the real-face threshold "
                f"{threshold:.3g} (fewer than the {k} exemplars A needs)")
    a = above[np.argsort(-score[above], kind="stable")][:3 * k]
    low = rng.permutation(np.flatnonzero(score < np.median(score)))
    m = min(3 * k, len(low) // 2)
    if m < k:
        return f"too few samples below the pool median ({len(low)}) for B and C"
    return {"A": a, "B": low[:m], "C": low[m:2 * m]}


def arithmetic_effect(netG: nn.Module, pool_z: Tensor, ref: Tensor, lists: Mapping[str, Sequence[int]],
                      score_fn: Any, pool_scores: np.ndarray, *, k: int, draws: int, seed: int) -> dict[str, Any]:
    """Fig. 7's measured claim for one equation (module docstring): ``draws`` random draws of ``k`` exemplars
    (and of single exemplars) per concept from ``lists``; the share of Y whose target score reaches the pool's
    :data:`SUCCESS_QUANTILE` quantile, with 95% Wilson intervals, and Y's median percentile in the pool; the
    same for G(mean z_C). A list shorter than ``k`` is drawn with replacement."""
    rng = np.random.default_rng(seed)
    lists = {c: np.asarray(v, dtype=np.int64) for c, v in lists.items()}

    def pick(c: str, n: int) -> np.ndarray:
        return rng.choice(lists[c], size=n, replace=len(lists[c]) < n)

    zk, z1, zc = [], [], []
    for _ in range(draws):
        a, b, c = pick("A", k), pick("B", k), pick("C", k)
        zk.append(pool_z[a].mean(0) - pool_z[b].mean(0) + pool_z[c].mean(0))    # (nz,)
        zc.append(pool_z[c].mean(0))
        a1, b1, c1 = pick("A", 1), pick("B", 1), pick("C", 1)
        z1.append(pool_z[a1[0]] - pool_z[b1[0]] + pool_z[c1[0]])
    imgs = render(netG, torch.stack(zk + z1 + zc), ref)                        # (3 * draws, H, W, C)
    s = score_fn(imgs).reshape(3, draws)                                       # rows: k, 1, C alone
    thr = float(np.quantile(pool_scores, SUCCESS_QUANTILE))
    out: dict[str, Any] = {"draws": draws, "k": k, "success_threshold": thr,
                           "success_quantile": SUCCESS_QUANTILE, "random_sample_rate": 1 - SUCCESS_QUANTILE}
    for name, row in zip((f"mean_of_{k}", "single", "c_alone"), s):
        hits = int((row > thr).sum())
        out[name] = {"success_rate": hits / draws, "ci95": _wilson(hits, draws),
                     "median_percentile": float(np.median(measures.percentile_in(row, pool_scores))),
                     "mean_score": float(row.mean())}
    return out


def _neighbour_spread(result: np.ndarray, pool: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """Mean absolute pixel difference between Y's 8 neighbours and Y, and between random pairs of pool samples
    (how much the ±noise changes the image, relative to how different two samples are)."""
    y = result[4].astype(np.float32)
    nb = np.delete(result, 4, axis=0).astype(np.float32)
    i, j = rng.integers(0, len(pool), (2, 200))
    return {"neighbours_vs_y": float(np.abs(nb - y).mean()),
            "random_pairs": float(np.abs(pool[i].astype(np.float32) - pool[j].astype(np.float32)).mean())}


def _write_csv(path: PathLike, rows: Sequence[dict[str, Any]]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def fig07_vector_arithmetic(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike,
                            stats_json: PathLike | None = None, stats_csv: PathLike | None = None, *,
                            figures: dict[str, Any], common: dict[str, Any],
                            exemplar_ids: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fig. 7 (Sec. 6.3.2): for each equation of :data:`EQUATIONS`, the exemplars (``exemplars`` per concept, the
    first of each list) with G(mean z) below them, Y = A - B + C with 8 neighbours Y + U(±``arithmetic_noise``),
    and the same arithmetic in pixel space; the measured effect (:func:`arithmetic_effect`) in the footer and in
    ``stats_json`` / ``stats_csv``. ``exemplar_ids`` (module docstring; :func:`normalize_exemplar_ids`) lists
    exemplars by hand; equations it leaves out are picked automatically (:func:`auto_concepts`). Returns the
    statistics written."""
    t0 = time.time()
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    k, draws, seed = figures["exemplars"], figures["measure_draws"], figures["seed"]
    g, ref, pool_z, pool = _pool(netG, ckpt, figures)
    hand = normalize_exemplar_ids(exemplar_ids)
    rng = np.random.default_rng(seed)
    rows, notes, stats_eq, csv_rows = [], [], {}, []
    for key, eq in EQUATIONS.items():
        score_fn = measures.ATTRIBUTES[eq.target]
        pool_scores = score_fn(pool)
        if key in hand:
            _check_ids(hand[key], len(pool), f"figures.exemplar_ids.{key}")
            lists = {c: np.asarray(v, dtype=np.int64) for c, v in hand[key].items()}
            source = "hand-picked (figures.exemplar_ids)"
        else:
            found = auto_concepts(pool_scores, k, measures.REAL_FACE_THRESHOLDS[eq.target], rng)
            if isinstance(found, str):
                notes.append(f"'{eq.concepts[0]} - {eq.concepts[1]} + {eq.concepts[2]}' NOT DRAWN: {found}; list its "
                             f"exemplars by hand in figures.exemplar_ids.{key} if the pool has them.")
                stats_eq[key] = {"drawn": False, "reason": found}
                csv_rows.append({"figure": "fig07", "equation": key, "measure": f"NOT DRAWN: {found}"})
                continue
            lists = found
            source = (f"AUTOMATIC PROXY: A = highest {eq.target} scores, B and C = random low scorers (the measure "
                      "sees the target only, not who the face is)")
        shown = {c: lists[c][:k] for c in "ABC"}
        zs = {c: pool_z[shown[c]] for c in "ABC"}
        z9 = arithmetic_z(zs["A"], zs["B"], zs["C"], figures["arithmetic_noise"], g)
        means = torch.stack([zs[c].mean(0) for c in "ABC"])                    # (3, nz)
        imgs = render(netG, torch.cat([means, z9]), ref)                       # (12, H, W, C)
        mean_imgs, result = imgs[:3], imgs[3:]
        pix = (pool[shown["A"]].astype(np.float32).mean(0) - pool[shown["B"]].astype(np.float32).mean(0)
               + pool[shown["C"]].astype(np.float32).mean(0)).round().clip(0, 255).astype(np.uint8)
        shown_pct = measures.percentile_in(score_fn(np.stack([result[4], pix])), pool_scores)
        effect = arithmetic_effect(netG, pool_z, ref, lists, score_fn, pool_scores, k=k, draws=draws,
                                   seed=seed + len(stats_eq))
        spread = _neighbour_spread(result, pool, rng)
        stats_eq[key] = {"drawn": True, "equation": f"{' - '.join(eq.concepts[:2])} + {eq.concepts[2]}",
                         "target": eq.target, "source": source,
                         "exemplars": {c: [int(i) for i in lists[c]] for c in "ABC"},
                         "shown": {c: [int(i) for i in shown[c]] for c in "ABC"},
                         "y_shown_percentile": float(shown_pct[0]), "pixel_space_percentile": float(shown_pct[1]),
                         "neighbour_spread": spread, **effect}
        mk, m1, mc = effect[f"mean_of_{k}"], effect["single"], effect["c_alone"]
        csv_rows.append({"figure": "fig07", "equation": key, "measure": f"{eq.target} score in the pool's top quarter",
                         "exemplars": "hand" if key in hand else "automatic proxy", "draws": draws,
                         f"rate_mean_of_{k}": round(mk["success_rate"], 3), "rate_single": round(m1["success_rate"], 3),
                         "rate_c_alone": round(mc["success_rate"], 3), "rate_random_sample": 1 - SUCCESS_QUANTILE,
                         "shown_y_percentile": round(float(shown_pct[0]), 1)})
        a, b, c = eq.concepts
        lab = {"A": f"A: {a}", "B": f"- B: {b}", "C": f"+ C: {c}"}
        row = [Panel(image_grid(np.concatenate([pool[shown[c]], mean_imgs[i:i + 1]]), 1), lab[c])
               for i, c in enumerate("ABC")]
        row.append(Panel(image_grid(result, 3), f"= Y ({eq.result}?), Y + U(±{figures['arithmetic_noise']})"))
        row.append(Panel(image_grid(pix[None], 1), "pixel space"))
        rows.append(row)
        notes.append(
            f"{eq.result.capitalize()} = {a} - {b} + {c}, exemplars {source}: over {draws} random draws of {k} "
            f"exemplars per concept from the {'/'.join(str(len(lists[c])) for c in 'ABC')} listed (A/B/C), Y's "
            f"{eq.target} score is in the pool's top quarter {100 * mk['success_rate']:.0f}% of the time (95% CI "
            f"{100 * mk['ci95'][0]:.0f}-{100 * mk['ci95'][1]:.0f}%); single exemplars {100 * m1['success_rate']:.0f}%; "
            f"C alone {100 * mc['success_rate']:.0f}%; a random sample 25%. Y shown: percentile "
            f"{shown_pct[0]:.0f}, pixel space {shown_pct[1]:.0f}. Neighbours differ from Y by "
            f"{spread['neighbours_vs_y']:.1f} grey levels on average (two random samples: "
            f"{spread['random_pairs']:.1f}).")
    drawn = [key for key, st in stats_eq.items() if st["drawn"]]
    suffix = ("NO EQUATION DRAWN, see the footer" if not drawn else
              "" if all(key in hand for key in drawn) else "automatic proxy exemplars")
    if not rows:  # nothing to draw: show what the pool has, so the footer's reason can be seen
        rows.append([Panel(image_grid(pool[np.argsort(-measures.ATTRIBUTES[eq.target](pool), kind="stable")[:k]], k),
                           f"highest {eq.target} scores in the pool") for eq in EQUATIONS.values()])
    stats = {"figure": "fig07_vector_arithmetic", "run": ckpt["name"], "epoch": ckpt["epoch"],
             "pool": len(pool), "exemplars_per_concept": k, "equations": stats_eq,
             "measures": {eq.target: f"dcgan_repro.figures.measures.{measures.ATTRIBUTES[eq.target].__name__}"
                          for eq in EQUATIONS.values()},
             "provenance": io.provenance(config={"figures": figures, "common": common}, seed=seed,
                                         inputs={"model": model}, started=t0)}
    if stats_json is not None:
        io.write_json(stats_json, stats)
    if stats_csv is not None and csv_rows:
        _write_csv(stats_csv, csv_rows)
    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=seed, notes=[
        f"Each row: {k} exemplars per concept with G(mean z) below them; Y and 8 neighbours; the same arithmetic on "
        f"the exemplar images (pixel space). Scores: dcgan_repro.figures.measures (checked on real LFW faces). "
        f"Pool: {len(pool)} samples; rendered beside {figures['bn_reference']} reference z.", *notes])
    render_figure(rows, title=figure_title("fig07", suffix), footer=foot, png=png, pdf=pdf)
    return stats


def exemplar_pool_sheet(model: PathLike, out: PathLike, *, figures: dict[str, Any], device: str = "cpu") -> Path:
    """Figs. 7 and 8 by hand: write the ``exemplar_pool`` samples that :func:`fig07_vector_arithmetic` and
    :func:`fig08_turn_vector` draw (same ``figures.seed``, ``bn_reference`` and ``exemplar_pool``), each labelled
    with its index, so a user can pick concepts (e.g. smiling woman, neutral woman, neutral man) and faces looking
    left / right, and set ``figures.exemplar_ids`` and ``figures.turn_ids``."""
    netG, _, ckpt = models.load_checkpoint(model, runtime.resolve_device(device))
    _, _, _, pool = _pool(netG, ckpt, figures)
    index_sheet(pool, out, cols=25)
    log.info("wrote the %d Figs. 7, 8 pool samples with their indices to %s", len(pool), out)
    return Path(out)


def turn_effect(netG: nn.Module, base: Tensor, direction: Tensor, alphas: Tensor, ref: Tensor,
                pool_pose: np.ndarray, *, seed: int) -> dict[str, Any]:
    """Fig. 8's measured claim: the pose score (``measures.pose_score``) of every face of ``base`` (F, nz) at
    z + a * ``direction`` for each a of ``alphas``; per-face Spearman rho with a (median, share > 0), the pooled
    slope of pose on a within faces (pose units per unit a, bootstrap 95% interval over faces, 1000 resamples),
    and that slope times the range of a in units of the pool's pose standard deviation."""
    from scipy.stats import spearmanr

    f, c = len(base), len(alphas)
    z = (base[:, None, :] + alphas[None, :, None] * direction[None, None, :]).reshape(-1, base.shape[1])
    pose = measures.pose_score(render(netG, z, ref)).reshape(f, c)            # (F, cols)
    a = alphas.numpy().astype(np.float64)
    rho = np.array([spearmanr(a, p).statistic if np.ptp(p) > 0 else 0.0 for p in pose])
    ac = a - a.mean()
    slopes = (pose - pose.mean(1, keepdims=True)) @ ac / (ac @ ac)           # (F,) per-face least squares
    rng = np.random.default_rng(seed)
    boot = np.array([slopes[rng.integers(0, f, f)].mean() for _ in range(1000)])
    sd = float(pool_pose.std())
    return {"faces": f, "alphas": a.tolist(), "median_spearman_rho": float(np.median(rho)),
            "share_rho_positive": float((rho > 0).mean()), "slope_per_unit_a": float(slopes.mean()),
            "slope_ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "change_over_range_in_pool_sd": float(slopes.mean() * (a.max() - a.min()) / sd) if sd > 0 else 0.0,
            "mean_pose_by_a": pose.mean(0).tolist()}


def fig08_turn_vector(model: PathLike, data_dir: PathLike | None, png: PathLike, pdf: PathLike,
                      stats_json: PathLike | None = None, stats_csv: PathLike | None = None, *,
                      figures: dict[str, Any], common: dict[str, Any],
                      turn_ids: Mapping[str, Sequence[int]] | None = None) -> dict[str, Any]:
    """Fig. 8 (Sec. 6.3.2): turn = mean z of the first ``turn_exemplars`` faces looking left minus looking
    right (``turn_ids`` {"left": [...], "right": [...]} pool indices picked by hand, or automatically the extremes
    of ``measures.pose_score``, said to be a proxy); ``grid_rows`` random faces z + a * turn, a from -1 to 1 in
    ``interp_steps + 1`` columns; the measured trend (:func:`turn_effect`) for ``measure_draws`` random faces,
    and for a random direction of the same length, in the footer and in ``stats_json`` / ``stats_csv``."""
    t0 = time.time()
    dev = run_device(common)
    netG, _, ckpt = load_run(model, dev)
    k, seed = figures["turn_exemplars"], figures["seed"]
    g, ref, pool_z, pool = _pool(netG, ckpt, figures)
    pool_pose = measures.pose_score(pool)
    if turn_ids:
        if set(turn_ids) != {"left", "right"}:
            raise ValueError(f"figures.turn_ids must be {{left: [..], right: [..]}}, got keys {sorted(turn_ids)}")
        ids = {d: [int(i) for i in turn_ids[d]] for d in ("left", "right")}
        _check_ids(ids, len(pool), "figures.turn_ids")
        left, right = np.array(ids["left"][:k]), np.array(ids["right"][:k])
        how = "faces looking left / right hand-picked from the pool (figures.turn_ids)"
    else:
        order = np.argsort(-pool_pose, kind="stable")
        left, right = order[:k].copy(), order[::-1][:k].copy()
        how = (f"AUTOMATIC PROXY: the {k} highest and lowest pose scores of {len(pool)} samples "
               "(dcgan_repro.figures.measures.pose_score)")
    turn = pool_z[left].mean(0) - pool_z[right].mean(0)                        # (nz,)
    dist, nz = models.z_dist(ckpt["run"]), netG.nz
    rows, cols = figures["grid_rows"], figures["interp_steps"] + 1
    alphas = torch.linspace(-1, 1, cols)                                       # (cols,)
    base = models.sample_z(rows, nz, dist, generator=g)                        # (rows, nz)
    z = (base[:, None, :] + alphas[None, :, None] * turn[None, None, :]).reshape(-1, nz)  # (rows*cols, nz)
    imgs = render(netG, z, ref)
    faces = models.sample_z(figures["measure_draws"], nz, dist, generator=g)   # (F, nz)
    rand_dirs = torch.randn(RANDOM_DIRECTIONS, nz, generator=g)
    rand_dirs = rand_dirs / rand_dirs.norm(dim=1, keepdim=True) * turn.norm()   # (R, nz), the turn's length
    effect = turn_effect(netG, faces, turn, alphas, ref, pool_pose, seed=seed)
    controls = [turn_effect(netG, faces[:CONTROL_FACES], d, alphas, ref, pool_pose, seed=seed + 1 + i)
                for i, d in enumerate(rand_dirs)]
    sizes = np.array([abs(c["change_over_range_in_pool_sd"]) for c in controls])
    control = {"directions": RANDOM_DIRECTIONS, "faces_each": min(CONTROL_FACES, len(faces)),
               "abs_change_in_pool_sd_median": float(np.median(sizes)), "abs_change_in_pool_sd_max": float(sizes.max()),
               "turn_exceeds_every_random_direction": bool(abs(effect["change_over_range_in_pool_sd"]) > sizes.max()),
               "each": controls}
    stats = {"figure": "fig08_turn_vector", "run": ckpt["name"], "epoch": ckpt["epoch"],
             "exemplars": "hand" if turn_ids else "automatic proxy", "left": left.tolist(), "right": right.tolist(),
             "left_pose_percentile": measures.percentile_in(pool_pose[left], pool_pose).tolist(),
             "right_pose_percentile": measures.percentile_in(pool_pose[right], pool_pose).tolist(),
             "turn_norm": float(turn.norm()), "measure": "dcgan_repro.figures.measures.pose_score (> 0: nose toward "
             "the image's left)", "turn": effect, "random_directions": control,
             "provenance": io.provenance(config={"figures": figures, "common": common}, seed=seed,
                                         inputs={"model": model}, started=t0)}
    if stats_json is not None:
        io.write_json(stats_json, stats)
    if stats_csv is not None:
        _write_csv(stats_csv, [{"figure": "fig08", "direction": name, "measure": "pose score along z + a*direction",
                                "exemplars": stats["exemplars"], "faces": e["faces"],
                                "median_spearman_rho": round(e["median_spearman_rho"], 3),
                                "share_rho_positive": round(e["share_rho_positive"], 3),
                                "slope_per_unit_a": round(e["slope_per_unit_a"], 4),
                                "slope_ci95_low": round(e["slope_ci95"][0], 4),
                                "slope_ci95_high": round(e["slope_ci95"][1], 4),
                                "change_over_range_in_pool_sd": round(e["change_over_range_in_pool_sd"], 3)}
                               for name, e in (("turn", effect),
                                               *((f"random_same_length_{i + 1}", c) for i, c in enumerate(controls)))])
    panels = [[Panel(image_grid(pool[left], k), f"{k} 'looking left'"),
               Panel(image_grid(pool[right], k), f"{k} 'looking right'")],
              [Panel(image_grid(imgs, cols), "z + a·turn, a = -1 (left column) ... +1 (right column)")]]

    def said(e: dict[str, Any]) -> str:
        return (f"median Spearman rho {e['median_spearman_rho']:+.2f}, rising for {100 * e['share_rho_positive']:.0f}% "
                f"of faces, slope {e['slope_per_unit_a']:+.3g} per unit a (95% CI {e['slope_ci95'][0]:+.3g} to "
                f"{e['slope_ci95'][1]:+.3g}) = {e['change_over_range_in_pool_sd']:+.2f} pool SD from a = -1 to +1")

    foot = footer_text([ckpt], data_dir, preset=common["preset"], seed=seed, notes=[
        f"turn = mean z of {k} left-looking minus {k} right-looking samples; {how}. Rendered beside "
        f"{figures['bn_reference']} reference z.",
        f"Measured on {effect['faces']} random faces at the {cols} values of a (pose score > 0 = nose toward the "
        f"image's left, checked on real LFW faces): turn: {said(effect)}. Control, {RANDOM_DIRECTIONS} random "
        f"directions of the same length ({control['faces_each']} faces each): |change| median "
        f"{control['abs_change_in_pool_sd_median']:.2f}, max {control['abs_change_in_pool_sd_max']:.2f} pool SD: the "
        f"turn's change {'EXCEEDS' if control['turn_exceeds_every_random_direction'] else 'does NOT exceed'} every "
        "random direction's."])
    render_figure(panels, title=figure_title("fig08", "" if turn_ids else "automatic proxy exemplars"), footer=foot,
                  png=png, pdf=pdf)
    return stats
