"""Tables 1-3 of Radford, Metz & Chintala (2015), built only from result files plus :mod:`dcgan_repro.paper`.

Every table is "long": one row per (model, metric), with the paper's value, ours, the difference
``ours - paper`` (percentage points for % metrics), ``kind`` = ``quoted`` (a number copied from the paper, ours
blank) or ``measured`` (a number this pipeline computed, from the result file named in ``source``) and the
provenance of that number (preset, seed, code version, wall time, data stand-in). The same frame is written as
CSV (for scripts) and as Markdown (for people); the Markdown starts with a plain statement of the preset and of
any stand-in data, because a demo number next to a paper number invites a comparison that does not hold.

Inputs are the JSON formats of ``docs/CONTRACTS.md`` (``results/svm/*.json``, ``results/mnist_eval/*.json``) and the
dataset's ``meta.json``. A missing key is an error naming the file and the key. This module needs only pandas
(and tabulate for Markdown): the table rules run in ``envs/tables.yaml``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dcgan_repro import io, paper

log = logging.getLogger(__name__)
PathLike = str | os.PathLike

COLUMNS = [
    "model", "metric", "paper", "paper_spread", "ours", "ours_spread", "difference", "unit", "kind", "note",
    "preset", "seed", "epoch", "epochs_trained", "train_time_s", "code_version", "wall_time_s", "stand_in", "source",
]
# epoch / epochs_trained / train_time_s: for numbers from a trained generator (Table 3), the epoch scored (chosen
# on the validation split), the epochs the run trained, and its training wall time; blank elsewhere.
# Table-level descriptions: what each table reproduces (README and Markdown headings).
TITLES = {
    "table1_cifar10": "Table 1: CIFAR-10 classification using DCGAN features (L2-SVM)",
    "table2_svhn": "Table 2: SVHN classification with 1000 labels",
    "table3_mnist": "Table 3: MNIST nearest-neighbour classification with generated samples",
    "curation_checks": "Data curation checks: the dedup hash and the face detector on real photos with a known truth",
}
WHAT = {
    "table1_cifar10": (
        "Sec. 5.1. A DCGAN is trained on ImageNet-1k 32x32 (never on CIFAR-10); the conv features of all layers "
        "of its discriminator, max-pooled to 4x4 and concatenated, feed a linear L2-SVM. Accuracy with all "
        "training labels and with 400 labels per class (mean and spread over random label draws). The "
        "'1 Layer K-means' baseline (Coates et al. 2011) is measured by this pipeline too, through the same SVM."),
    "table2_svhn": (
        "Sec. 5.2. The same feature pipeline on the D of a DCGAN trained on SVHN; L2-SVM on 1000 labels "
        "(100 per class), test error. Baseline: a purely supervised CNN with D's architecture on the same "
        "labels, tuned by random search; the paper reports its validation error."),
    "table3_mnist": (
        "Sec. 8.1. Class-conditional GANs on MNIST; a 1-nearest-neighbour classifier fitted on generated "
        "samples (with their conditioning labels) classifies the real test set. Columns: 50K and 10M "
        "generated samples; 'Real Data' rows fit the 1-NN on real training images instead."),
    "curation_checks": (
        "Sec. 4.1.1 and 4.2, which report no such measurement (only an estimated dedup false-positive rate under "
        "1 in 100). The LSUN dedup hash (config dedup) on crops of real photographs with planted duplicates of 13 "
        "kinds: precision, recall and false-positive rate of the removals, mean over autoencoder seeds. OpenCV's "
        "face detector (config faces) on real faces pasted at known boxes into real scenes: recall at IoU >= 0.5, "
        "false detections per image."),
}
RUN_TO_TABLE3_ROW = {"mnist_dcgan": paper.TABLE3_DCGAN, "mnist_gan": paper.TABLE3_GAN}


class ResultFileError(ValueError):
    """A result file that is missing a key the table needs, or holds a value it cannot use."""


# --- reading result files --------------------------------------------------------------------------------

def load_result(path: PathLike, required: Sequence[str] = ()) -> dict[str, Any]:
    """Read one result JSON and check it has ``required`` keys (error names the file and the keys)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {path} does not exist")
    try:
        rec = io.read_json(path)
    except ValueError as e:
        raise ResultFileError(f"result file {path} is not valid JSON: {e}") from e
    if not isinstance(rec, dict):
        raise ResultFileError(f"result file {path}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in required if k not in rec]
    if missing:
        raise ResultFileError(f"result file {path} lacks key(s) {missing}; present: {sorted(rec)}")
    rec["_path"] = str(path)
    return rec


def _number(rec: dict[str, Any], key: str) -> float:
    v = rec[key]
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ResultFileError(f"result file {rec['_path']}: key '{key}' must be a number, got {v!r}")
    return float(v)


def _find_preset(cfg: Any) -> str | None:
    """The preset recorded in a result's provenance config (top level or under 'common'), if any."""
    if not isinstance(cfg, dict):
        return None
    if isinstance(cfg.get("preset"), str):
        return cfg["preset"]
    return _find_preset(cfg.get("common"))


def provenance_columns(rec: dict[str, Any], preset: str, data_stand_in: str | None) -> dict[str, Any]:
    """Row provenance of a measured number: the result's own record, falling back to the table's preset."""
    prov = rec.get("provenance") or {}
    recorded = _find_preset(prov.get("config"))
    if recorded is not None and recorded != preset:
        log.warning("%s was produced under preset %r but the table is built for preset %r",
                    rec["_path"], recorded, preset)
    return {
        "preset": recorded or preset,
        "seed": prov.get("seed", rec.get("seed")),
        "code_version": prov.get("code_version"),
        "wall_time_s": prov.get("wall_time_s"),
        "stand_in": rec.get("stand_in") or data_stand_in,
        "source": rec["_path"],
    }


# --- building rows -----------------------------------------------------------------------------------------

def quoted_row(model: str, metric: str, q: paper.Quoted) -> dict[str, Any]:
    """A row holding only the paper's number (ours blank)."""
    return {"model": model, "metric": metric, "paper": q.value, "paper_spread": q.spread, "ours": None,
            "ours_spread": None, "difference": None, "unit": q.unit, "kind": "quoted", "note": q.note,
            "source": f"{paper.PAPER}, {q.source}"}


def measured_row(model: str, metric: str, q: paper.Quoted | None, ours: float, *, ours_spread: float | None = None,
                 unit: str = "%", note: str = "", prov: dict[str, Any]) -> dict[str, Any]:
    """A row with our number; the difference is ours - paper (percentage points for %)."""
    notes = [n for n in ((q.note if q else ""), note) if n]
    return {"model": model, "metric": metric, "paper": q.value if q else None,
            "paper_spread": q.spread if q else None, "ours": ours, "ours_spread": ours_spread,
            "difference": (ours - q.value) if q else None, "unit": q.unit if q else unit,
            "kind": "measured", "note": "; ".join(notes), **prov}


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("paper", "paper_spread", "ours", "ours_spread", "difference", "wall_time_s", "train_time_s"):
        df[c] = pd.to_numeric(df[c])
    for c in ("seed", "epoch", "epochs_trained"):
        df[c] = pd.to_numeric(df[c]).astype("Int64")  # nullable: quoted rows have none
    df["difference"] = df["difference"].round(4)
    return df


RELEASED_D = "DCGAN, the authors' released D + our L2-SVM"  # measured row beside the paper's DCGAN row
PIXELS = "Raw pixels + L2-SVM (not in the paper)"
PAPER_LABELS_PER_CLASS = 400  # Table 1's per-class budget (the column label)


def _n_train(rec: dict[str, Any]) -> int | None:
    """Training images a CIFAR-10 result saw (validation + labelled pool), when it records them."""
    parts = [rec.get("n_validation"), rec.get("n_labelled_pool")]
    return sum(parts) if all(isinstance(v, int) for v in parts) else None


def source_note(rec: dict[str, Any]) -> str:
    """What the features of an SVM result came from (its ``feature_source``, written by rule features_extract)."""
    src = rec.get("feature_source") or {}
    kind = rec.get("features")
    if kind == "trained":
        data = src.get("data_stand_in") or src.get("data")
        return (f"D of run '{src.get('run', rec.get('features_run'))}' trained by this workflow"
                + (f" on {data}" if data else "") + (f", epoch {src['epoch']}" if src.get("epoch") else ""))
    if kind == "released":
        rel = src.get("release") or {}
        note = (f"the authors' released D ({rel.get('repository', 'Newmu/dcgan_code')} at "
                f"{str(rel.get('commit', ''))[:7]}, epoch {rel.get('epoch')}; {rel.get('files_verified')} files "
                f"verified by git blob id)")
        if rel and not rel.get("complete", True):
            note += (f"; PARTIAL release (weights.allow_partial): features from its first {rel.get('convs_loaded')} "
                     f"of {rel.get('convs_total')} convolutions, {rec.get('feature_dim'):,}-d")
        return note
    if kind == "pixels":
        return "raw pixels scaled to [-1, 1] (D's input)"
    return ""


def _svm_cell(model: str, col_label: str, q: paper.Quoted | None, rec: dict[str, Any], *, preset: str,
              data_stand_in: str | None, one_draw: bool = False, per_class_paper: int | None = None
              ) -> dict[str, Any]:
    """A measured accuracy cell from one SVM result (all labels, labels per class, or the one draw of a subset)."""
    draws = int(rec.get("draws") or 1)
    lpc = rec.get("labels_per_class")
    if one_draw:
        n = _n_train(rec)
        note = (f"ours: one draw = all {n:,} training images of the subset (about {n // 10:,} per class, not "
                f"stratified; no other draw exists, so no spread), C={rec.get('C')} chosen on "
                f"{rec.get('n_validation'):,} of them")
    elif lpc is None:
        note = f"ours: all training labels, C={rec.get('C')}"
    else:
        note = f"ours: {lpc} labels per class, mean and ± 1.96·std over {draws} draws, C={rec.get('C')}"
        if per_class_paper is not None and lpc != per_class_paper:
            note += f" (NOT the paper's {per_class_paper} per class)"
    src = source_note(rec)
    spread = _number(rec, "test_error_ci95_pct") if draws > 1 and not one_draw else None
    return measured_row(model, col_label, q, _number(rec, "test_accuracy_pct"), ours_spread=spread,
                        note="; ".join(n for n in (note, src) if n),
                        prov=provenance_columns(rec, preset, data_stand_in))


def _by_features(results: Sequence[dict[str, Any]], key: str = "features") -> dict[str, dict[str, Any]]:
    """Results grouped by features kind -> {"all": rec, "per_class": rec} (each only when present)."""
    out: dict[str, dict[str, Any]] = {}
    for rec in results:
        kind = rec.get(key)
        if not isinstance(kind, str):
            raise ResultFileError(f"result file {rec['_path']}: key '{key}' must name the features, got {kind!r}")
        slot = "all" if rec.get("labels_per_class") is None else "per_class"
        if slot in out.setdefault(kind, {}):
            raise ResultFileError(f"two {kind} results for the same label budget: {out[kind][slot]['_path']} and "
                                  f"{rec['_path']}")
        out[kind][slot] = rec
    return out


def _table1_cells(recs: dict[str, Any]) -> dict[str, tuple[dict[str, Any], bool]]:
    """Table 1 column -> (result, one draw?) for one kind of features: the per-class result in the 400 column;
    the all-labels result in the accuracy column, or, on a subset of at most 10 x 400 training images with no
    per-class result, in the 400 column as the subset's one possible draw."""
    cells: dict[str, tuple[dict[str, Any], bool]] = {}
    if "per_class" in recs:
        cells["accuracy_400"] = recs["per_class"], False
    if "all" in recs:
        n = _n_train(recs["all"])
        if "per_class" not in recs and n is not None and n <= 10 * PAPER_LABELS_PER_CLASS:
            cells["accuracy_400"] = recs["all"], True
        else:
            cells["accuracy"] = recs["all"], False
    return cells


def _feature_dim_row(model: str, rec: dict[str, Any], *, preset: str, data_stand_in: str | None,
                     q: paper.Quoted) -> dict[str, Any]:
    return measured_row(model, "feature dimension", q, _number(rec, "feature_dim"), note=source_note(rec),
                        prov=provenance_columns(rec, preset, data_stand_in))


def table1_cifar10(results: Sequence[dict[str, Any]], *, preset: str,
                   data_stand_in: str | None = None) -> pd.DataFrame:
    """Table 1 rows from the CIFAR-10 SVM results (``results/svm/svm_cifar10_<features>_<labels>.json``,
    docs/CONTRACTS.md), whichever the config ran: the D trained here fills the paper's DCGAN row, the authors'
    released D a row of its own beside it, K-means the "1 Layer K-means" row, raw pixels a last row. Cells with
    no result quote the paper."""
    by = _by_features(results)
    kw = {"preset": preset, "data_stand_in": data_stand_in, "per_class_paper": PAPER_LABELS_PER_CLASS}
    prov_kw = {"preset": preset, "data_stand_in": data_stand_in}

    def rows_for(model: str, kind: str | None, q_row: str | None) -> list[dict[str, Any]]:
        cells = _table1_cells(by.get(kind, {})) if kind else {}
        out = []
        for col in paper.TABLE1_COLUMNS:
            q = paper.TABLE1.get((q_row, col)) if q_row else None
            label = paper.TABLE1_COLUMN_LABELS[col]
            if col in cells:
                rec, one = cells[col]
                out.append(_svm_cell(model, label, q, rec, one_draw=one, **kw))
            elif col == "max_feature_units" and kind == "kmeans" and cells:
                rec = next(iter(cells.values()))[0]
                out.append(measured_row(model, label, q, _number(rec, "feature_dim") / 4, unit="units",
                                        note="ours: dictionary size k (features = 4 quadrants x k)",
                                        prov=provenance_columns(rec, **prov_kw)))
            elif q is not None and (kind is None or kind == "trained" or kind == "kmeans"):
                out.append(quoted_row(model, label, q))
        return out

    rows: list[dict[str, Any]] = []
    for model in paper.TABLE1_ROWS:
        kind = {paper.TABLE1_KMEANS: "kmeans", paper.TABLE1_DCGAN: "trained"}.get(model)
        rows += rows_for(model, kind, model)
        if model == paper.TABLE1_DCGAN and "released" in by:
            rows += rows_for(RELEASED_D, "released", model)
    if "pixels" in by:
        rows += rows_for(PIXELS, "pixels", None)
    for kind, model in (("trained", paper.TABLE1_DCGAN), ("released", RELEASED_D)):
        if kind in by:
            rec = next(iter(by[kind].values()))
            rows.append(_feature_dim_row(model, rec, q=paper.CIFAR10_FEATURE_DIM, **prov_kw))
    return frame(rows)


def table2_svhn(results: Sequence[dict[str, Any]], cnn: dict[str, Any], *, preset: str,
                data_stand_in: str | None = None) -> pd.DataFrame:
    """Table 2 rows from the SVHN SVM results (``svm_svhn_<features>_1000.json``: the D trained here fills the
    paper's DCGAN row, the authors' released D a row beside it) and ``supervised_cnn_svhn_1000.json``."""
    by = _by_features(results)
    rows: list[dict[str, Any]] = []
    for model in paper.TABLE2_ROWS:
        q = paper.TABLE2[model]
        if model == paper.TABLE2_DCGAN:
            for kind, label in (("trained", model), ("released", RELEASED_D)):
                svm = by.get(kind, {}).get("per_class")
                if svm is None:
                    if kind == "trained":
                        rows.append(quoted_row(model, "test error", q))
                    continue
                lpc = svm.get("labels_per_class")
                draws = int(svm.get("draws") or 1)
                note = f"ours: {lpc} labels per class, mean ± 1.96·std over {draws} draws, C={svm.get('C')}"
                if lpc not in (None, 100):
                    note += " (NOT the paper's 1000 labels)"
                note = "; ".join(n for n in (note, source_note(svm)) if n)
                rows.append(measured_row(label, "test error", q, _number(svm, "test_error_pct"),
                                         ours_spread=_number(svm, "test_error_ci95_pct") if draws > 1 else None,
                                         note=note, prov=provenance_columns(svm, preset, data_stand_in)))
        elif model == paper.TABLE2_CNN:
            trials = cnn.get("trials")
            n = len(trials) if isinstance(trials, list) else None
            note = f"ours: best of {n} random-search trials" if n else ""
            prov = provenance_columns(cnn, preset, data_stand_in)
            rows.append(measured_row(model, "validation error", q, _number(cnn, "validation_error_pct"),
                                     note=note, prov=prov))
            rows.append(measured_row(model, "test error", None, _number(cnn, "test_error_pct"),
                                     note="not reported in the paper; same model as the validation row",
                                     prov=prov))
        else:
            rows.append(quoted_row(model, "test error", q))
    return frame(rows)


DEDUP_CHECK = "LSUN dedup hash (Sec. 4.1.1) on planted duplicates"
FACES_CHECK = "Face detector (Sec. 4.2) on faces at known boxes"


def _pct(value: Any) -> float | None:
    return None if value is None else 100.0 * float(value)


def curation_checks(dedup: dict[str, Any] | None, faces: dict[str, Any] | None, *, preset: str) -> pd.DataFrame:
    """The curation table from ``results/dedup/check.json`` and ``results/faces/check.json`` (either may be None)."""
    rows: list[dict[str, Any]] = []
    if dedup is not None:
        prov = provenance_columns(dedup, preset, dedup.get("stand_in"))
        seeds = len(dedup.get("runs") or [])
        lo, hi = dedup.get("min") or {}, dedup.get("max") or {}
        fp = paper.LSUN_DEDUP_FALSE_POSITIVE_RATE
        quoted_fp = paper.Quoted(100 * fp.value, fp.source, fp.row, fp.column, unit="%",
                                 note="an upper bound the paper estimates for LSUN, not measured on a truth")
        for key, metric, q in (("false_positive_rate", "false-positive rate (wrongly removed / removed)", quoted_fp),
                               ("precision", "precision of the removals", None),
                               ("recall", "recall of the planted duplicates", None),
                               ("hard_negative_collision_rate", "collisions among crops of one photo (hard negatives)",
                                None)):
            mean = (dedup.get("mean") or {}).get(key)
            if mean is None:
                continue
            rng = f"{_pct(lo.get(key)):.2f}..{_pct(hi.get(key)):.2f} %" if lo.get(key) is not None else "n/a"
            note = (f"ours: mean over {seeds} autoencoder seeds (range {rng}); {dedup.get('n_planted')} planted "
                    f"duplicates among {dedup.get('n_distinct')} distinct 64x64 views of {dedup.get('photos')} photos")
            rows.append(measured_row(DEDUP_CHECK, metric, q, _pct(mean), note=note, prov=prov))
    if faces is not None:
        prov = provenance_columns(faces, preset, faces.get("stand_in"))
        settings = faces.get("settings") or {}
        base = f"{faces.get('faces')} faces in {faces.get('images')} images, IoU >= {faces.get('iou_threshold')}"
        for key, metric, unit, scale in (
                ("recall", "recall, all faces", "%", 100.0),
                ("recall_eligible", f"recall, faces >= {settings.get('min_size')} px (faces.min_size)", "%", 100.0),
                ("false_detections_per_image", "false detections per image", "per image", 1.0),
                ("mean_iou_found", "mean IoU of found faces", "IoU", 1.0)):
            if faces.get(key) is not None:
                rows.append(measured_row(FACES_CHECK, metric, None, scale * float(faces[key]), unit=unit, note=base,
                                         prov=prov))
    return frame(rows)


def build_curation_checks(dedup: PathLike | None, faces: PathLike | None, csv: PathLike, md: PathLike, *,
                          preset: str) -> pd.DataFrame:
    """Rule ``tables_curation_checks``: the curation table from the check results that exist (config checks)."""
    df = curation_checks(load_result(dedup, ("mean", "runs")) if dedup else None,
                         load_result(faces, ("recall", "false_detections_per_image")) if faces else None,
                         preset=preset)
    write_table(df, csv, md, name="curation_checks", preset=preset)
    return df


def _rounded(value: Any, digits: int) -> str:
    """A number from a result file for a note, rounded to ``digits`` decimals; anything else as it is."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def table3_mnist(generated: Sequence[dict[str, Any]], real: dict[str, Any], *, preset: str,
                 data_stand_in: str | None = None) -> pd.DataFrame:
    """Table 3 rows from ``results/mnist_eval/<run>_nn<size>.json`` files and ``results/mnist_eval/real_nn.json``."""
    by_key: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in generated:
        run, col = rec["model"], rec["column"]
        if run not in RUN_TO_TABLE3_ROW:
            raise ResultFileError(f"result file {rec['_path']}: model {run!r} is not one of "
                                  f"{sorted(RUN_TO_TABLE3_ROW)}")
        if col not in paper.TABLE3_COLUMNS:
            raise ResultFileError(f"result file {rec['_path']}: column {col!r} is not one of "
                                  f"{list(paper.TABLE3_COLUMNS)}")
        by_key[RUN_TO_TABLE3_ROW[run], col] = rec
    rows: list[dict[str, Any]] = []
    for model in paper.TABLE3_ROWS:
        if model == paper.TABLE3_REAL:
            q = paper.TABLE3[model, "50K"]
            reals = real.get("rows")
            if not isinstance(reals, list) or not reals:
                raise ResultFileError(f"result file {real['_path']}: 'rows' must be a non-empty list")
            for r in reals:
                n_train = int(r["n_train"])
                rows.append(measured_row(
                    f"Real Data (1-NN on {n_train:,} real training images)", q.column, q,
                    float(r["test_error_pct"]), note=f"mean NN distance {_rounded(r.get('mean_nn_distance'), 3)}",
                    prov=provenance_columns(real, preset, data_stand_in)))
            continue
        for col in paper.TABLE3_COLUMNS:
            q = paper.TABLE3.get((model, col))
            rec = by_key.get((model, col))
            if rec is None:
                if q is not None:
                    rows.append(quoted_row(model, paper.TABLE3_COLUMN_LABELS[col], q))
                continue
            n = int(rec.get("n_samples") or 0)
            note = (f"ours: {n:,} generated samples, run '{rec['model']}', epoch {rec.get('epoch')}"
                    + (" (lowest validation error among the snapshots)" if rec.get("selection") else "")
                    + f"; validation error {_rounded(rec.get('validation_error_pct'), 2)}%, "
                    f"mean NN distance {_rounded(rec.get('mean_nn_distance'), 3)}")
            prov = provenance_columns(rec, preset, data_stand_in)
            # seed of the number = the training run's seed (the generated set's own seed is in the result file)
            prov.update(seed=rec.get("train_seed", prov["seed"]), epoch=rec.get("epoch"),
                        epochs_trained=rec.get("epochs_trained"), train_time_s=rec.get("train_time_s"))
            rows.append(measured_row(model, paper.TABLE3_COLUMN_LABELS[col], q, _number(rec, "test_error_pct"),
                                     note=note, prov=prov))
    return frame(rows)


# --- writing ------------------------------------------------------------------------------------------------

def preset_statement(preset: str, stand_ins: Sequence[str]) -> str:
    """The plain sentence a table's Markdown starts with: which preset, which stand-in data, comparable or not."""
    name = f"Preset '{preset}'"
    uniq = list(dict.fromkeys(s for s in stand_ins if s))
    if uniq:
        return (f"{name}: numbers come from {'; and '.join(uniq)}; they are NOT comparable to the "
                f"paper.")
    if preset != "paper":
        return (f"{name}: measured on the paper's datasets with settings that differ from the paper's "
                f"(see the provenance config of each result); compare with care.")
    return "Preset 'paper': measured on the paper's datasets with the paper's settings."


def _fmt(v: Any, spread: Any = None, unit: str = "%") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if unit == "%":
        s = f"{v:.2f}%"
        if spread is not None and not (isinstance(spread, float) and math.isnan(spread)):
            s += f" (±{spread:.2f}%)"
        return s
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.3f}"


