"""The curation checks (rules dedup_check, faces_check, tables_curation_checks) on photos with a planted truth."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from conftest import fake_snakemake, run_script
from dcgan_repro import dedup_check, faces, io, tables
from dcgan_repro.data import demo

DEDUP = {"crop": 32, "normalize": "image", "code_dim": 128, "dropout": 0.5, "input_noise": 2.0, "threshold": 0.0,
         "batch_size": 64, "lr": 1e-3}
COMMON = {"preset": "test", "device": "cpu", "precision": "fp32"}
ASTRONAUT_FACE = (175, 60, 100, 105)  # x, y, w, h of the face OpenCV finds in skimage.data.astronaut()


def _photos() -> np.ndarray:
    """Six real photographs shipped with scikit-image / scikit-learn, 256x256, and an exact repeat of the first."""
    import cv2

    names = ("astronaut", "coffee", "chelsea", "rocket", "china", "flower")
    photos = [cv2.resize(demo.demo_photo(n), (256, 256), interpolation=cv2.INTER_AREA) for n in names]
    return np.stack([*photos, photos[0]])


def test_dedup_check_finds_exact_duplicates_and_drops_repeated_photos(tmp_path):
    """Through the rule script: the repeated photo is dropped before planting (it would be a false merge), every
    planted exact copy shares its original's code (recall 1 for that kind), and the table reports the paper's
    upper bound beside our false-positive rate."""
    npz = tmp_path / "photos.npz"
    np.savez(npz, images=_photos())
    out = tmp_path / "results" / "dedup" / "check.json"
    check = {"per_kind": 3, "epochs": 2, "seeds": [1, 2]}
    smk = fake_snakemake("dedup_check", tmp_path, input={"photos": str(npz)}, output={"json": str(out)},
                         params={"dedup": DEDUP, "check": check, "common": COMMON})
    run_script("dedup_check", smk)
    res = io.read_json(out)
    assert res["repeated_photos_dropped"] == [6] and res["photos"] == 6
    assert res["n_distinct"] == 6 * 6 and res["n_planted"] == 3 * len(dedup_check.KINDS)
    assert res["recall_by_kind"]["exact"] == 1.0 and [r["seed"] for r in res["runs"]] == [1, 2]
    for key in ("precision", "recall", "false_positive_rate"):
        assert res["min"][key] <= res["mean"][key] <= res["max"][key]
    assert res["mean"]["false_positive_rate"] == pytest.approx(1 - res["mean"]["precision"])
    df = tables.build_curation_checks(out, None, tmp_path / "c.csv", tmp_path / "c.md", preset="test")
    fp = df[df["metric"].str.startswith("false-positive rate")].iloc[0]
    assert fp["paper"] == 1.0 and fp["ours"] == pytest.approx(100 * res["mean"]["false_positive_rate"])
    assert "upper bound" in fp["note"] and "standing in for LSUN" in fp["stand_in"]


def test_dedup_check_refuses_a_file_without_photos(tmp_path):
    npz = tmp_path / "bad.npz"
    np.savez(npz, images=np.zeros((3, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match=r"'checks\.dedup\.photos'.*at least 128 x 128"):
        dedup_check.run(npz, DEDUP, {"per_kind": 1, "epochs": 1, "seeds": [0]}, tmp_path / "o.json", COMMON)
    np.savez(npz, pictures=np.zeros((3, 256, 256, 3), np.uint8))
    with pytest.raises(ValueError, match=r"holds \['pictures'\], not 'images'"):
        dedup_check.run(npz, DEDUP, {"per_kind": 1, "epochs": 1, "seeds": [0]}, tmp_path / "o.json", COMMON)
    assert not (tmp_path / "o.json").exists()


def test_faces_check_scores_a_known_face_and_a_wrong_box(tmp_path):
    """The astronaut's face at its true box is found; the same image with the box elsewhere is a miss plus a false
    detection: recall 1/2, one false detection over two images."""
    img = np.ascontiguousarray(skimage.data.astronaut())
    npz = tmp_path / "composites.npz"
    np.savez(npz, images=np.stack([img, img]), boxes_xywh=np.array([ASTRONAUT_FACE, (350, 350, 100, 100)], float))
    cfg = {"cascade": "haarcascade_frontalface_default.xml", "scale_factor": 1.1, "min_neighbors": 5,
           "min_size": 64, "max_side": 2048}
    res = faces.check(npz, cfg, tmp_path / "check.json", COMMON)
    assert (res["recall"], res["false_detections"], res["false_detections_per_image"]) == (0.5, 1, 0.5)
    df = tables.build_curation_checks(None, tmp_path / "check.json", tmp_path / "c.csv", tmp_path / "c.md",
                                      preset="test")
    assert df.set_index("metric").loc["false detections per image", "ours"] == 0.5
    assert "| 0.500 " in (tmp_path / "c.md").read_text()  # not rounded to an integer
    np.savez(npz, images=np.stack([img]))
    with pytest.raises(ValueError, match=r"'checks\.faces\.composites'.*lacks \['boxes_xywh'\]"):
        faces.check(npz, cfg, tmp_path / "check2.json", COMMON)
