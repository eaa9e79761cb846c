"""Tables 1-3 from hand-written result files, and paper.py against docs/REFERENCE.md."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_json_file as write
from dcgan_repro import paper, tables

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "docs" / "REFERENCE.md"
STAND_IN = "scikit-learn load_digits (real handwritten digits, 8x8 upscaled to 28x28) standing in for MNIST"


def prov(seed=42, preset="demo", wall=3.5):
    return {"code_version": "abc123", "seed": seed, "config": {"common": {"preset": preset}}, "inputs": {},
            "wall_time_s": wall}



def svm_result(protocol, acc, ci, lpc, draws, stand_in=None, features="trained", dim=28672, n=(10000, 40000),
               source=None):
    return {"protocol": protocol, "dataset": "cifar10", "features": features, "feature_dim": dim,
            "labels_per_class": lpc, "C": 0.001, "validation_error_pct": {"0.001": 20.0},
            "test_error_pct": 100 - acc, "test_error_ci95_pct": ci, "test_accuracy_pct": acc, "draws": draws,
            "n_validation": n[0], "n_labelled_pool": n[1], "feature_source": source, "stand_in": stand_in,
            "provenance": prov()}


RELEASE = {"repository": "https://github.com/Newmu/dcgan_code", "commit": "ee12b2d15a3856794b8dae77d1eb263c67c36e47",
           "epoch": 30, "files_verified": 16, "complete": False, "convs_loaded": 4, "convs_total": 6}


def row(df, model, metric):
    sel = df[(df["model"] == model) & (df["metric"] == metric)]
    assert len(sel) == 1, (model, metric, df[["model", "metric"]])
    return sel.iloc[0]


def test_table1_rows_differences_and_kinds(tmp_path):
    a = write(tmp_path / "all.json", svm_result("svm_cifar10_trained_all", 81.5, 0.0, None, 1))
    b = write(tmp_path / "400.json", svm_result("svm_cifar10_trained_400pc", 75.0, 0.5, 400, 100))
    df = tables.build_table1([a, b], None, tmp_path / "t1.csv", tmp_path / "t1.md", preset="paper")
    acc = row(df, "DCGAN (ours) + L2-SVM", "Accuracy")
    assert acc["kind"] == "measured" and acc["ours"] == 81.5 and acc["paper"] == 82.8
    assert acc["difference"] == pytest.approx(-1.3)
    acc400 = row(df, "DCGAN (ours) + L2-SVM", "Accuracy (400 per class)")
    assert (acc400["ours"], acc400["ours_spread"], acc400["paper_spread"]) == (75.0, 0.5, 0.4)
    assert acc400["difference"] == pytest.approx(1.2)
    assert acc400["seed"] == 42 and acc400["code_version"] == "abc123" and acc400["wall_time_s"] == 3.5
    assert acc400["source"] == str(b)
    km = row(df, "Exemplar CNN", "Accuracy (400 per class)")
    assert km["kind"] == "quoted" and km["paper"] == 77.4 and math.isnan(km["ours"]) and math.isnan(km["difference"])
    assert row(df, "DCGAN (ours) + L2-SVM", "feature dimension")["difference"] == 0
    assert (df["kind"] == "measured").sum() == 3 and (df["kind"] == "quoted").sum() == 13
    back = pd.read_csv(tmp_path / "t1.csv")
    assert list(back.columns) == tables.COLUMNS and len(back) == len(df)
    md = (tmp_path / "t1.md").read_text()
    assert md.startswith("Preset 'paper':") and "| 81.50%" in md and "-1.30 pts" in md


def test_table2_supervised_cnn_is_a_validation_error(tmp_path):
    svm = write(tmp_path / "svhn.json", {"protocol": "svm_svhn_trained_1000", "test_error_pct": 20.0,
                                         "features": "trained", "feature_dim": 7168, "test_accuracy_pct": 80.0,
                                         "test_error_ci95_pct": 0.8, "labels_per_class": 100, "draws": 100,
                                         "C": 0.01, "stand_in": None, "provenance": prov()})
    cnn = write(tmp_path / "cnn.json", {"protocol": "supervised_cnn_svhn_1000", "validation_error_pct": 30.0,
                                        "test_error_pct": 31.0, "trials": [{}, {}], "stand_in": None,
                                        "provenance": prov()})
    df = tables.build_table2(svm, cnn, None, tmp_path / "t2.csv", tmp_path / "t2.md", preset="paper")  # one path
    d = row(df, "DCGAN (ours) + L2-SVM", "test error")
    assert d["difference"] == pytest.approx(20.0 - 22.48)
    v = row(df, paper.TABLE2_CNN, "validation error")
    assert v["paper"] == 28.87 and v["ours"] == 30.0 and "validation error" in v["note"]
    t = row(df, paper.TABLE2_CNN, "test error")
    assert math.isnan(t["paper"]) and t["ours"] == 31.0 and t["kind"] == "measured"
    assert set(df.loc[df["kind"] == "quoted", "model"]) == set(paper.TABLE2_ROWS[:7])


def test_table3_and_the_stand_in_warning(tmp_path):
    data = tmp_path / "data"
    write(data / "meta.json", {"name": "mnist", "stand_in": STAND_IN})
    gen = []
    for run, err in (("mnist_dcgan", 4.0), ("mnist_gan", 7.0)):
        for col, n in (("50K", 2000), ("10M", 20000)):
            gen.append(write(tmp_path / f"{run}_nn{col}.json", {
                "model": run, "column": col, "n_samples": n, "test_error_pct": err, "epoch": 4, "seed": 0,
                "epochs_trained": 6, "train_time_s": 90.0, "train_seed": 3, "selection": {"path": "s.json"},
                "validation_error_pct": 3.9899999999999998, "mean_nn_distance": 4.382430786566471,
                "stand_in": None, "provenance": prov(seed=0)}))
    real = write(tmp_path / "real_nn.json", {"rows": [{"n_train": 60000, "test_error_pct": 3.09},
                                                      {"n_train": 50000, "test_error_pct": 3.33}],
                                             "stand_in": None, "provenance": prov(seed=None)})
    df = tables.build_table3(gen, real, data, tmp_path / "t3.csv", tmp_path / "t3.md", preset="demo")
    assert row(df, "DCGAN (ours)", "Test Error @10M samples")["difference"] == pytest.approx(4.0 - 1.48)
    assert row(df, "GAN", "Test Error @50K samples")["difference"] == pytest.approx(7.0 - 6.28)
    assert "2,000 generated samples" in row(df, "GAN", "Test Error @50K samples")["note"]
    r = row(df, "GAN", "Test Error @50K samples")  # epochs trained, the epoch chosen, training time, train seed
    assert (r["epoch"], r["epochs_trained"], r["train_time_s"], r["seed"]) == (4, 6, 90.0, 3)
    assert "lowest validation error" in r["note"]
    assert "validation error 3.99%, mean NN distance 4.382" in r["note"]  # rounded, not float noise
    r60 = row(df, "Real Data (1-NN on 60,000 real training images)", "Test Error @50K samples")
    assert r60["paper"] == 3.1 and r60["difference"] == pytest.approx(-0.01)
    row(df, "Real Data (1-NN on 50,000 real training images)", "Test Error @50K samples")
    assert set(df.loc[df["kind"] == "quoted", "model"]) == {"AlignMNIST", "InfiMNIST"}
    assert (df.loc[df["kind"] == "measured", "stand_in"] == STAND_IN).all()
    md = (tmp_path / "t3.md").read_text()
    assert md.splitlines()[0] == f"Preset 'demo': numbers come from {STAND_IN}; they are NOT comparable to the paper."
    assert "seed 3, epoch 4 of 6 trained in 1.5 min" in md
    csvs, names = [], ("table1_cifar10", "table2_svhn", "table3_mnist")
    for name in names:
        (tmp_path / f"{name}.csv").write_text((tmp_path / "t3.csv").read_text())
        csvs.append(tmp_path / f"{name}.csv")
    text = tables.write_index(csvs, tmp_path / "README.md", preset="demo")
    assert text.startswith("Preset 'demo': numbers come from") and all(tables.TITLES[n] in text for n in names)
    assert "DCGAN (ours), Test Error @10M samples: ours 4.00% (paper 1.48%, +2.52 pts)" in text


def test_table1_released_partial_row_pixels_and_the_one_draw_of_a_subset(tmp_path):
    """On the first 4,000 CIFAR-10 images only the all-labels protocols run: each lands in the 400-per-class column as
    the subset's one draw (no spread); the released D has its own row beside the paper's, saying it is partial and
    its dimension; raw pixels have a row with no paper number; the 50,000-label column stays quoted."""
    n = (1000, 3000)
    res = [write(tmp_path / "t.json", svm_result("svm_cifar10_trained_all", 60.0, None, None, 1, n=n,
                                                 source={"run": "imagenet32", "epoch": 30, "data": "cifar10"})),
           write(tmp_path / "r.json", svm_result("svm_cifar10_released_all", 71.4, None, None, 1, features="released",
                                                 dim=12288, n=n, source={"release": RELEASE})),
           write(tmp_path / "p.json", svm_result("svm_cifar10_pixels_all", 40.0, None, None, 1, features="pixels",
                                                 dim=3072, n=n))]
    df = tables.build_table1(res, None, tmp_path / "t1.csv", tmp_path / "t1.md", preset="record")
    rel = row(df, tables.RELEASED_D, "Accuracy (400 per class)")
    assert rel["kind"] == "measured" and rel["ours"] == 71.4 and rel["paper"] == 73.8 and pd.isna(rel["ours_spread"])
    assert "one draw = all 4,000 training images" in rel["note"] and "no spread" in rel["note"]
    assert "PARTIAL release" in rel["note"] and "first 4 of 6 convolutions, 12,288-d" in rel["note"]
    assert "ee12b2d" in rel["note"] and "16 files verified" in rel["note"]
    assert not ((df["model"] == tables.RELEASED_D) & (df["metric"] == "Accuracy")).any()
    assert row(df, tables.RELEASED_D, "feature dimension")["ours"] == 12288
    assert row(df, "DCGAN (ours) + L2-SVM", "Accuracy")["kind"] == "quoted"  # 50,000 labels: not measured here
    ours = row(df, "DCGAN (ours) + L2-SVM", "Accuracy (400 per class)")
    assert ours["ours"] == 60.0 and "epoch 30" in ours["note"]
    pix = row(df, tables.PIXELS, "Accuracy (400 per class)")
    assert pd.isna(pix["paper"]) and pix["ours"] == 40.0
    # the full training set: the all-labels result is the Accuracy column again
    full = svm_result("svm_cifar10_released_all", 80.0, None, None, 1, features="released")
    df = tables.build_table1([write(tmp_path / "f.json", full)], None, tmp_path / "a.csv", tmp_path / "a.md",
                             preset="paper")
    assert row(df, tables.RELEASED_D, "Accuracy")["ours"] == 80.0
    with pytest.raises(tables.ResultFileError, match="two released results for the same label budget"):
        tables.build_table1([tmp_path / "f.json", tmp_path / "f.json"], None, tmp_path / "b.csv", tmp_path / "b.md",
                            preset="paper")


def test_table2_released_row_beside_the_papers(tmp_path):
    svm = {"test_error_pct": 23.0, "test_accuracy_pct": 77.0, "test_error_ci95_pct": 0.5, "labels_per_class": 100,
           "draws": 100, "C": 0.01,
           "features": "released", "feature_dim": 7168, "stand_in": None, "provenance": prov(),
           "feature_source": {"release": dict(RELEASE, epoch=200, complete=True)}}
    cnn = write(tmp_path / "cnn.json", {"validation_error_pct": 30.0, "test_error_pct": 31.0, "trials": [{}],
                                        "provenance": prov()})
    df = tables.build_table2([write(tmp_path / "r.json", svm)], cnn, None, tmp_path / "t2.csv", tmp_path / "t2.md",
                             preset="paper")
    rel = row(df, tables.RELEASED_D, "test error")
    assert rel["paper"] == 22.48 and rel["difference"] == pytest.approx(23.0 - 22.48) and "epoch 200" in rel["note"]
    assert "PARTIAL" not in rel["note"]
    assert row(df, "DCGAN (ours) + L2-SVM", "test error")["kind"] == "quoted"  # no trained D in this config


def test_a_missing_key_names_the_file_and_the_key(tmp_path):
    a = write(tmp_path / "all.json", {"test_accuracy_pct": 80.0})
    msg = r"all\.json lacks key\(s\) \['test_error_pct', 'test_error_ci95_pct', 'feature_dim', 'features'\]"
    with pytest.raises(tables.ResultFileError, match=msg):
        tables.build_table1([a, a], None, tmp_path / "x.csv", tmp_path / "x.md", preset="demo")
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.md").exists()


def test_preset_statement():
    assert tables.preset_statement("paper", []).startswith("Preset 'paper': measured on the paper's datasets")
    s = tables.preset_statement("demo", ["X standing in for Y", None, "X standing in for Y"])
    assert s == "Preset 'demo': numbers come from X standing in for Y; they are NOT comparable to the paper."


# --- paper.py against docs/REFERENCE.md section 1 ---------------------------------------------------------------


def _norm(name: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\(.*?\)", "", name)).strip().lower()


def _pct(cell: str) -> float | None:
    m = re.match(r"\s*([\d.]+)%", cell)
    return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def reference() -> str:
    return REFERENCE.read_text().split("## 2.")[0]


def _md_table(text: str, after: str) -> list[list[str]]:
    block = text.split(after, 1)[1]
    rows = [ln for ln in block.splitlines() if ln.startswith("|")]
    out = []
    for ln in rows:
        if set(ln) <= set("|-: "):
            continue
        out.append([c.strip() for c in ln.strip("|").split("|")])
        if not block.split(ln, 1)[1].lstrip("\n").startswith("|"):
            break
    return out[1:]  # drop the header


def test_every_table1_and_table3_number_matches_reference(reference):
    t1 = {_norm(r[0]): r for r in _md_table(reference, "Table 1")}
    assert len(t1) == len(paper.TABLE1_ROWS)
    for model in paper.TABLE1_ROWS:
        r = t1[_norm(model)]
        assert paper.TABLE1[model, "accuracy"].value == _pct(r[1])
        q = paper.TABLE1[model, "accuracy_400"]
        assert q.value == _pct(r[2]) and q.spread == float(re.search(r"±([\d.]+)%", r[2]).group(1))
        assert paper.TABLE1[model, "max_feature_units"].value == int(r[3])
    t3 = {_norm(r[0]): r for r in _md_table(reference, "Table 3")}
    assert len(t3) == len(paper.TABLE3_ROWS)
    for model in paper.TABLE3_ROWS:
        r = t3[_norm(model)]
        for col, cell in zip(paper.TABLE3_COLUMNS, r[1:3]):
            q = paper.TABLE3.get((model, col))
            assert (q.value if q else None) == _pct(cell), (model, col)


def test_every_table2_number_matches_reference(reference):
    block = reference.split("Table 2", 1)[1].split("Table 3", 1)[0]
    found = {_norm(n): float(v) for n, v in re.findall(r"([A-Za-z][\w+\- ]*?) (\d+\.\d+)%", block)}
    assert {_norm(r) for r in paper.TABLE2_ROWS} == set(found)
    for model in paper.TABLE2_ROWS:
        assert paper.TABLE2[model].value == found[_norm(model)], model
    assert "validation" in paper.TABLE2[paper.TABLE2_CNN].note


def test_other_quoted_facts_appear_in_reference(reference):
    flat = REFERENCE.read_text().replace(",", "")  # 28672 is stated in docs/REFERENCE.md Sec. 3-4
    reference = " ".join(reference.split())  # captions wrap across lines
    for number in (paper.CIFAR10_FEATURE_DIM.value, paper.LSUN_DUPLICATES_REMOVED.value, paper.FACES_BOXES.value):
        assert str(int(number)) in flat
    assert f"{paper.FIG6_BOXES} boxes drawn on {paper.FIG6_SAMPLES} samples" in reference
    assert f"~{paper.FIG6_MAPS_DROPPED} maps" in reference
    assert f"scale ±{paper.FIG7_NOISE}" in reference and f"{paper.FIG7_NEIGHBOURS} neighbours" in reference
    assert f"{paper.FIG4_POINTS} random points" in reference
    assert "average Z of 3 exemplars" in reference and paper.FIG7_EXEMPLARS == 3
    assert "from 4 averaged" in reference and paper.FIG8_EXEMPLARS == 4
