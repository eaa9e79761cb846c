"""``table4_ablations``: every variant's metrics over seeds, and its difference from the baseline.

Long format, as Tables 1-3 (:data:`dcgan_repro.tables.COLUMNS`, one row per (variant, metric)), plus columns of its
own: ``variant``, ``change``, ``claim``, ``statistic`` (``mean`` for the summary row, ``seed`` for one row per seed
with the seed in ``seed``), ``n_scored`` (seeds with a value), ``baseline`` (the baseline's mean), ``diff_ci_low`` /
``diff_ci_high`` (the interval of ``difference``) and ``ci``. Here ``difference`` is variant - baseline (the paper
reports no number for these claims; ``paper`` is blank and the claim is quoted in ``note``); the interval is
Welch's t-interval over seeds (:mod:`.stats`). The Markdown, LaTeX and HTML views show the summary rows with the
per-seed values beside the mean.
"""

from __future__ import annotations

import html as html_mod
import logging
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from dcgan_repro import io, tables
from dcgan_repro.ablation import stats

log = logging.getLogger(__name__)

NAME = "table4_ablations"
TITLE = "Table 4 (not in the paper): ablations of the DCGAN guidelines and training settings (Sec. 3, 4)"
EXTRA = ["variant", "change", "claim", "statistic", "n_scored", "baseline", "diff_ci_low", "diff_ci_high", "ci"]
# The paper's words for each claim (docs/ABLATIONS.md numbering).
CLAIMS = {
    1: "Sec. 3: strided convolutions (D) and fractional-strided convolutions (G) replace pooling layers",
    2: "Sec. 3: batchnorm in both G and D",
    3: "Sec. 3: no batchnorm on G's output and D's input layer (\"sample oscillation and model instability\")",
    4: "Sec. 3: remove fully connected hidden layers",
    5: "Sec. 3: ReLU in G, LeakyReLU (0.2) in D",
    6: "Sec. 4: Adam learning rate 0.0002 (0.001 \"too high\")",
    7: "Sec. 4: Adam beta1 0.5 (0.9 \"resulted in training oscillation and instability\")",
    8: "Sec. 4: weights initialised from N(0, 0.02)",
}
# metric key -> (label, unit, score kind it exists for: mnist / fid / None = both)
METRICS = {
    "nn_test_error_pct": ("1-NN test error (epoch chosen on validation)", "%", "mnist"),
    "fd": ("Frechet distance, MNIST classifier features", "", "mnist"),
    "classifier_accuracy_on_samples_pct": ("classifier accuracy on the samples' labels", "%", "mnist"),
    "fid": ("FID (torch-fidelity, Inception pool3)", "", "fid"),
    "unstable": ("collapsed or diverged (fraction of seeds)", "fraction", None),
    "osc_d_fake": ("oscillation of D(G(z)), end of training", "", None),
    "osc_loss_d": ("oscillation of D's loss, end of training", "", None),
    "osc_loss_g": ("oscillation of G's loss, end of training", "", None),
}


def _value(rec: dict[str, Any], key: str) -> float | None:
    v = rec["stability"][key] if key in rec["stability"] else rec.get(key)
    return None if v is None else float(v)