def _fmt_diff(v: Any, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:+.2f} pts" if unit == "%" else f"{v:+,.0f}" if float(v).is_integer() else f"{v:+,.3f}"


def _short_prov(row: pd.Series) -> str:
    if row["kind"] != "measured":
        return row["source"]
    wall = row["wall_time_s"]
    wall_s = "" if pd.isna(wall) else f", {wall:.1f} s"
    trained = ""
    if not pd.isna(row.get("epochs_trained", pd.NA)):
        trained = f", epoch {row['epoch']} of {row['epochs_trained']} trained"
        if not pd.isna(row.get("train_time_s", pd.NA)):
            trained += f" in {row['train_time_s'] / 60:.1f} min"
    return f"preset {row['preset']}, seed {row['seed']}{trained}, code {row['code_version']}{wall_s}"


def _view(df: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it (Markdown, LaTeX, HTML): formatted numbers, note, short provenance."""
    return pd.DataFrame({
        "model": df["model"],
        "metric": df["metric"],
        "paper": [_fmt(r.paper, r.paper_spread, r.unit) for r in df.itertuples()],
        "ours": [_fmt(r.ours, r.ours_spread, r.unit) for r in df.itertuples()],
        "ours − paper": [_fmt_diff(r.difference, r.unit) for r in df.itertuples()],
        "kind": df["kind"],
        "note": df["note"].fillna(""),
        "provenance": [_short_prov(r) for _, r in df.iterrows()],
    })


def to_markdown(df: pd.DataFrame, *, name: str, preset: str) -> str:
    """Markdown: the preset/stand-in statement, the title, what it reproduces, the table, how to read it."""
    stand_ins = [s for s in df["stand_in"].dropna().unique()]
    view = _view(df)
    lines = [
        preset_statement(preset, stand_ins),
        "",
        f"# {TITLES[name]}",
        "",
        f"Reproduces {paper.PAPER}: {WHAT[name]}",
        "",
        view.to_markdown(index=False),
        "",
        "`quoted` rows copy the paper's number (from `dcgan_repro/paper.py`); `measured` rows are this "
        "pipeline's, from the result file in the CSV's `source` column. Differences are ours − paper, in "
        "percentage points." + (" The paper's ± is its own spread; ours is 1.96 × the standard deviation over "
                                 "random label draws." if name in ("table1_cifar10", "table2_svhn") else ""),
        "",
    ]
    return "\n".join(lines)


def write_table(df: pd.DataFrame, csv: PathLike, md: PathLike, *, name: str, preset: str) -> None:
    """Write the table as CSV and Markdown (atomically)."""
    with io.atomic_path(csv) as tmp:
        df.to_csv(tmp, index=False)
    io.write_text(md, to_markdown(df, name=name, preset=preset))
    log.info("wrote %s and %s (%d rows, %d measured)", csv, md, len(df), int((df["kind"] == "measured").sum()))


def _data_stand_in(data_dir: PathLike | None) -> str | None:
    return io.read_meta(data_dir).get("stand_in") if data_dir else None


SVM_KEYS = ("test_accuracy_pct", "test_error_pct", "test_error_ci95_pct", "feature_dim", "features")


def _result_paths(results: PathLike | Sequence[PathLike]) -> list[PathLike]:
    """One path or several (Snakemake gives a named input of one file as a string)."""
    return [results] if isinstance(results, (str, os.PathLike)) else list(results)


def build_table1(results: PathLike | Sequence[PathLike], data_dir: PathLike | None, csv: PathLike, md: PathLike, *,
                 preset: str) -> pd.DataFrame:
    """Rule ``tables_table1_cifar10``: read the CIFAR-10 SVM results the config ran, write Table 1."""
    df = table1_cifar10([load_result(p, SVM_KEYS) for p in _result_paths(results)], preset=preset,
                        data_stand_in=_data_stand_in(data_dir))
    write_table(df, csv, md, name="table1_cifar10", preset=preset)
    return df


def build_table2(results: PathLike | Sequence[PathLike], cnn: PathLike, data_dir: PathLike | None, csv: PathLike,
                 md: PathLike, *, preset: str) -> pd.DataFrame:
    """Rule ``tables_table2_svhn``: read the SVHN SVM results the config ran and the supervised CNN's, write
    Table 2."""
    df = table2_svhn([load_result(p, SVM_KEYS) for p in _result_paths(results)],
                     load_result(cnn, ("validation_error_pct", "test_error_pct")), preset=preset,
                     data_stand_in=_data_stand_in(data_dir))
    write_table(df, csv, md, name="table2_svhn", preset=preset)
    return df


def build_table3(generated: Sequence[PathLike], real: PathLike, data_dir: PathLike | None, csv: PathLike,
                 md: PathLike, *, preset: str) -> pd.DataFrame:
    """Rule ``tables_table3_mnist``: read the 1-NN results (generated and real), write Table 3."""
    gen = [load_result(p, ("model", "column", "test_error_pct")) for p in generated]
    df = table3_mnist(gen, load_result(real, ("rows",)), preset=preset, data_stand_in=_data_stand_in(data_dir))
    write_table(df, csv, md, name="table3_mnist", preset=preset)
    return df


def write_index(table_csvs: Sequence[PathLike], out: PathLike, *, preset: str) -> str:
    """Rule ``tables_index``: ``results/tables/README.md`` — what each table reproduces, preset, stand-ins,
    how to read the columns, and a one-line summary of every measured number."""
    all_stand_ins: list[str] = []
    sections = []
    for p in table_csvs:
        p = Path(p)
        name = p.stem
        if name not in TITLES:
            raise ValueError(f"{p}: unknown table '{name}'; known: {sorted(TITLES)}")
        df = pd.read_csv(p)
        stand_ins = [s for s in df["stand_in"].dropna().unique()]
        all_stand_ins += stand_ins
        measured = df[df["kind"] == "measured"]
        lines = [f"## {TITLES[name]}", "", f"Files: `{name}.csv`, `{name}.md`, `{name}.tex`, `{name}.html`. {WHAT[name]}", ""]
        lines.append("Data: " + ("; ".join(stand_ins) + " (stand-in, not the paper's data)." if stand_ins
                                 else "the paper's dataset."))
        lines.append("")
        for r in measured.itertuples():
            diff = "" if pd.isna(r.difference) else f" (paper {_fmt(r.paper, None, r.unit)}, " \
                                                     f"{_fmt_diff(r.difference, r.unit)})"
            lines.append(f"- {r.model}, {r.metric}: ours {_fmt(r.ours, r.ours_spread, r.unit)}{diff}")
        sections.append("\n".join(lines) + "\n")
    text = "\n".join([
        preset_statement(preset, all_stand_ins),
        "",
        f"# Tables of {paper.PAPER}",
        "",
        "How to read: every table is long-format, one row per (model, metric). `paper` is the paper's number, "
        "`ours` this pipeline's, `difference` = ours − paper (percentage points for %). `kind` is `quoted` "
        "(copied from the paper, ours blank) or `measured` (computed here, from the result file in `source`). "
        "`preset`, `seed`, `code_version`, `wall_time_s` say how a measured number was made and `stand_in` "
        "names any data standing in for the paper's. The `.md` files are for reading, the `.csv` files for "
        "scripts.",
        "",
        *sections,
    ])
    io.write_text(out, text)
    return text


# --- LaTeX and HTML views (rule tables_views), rebuilt from the CSV -------------------------------------------

def read_table(csv: PathLike) -> pd.DataFrame:
    """A table CSV written by :func:`write_table`, with its column types restored (nullable integers)."""
    df = pd.read_csv(csv, keep_default_na=True)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ResultFileError(f"table {csv} lacks column(s) {missing}; was it written by dcgan_repro.tables?")
    df["note"] = df["note"].fillna("")  # an empty note reads back as NaN
    return frame(df[COLUMNS].to_dict("records"))


# Unicode the Markdown uses, spelled for LaTeX (applied after pandas has escaped the text).
_LATEX_SYMBOLS = {"±": r"$\pm$", "−": r"$-$", "·": r"$\cdot$", "×": r"$\times$"}


def _latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text (pandas escapes cells, not the caption)."""
    out = "".join({"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}.get(c, c)
                  for c in text)
    for k, v in _LATEX_SYMBOLS.items():
        out = out.replace(k, v)
    return out


def to_latex(df: pd.DataFrame, *, name: str, preset: str) -> str:
    """A LaTeX ``table`` (booktabs) of the reader's view; the preset/stand-in statement is in the caption."""
    view = _view(df)
    statement = preset_statement(preset, [s for s in df["stand_in"].dropna().unique()])
    body = view.to_latex(index=False, escape=True, column_format="llrrrlp{4.5cm}p{4.5cm}", longtable=False,
                         caption=_latex_escape(f"{TITLES[name]}. {statement}"), label=f"tab:{name}")
    for k, v in _LATEX_SYMBOLS.items():
        body = body.replace(k, v)
    header = (f"% {TITLES[name]} -- {paper.PAPER}\n% {statement}\n"
              "% Needs \\usepackage{booktabs}. Generated by dcgan_repro.tables from the CSV beside this file.\n")
    return header + body


def to_html(df: pd.DataFrame, *, name: str, preset: str) -> str:
    """A self-contained HTML page of the table (shown inline by ``snakemake --report``)."""
    import html as _html

    statement = preset_statement(preset, [s for s in df["stand_in"].dropna().unique()])
    table = _view(df).to_html(index=False, escape=True, border=0, classes="dcgan-table", na_rep="")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_html.escape(TITLES[name])}</title>",
        "<style>body{font-family:sans-serif;margin:1em} table{border-collapse:collapse;font-size:90%}"
        " th,td{border-bottom:1px solid #ccc;padding:3px 8px;text-align:left;vertical-align:top}"
        " .statement{font-weight:bold}</style></head><body>",
        f'<p class="statement">{_html.escape(statement)}</p>',
        f"<h1>{_html.escape(TITLES[name])}</h1>",
        f"<p>Reproduces {_html.escape(paper.PAPER)}: {_html.escape(WHAT[name])}</p>",
        table,
        "<p><code>quoted</code> rows copy the paper's number; <code>measured</code> rows are this pipeline's, "
        "from the result file named in the CSV's <code>source</code> column. Differences are ours − paper, in "
        "percentage points.</p>",
        "</body></html>",
        "",
    ])


def write_views(csv: PathLike, tex: PathLike, html: PathLike, *, name: str, preset: str) -> pd.DataFrame:
    """Rule ``tables_views``: the LaTeX and HTML versions of a table, from its CSV (atomically)."""
    if name not in TITLES:
        raise ValueError(f"unknown table '{name}'; known: {sorted(TITLES)}")
    df = read_table(csv)
    io.write_text(tex, to_latex(df, name=name, preset=preset))
    io.write_text(html, to_html(df, name=name, preset=preset))
    log.info("wrote %s and %s from %s (%d rows)", tex, html, csv, len(df))
    return df
