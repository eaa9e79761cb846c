"""LaTeX and HTML versions of the tables (rule tables_views), rebuilt from the CSV."""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest

from conftest import write_json_file as write
from dcgan_repro import tables

STAND_IN = "crops of 10_photos & more standing in for CIFAR-10"



@pytest.fixture()
def table1(tmp_path):
    prov = {"code_version": "abc123", "seed": 42, "config": {"common": {"preset": "demo"}}, "inputs": {},
            "wall_time_s": 3.5}

    def svm(protocol, acc, ci, lpc, draws):
        return {"protocol": protocol, "dataset": "cifar10", "features": "trained", "feature_dim": 28672,
                "labels_per_class": lpc, "C": 0.001, "validation_error_pct": {"0.001": 20.0},
                "test_error_pct": 100 - acc, "test_error_ci95_pct": ci, "test_accuracy_pct": acc,
                "draws": draws, "stand_in": STAND_IN, "provenance": prov}

    a = write(tmp_path / "all.json", svm("svm_cifar10_trained_all", 81.5, 0.0, None, 1))
    b = write(tmp_path / "400.json", svm("svm_cifar10_trained_400pc", 75.0, 0.5, 400, 100))
    csv = tmp_path / "table1_cifar10.csv"
    df = tables.build_table1([a, b], None, csv, tmp_path / "table1_cifar10.md", preset="demo")
    return df, csv


def test_the_csv_reads_back_as_the_same_table(table1):
    df, csv = table1
    back = tables.read_table(csv)
    assert list(back.columns) == tables.COLUMNS and len(back) == len(df)
    assert str(back["seed"].dtype) == "Int64"
    pd.testing.assert_frame_equal(back, df, check_dtype=False)


def test_latex_and_html_views(table1, tmp_path):
    df, csv = table1
    tex, page = tmp_path / "t.tex", tmp_path / "t.html"
    tables.write_views(csv, tex, page, name="table1_cifar10", preset="demo")
    t = tex.read_text()
    assert "\\begin{tabular}" in t and "\\toprule" in t and "\\label{tab:table1_cifar10}" in t
    # one tabular row per table row
    body = t.split("\\midrule", 1)[1].split("\\bottomrule", 1)[0]
    assert body.count("\\\\\n") == len(df)
    # LaTeX specials escaped, the Markdown's Unicode spelled for LaTeX, the stand-in statement in the caption
    assert "81.50\\%" in t and "$\\pm$" in t and "±" not in t and "−" not in t
    caption = re.search(r"\\caption\{(.*)\}\n", t).group(1)
    assert "NOT comparable to the paper" in caption and "10\\_photos \\& more" in caption
    h = page.read_text()
    assert h.startswith("<!DOCTYPE html>") and h.count("<tr") == len(df) + 1  # + the header row
    assert html.escape(tables.preset_statement("demo", [STAND_IN])) in h
    assert h.count("<td>quoted</td>") == int((df["kind"] == "quoted").sum())


def test_a_foreign_csv_is_refused_naming_the_file(tmp_path):
    csv = tmp_path / "table2_svhn.csv"
    csv.write_text("model,paper\nx,1\n")
    with pytest.raises(tables.ResultFileError, match=r"table2_svhn\.csv lacks column\(s\)"):
        tables.write_views(csv, tmp_path / "t.tex", tmp_path / "t.html", name="table2_svhn", preset="demo")
    assert not (tmp_path / "t.tex").exists()
    with pytest.raises(ValueError, match="unknown table 'table9'"):
        tables.write_views(csv, tmp_path / "t.tex", tmp_path / "t.html", name="table9", preset="demo")


def test_the_index_names_every_format(table1, tmp_path):
    _, csv = table1
    text = tables.write_index([csv], tmp_path / "README.md", preset="demo")
    assert "`table1_cifar10.tex`" in text and "`table1_cifar10.html`" in text