def build_frame(scores: Sequence[dict[str, Any]], *, baseline: str, level: float, preset: str,
                classifier: dict[str, Any] | None = None) -> pd.DataFrame:
    """The long table from the score records of rule ``ablation_score`` (each with ``_path``)."""
    if not scores:
        raise ValueError("no ablation scores given")
    kinds = {r["kind"] for r in scores}
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for r in scores:
        by_variant.setdefault(r["variant"], []).append(r)
    if baseline not in by_variant:
        raise ValueError(f"no scores of the baseline variant {baseline!r} (config key 'ablation.baseline'); "
                         f"variants scored: {sorted(by_variant)}")
    rows: list[dict[str, Any]] = []
    for key, (label, unit, kind) in METRICS.items():
        if kind is not None and kind not in kinds:
            continue
        base_vals = [_value(r, key) for r in by_variant[baseline]]
        base = stats.summary(base_vals)
        for variant, recs in by_variant.items():
            recs = sorted(recs, key=lambda r: r["seed"])
            vals = [_value(r, key) for r in recs]
            s = stats.summary(vals)
            first = recs[0]
            ci = stats.welch_interval(vals, base_vals, level)
            if key == "unstable":          # a count: no t-interval
                ci.update(low=float("nan"), high=float("nan"))
            per_seed = ", ".join(f"{r['seed']}: {_short(v, unit)}" for r, v in zip(recs, vals))
            unstable = [f"seed {r['seed']} {r['status']}" for r in recs if r["status"] != "finished"]
            claim = first.get("claim")
            note = "; ".join(x for x in (
                f"claim {claim} ({CLAIMS[claim]})" if claim else "the paper's recipe",
                f"seeds {per_seed}",
                "" if variant == baseline or math.isnan(ci["low"]) else
                f"variant - baseline {_short(ci['difference'], unit)} [{_short(ci['low'], unit)}, "
                f"{_short(ci['high'], unit)}] ({round(level * 100)}% Welch t-interval over seeds)",
                ", ".join(unstable)) if x)
            common = {"model": variant, "metric": label, "paper": None, "paper_spread": None, "unit": unit,
                      "variant": variant, "change": first["change_text"], "claim": claim, "ci": level,
                      "baseline": base["mean"]}
            prov = tables.provenance_columns(first, preset, first.get("stand_in"))
            rows.append({**common, **prov, "seed": None, "ours": s["mean"], "ours_spread": s["std"],
                         "difference": None if variant == baseline else ci["difference"], "kind": "measured",
                         "note": note, "statistic": "mean", "n_scored": s["n"],
                         "diff_ci_low": None if variant == baseline else ci["low"],
                         "diff_ci_high": None if variant == baseline else ci["high"],
                         "source": "; ".join(r["_path"] for r in recs),
                         "train_time_s": stats.summary([r.get("train_time_s") for r in recs])["mean"]})
            for r, v in zip(recs, vals):
                rows.append({**common, **tables.provenance_columns(r, preset, r.get("stand_in")), "seed": r["seed"],
                             "ours": v, "ours_spread": None, "difference": None, "kind": "measured",
                             "note": f"seed {r['seed']}: {r['status']}", "statistic": "seed", "n_scored": None,
                             "epoch": r.get("epoch"), "epochs_trained": r.get("epochs_trained"),
                             "train_time_s": r.get("train_time_s")})
    if classifier is not None:
        rows.append({"model": "MNIST feature classifier (for the Frechet distance)", "metric": "test accuracy",
                     "unit": "%", "ours": classifier["test_accuracy_pct"], "kind": "measured",
                     "note": f"trained by rule ablation_classifier on {classifier['n_train']:,} training images",
                     "statistic": "single",
                     **tables.provenance_columns(classifier, preset, classifier.get("stand_in"))})
    df = tables.frame([{c: r.get(c) for c in tables.COLUMNS} for r in rows])
    for c in EXTRA:
        df[c] = [r.get(c) for r in rows]
    for c in ("baseline", "diff_ci_low", "diff_ci_high", "ci"):
        df[c] = pd.to_numeric(df[c])
    for c in ("claim", "n_scored"):
        df[c] = pd.to_numeric(df[c]).astype("Int64")
    return df


def _short(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if unit == "%":
        return f"{v:.2f}%"
    if unit == "fraction":
        return f"{v:.2f}"
    return f"{v:.4g}"


def view(df: pd.DataFrame) -> pd.DataFrame:
    """Summary rows as people read them."""
    s = df[df["statistic"].isin(["mean", "single"])]
    per_seed = {(r.variant, r.metric): ", ".join(_short(v, r.unit) for v in
                                                 df[(df["statistic"] == "seed") & (df["variant"] == r.variant)
                                                    & (df["metric"] == r.metric)]["ours"])
                for r in s.itertuples()}

    def diff(r) -> str:
        if pd.isna(r.difference):
            return ""
        ci = "" if pd.isna(r.diff_ci_low) else f" [{_short(r.diff_ci_low, r.unit)}, {_short(r.diff_ci_high, r.unit)}]"
        return f"{'+' if r.difference >= 0 else ''}{_short(r.difference, r.unit)}{ci}"

    return pd.DataFrame({
        "variant": s["model"], "change": s["change"].fillna(""),
        "claim": ["" if pd.isna(c) else str(c) for c in s["claim"]],
        "metric": s["metric"],
        "mean ± std": [_short(r.ours, r.unit)
                       + ("" if pd.isna(r.ours_spread) else f" ± {_short(r.ours_spread, r.unit)}")
                       for r in s.itertuples()],
        "per seed": [per_seed.get((r.variant, r.metric), "") for r in s.itertuples()],
        "variant − baseline [CI]": [diff(r) for r in s.itertuples()],
    })


def _reading(level: float) -> str:
    return (f"Each variant changes one thing from the baseline (column `change`; claim numbers as in "
            f"docs/ABLATIONS.md). `mean ± std` is over the seeds with a value (std with ddof 1); `per seed` lists "
            f"every seed. `variant − baseline [CI]` is the difference of the means with its {round(level * 100)}% "
            f"Welch t-interval over seeds; an interval that excludes 0 is a clear effect, one that includes 0 is not "
            f"shown. Runs stopped by the training health check (collapsed or diverged) count as unstable and have "
            f"no 1-NN / Frechet / FID value. Oscillation: RMS of successive differences / sqrt(2) of the logged "
            f"window means over the last part of training (docs/ABLATIONS.md).")


def write_table(df: pd.DataFrame, *, csv: io.PathLike, md: io.PathLike, tex: io.PathLike, html: io.PathLike,
                preset: str, level: float) -> None:
    with io.atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    statement = tables.preset_statement(preset, [s for s in df["stand_in"].dropna().unique()])
    v = view(df)
    io.write_text(md, "\n".join([statement, "", f"# {TITLE}", "", v.to_markdown(index=False), "", _reading(level),
                                 "", "Per-seed rows and the provenance of every number: the CSV beside this file.",
                                 ""]))
    body = v.to_latex(index=False, escape=True, column_format="llllrlp{4cm}r", longtable=False,
                      caption=tables._latex_escape(f"{TITLE}. {statement}"), label=f"tab:{NAME}")
    for k, sym in tables._LATEX_SYMBOLS.items():
        body = body.replace(k, sym)
    io.write_text(tex, f"% {TITLE}\n% {statement}\n% Needs \\usepackage{{booktabs}}. Generated by "
                       f"dcgan_repro.ablation.table from the CSV beside this file.\n" + body)
    io.write_text(html, "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{html_mod.escape(TITLE)}</title>",
        "<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse;font-size:90%}"
        " th,td{border-bottom:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}</style></head><body>",
        f"<p><b>{html_mod.escape(statement)}</b></p>", f"<h1>{html_mod.escape(TITLE)}</h1>",
        v.to_html(index=False, escape=True, border=0, na_rep=""), f"<p>{html_mod.escape(_reading(level))}</p>",
        "</body></html>", ""]))
    log.info("wrote %s (%d rows) and its md, tex, html views", csv, len(df))


def build_table(scores: Sequence[io.PathLike], *, csv: io.PathLike, md: io.PathLike, tex: io.PathLike,
                html: io.PathLike, baseline: str, level: float, preset: str,
                classifier: io.PathLike | None = None) -> pd.DataFrame:
    """Rule ``ablation_table``."""
    recs = [tables.load_result(p, ("variant", "seed", "status", "stability", "kind")) for p in scores]
    cls = tables.load_result(classifier, ("test_accuracy_pct",)) if classifier else None
    df = build_frame(recs, baseline=baseline, level=level, preset=preset, classifier=cls)
    write_table(df, csv=csv, md=md, tex=tex, html=html, preset=preset, level=level)
    return df
