"""Face detection and cropping (Sec. 4.2): the astronaut's face is found and cropped, bad inputs are decoded or
skipped with the right reason, large images are detected downscaled with boxes mapped back, the shard and gather
rules write the documented format, and the detector scores on composites with known face boxes."""

from __future__ import annotations

import json
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import fake_snakemake, run_script
from dcgan_repro import faces, images, io

REPO = Path(__file__).resolve().parents[1]
CFG = dict(cascade="haarcascade_frontalface_default.xml", scale_factor=1.1, min_neighbors=5, min_size=64,
           max_side=2048, margin=0.0, image_size=64, shards=2)
# The astronaut's face in skimage.data.astronaut() (512x512), [x, y, w, h], read off the image by eye:
# forehead to chin, ear to ear. The detector's box must overlap it with IoU >= 0.5.
ASTRONAUT_FACE = (175, 60, 100, 105)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut())  # (512, 512, 3) RGB


def encode(rgb: np.ndarray, ext: str, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, rgb[..., ::-1] if rgb.ndim == 3 else rgb, list(params))
    assert ok
    return buf.tobytes()


def pil_bytes(im: Image.Image, fmt: str, **kw) -> bytes:
    b = BytesIO()
    im.save(b, format=fmt, **kw)
    return b.getvalue()


# --- detection and cropping ----------------------------------------------------------------------------


def test_detects_the_astronaut_face_and_crops_it(astronaut):
    boxes, found = faces.detect_faces(astronaut)
    assert found == 1 and boxes.shape == (1, 4)
    assert faces.iou(boxes[0], ASTRONAUT_FACE) >= 0.5
    crops = faces.crop_faces(astronaut, boxes, margin=0.0, image_size=64)
    assert crops.shape == (1, 64, 64, 3) and crops.dtype == np.uint8
    x, y, w, h = boxes[0]
    ref = cv2.resize(astronaut[y:y + h, x:x + w], (64, 64), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(crops[0], ref)
    # min_size is the "sufficiently high resolution" rule: a ~50 px face is kept at 24, dropped at 64
    small = cv2.resize(astronaut, (256, 256), interpolation=cv2.INTER_AREA)
    assert len(faces.detect_faces(small, min_size=24)[0]) == 1
    assert len(faces.detect_faces(small, min_size=64)[0]) == 0


def test_large_images_are_detected_downscaled_with_boxes_mapped_back(astronaut):
    big = cv2.resize(astronaut, (2560, 2560), interpolation=cv2.INTER_LINEAR)  # 5x: face ~500 px
    boxes, found = faces.detect_faces(big, max_side=512, min_size=64)
    assert found == 1
    assert faces.iou(boxes[0], np.array(ASTRONAUT_FACE) * 5) >= 0.5
    assert boxes[0, 2] >= 400  # in original pixels, not in the 512 px detection image


def test_margin_grows_the_crop_and_shrinks_to_stay_a_square_inside_the_image():
    img = np.arange(200 * 300 * 3, dtype=np.uint32).reshape(200, 300, 3).astype(np.uint8)
    # centre box: full margin 0.25 * 40 = 10 px per side
    c = faces.crop_faces(img, np.array([[100, 80, 40, 40]]), margin=0.25, image_size=60)
    ref = cv2.resize(img[70:130, 90:150], (60, 60), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(c[0], ref)
    # box 4 px from the left edge: margin shrinks to 4 px on every side, crop stays square and centred
    c = faces.crop_faces(img, np.array([[4, 80, 40, 40]]), margin=0.25, image_size=48)
    np.testing.assert_array_equal(c[0], img[76:124, 0:48])  # 48 px square: resized to itself
    # a crop smaller than image_size is enlarged (bilinear), not padded
    c = faces.crop_faces(img, np.array([[10, 10, 20, 20]]), margin=0.0, image_size=64)
    assert c.shape == (1, 64, 64, 3)
    assert faces.crop_faces(img, np.zeros((0, 4)), image_size=64).shape == (0, 64, 64, 3)


# --- reading bad inputs ----------------------------------------------------------------------------------


def test_bad_and_unusual_inputs_are_decoded_or_skipped_with_the_right_reason(tmp_path, astronaut, monkeypatch):
    rgb = astronaut[::4, ::4].copy()  # (128, 128, 3)
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    jpg = encode(rgb, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95])
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpg[: len(jpg) // 2],
        "truncated.png": encode(rgb, ".png")[:-40],
        "appended.jpg": jpg + b"ftypmp42" + bytes(3000),  # complete JPEG + trailing data ("motion photo")
        "cmyk.jpg": pil_bytes(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95),
        "gray.png": encode(gray, ".png"),
        "rgb16.png": encode(rgb.astype(np.uint16) * 257, ".png"),
        "rgba.png": pil_bytes(Image.fromarray(np.dstack([rgb, np.full(gray.shape, 128, np.uint8)])), "PNG"),
        "image.tga": pil_bytes(Image.fromarray(rgb), "TGA"),  # OpenCV cannot read TGA: Pillow fallback
        "notes.txt": b"this is a text file, not an image\n" * 20,
        "garbage.jpg": jpg[:200] + bytes(np.random.default_rng(0).integers(0, 256, 3000, np.uint8)) + b"\xff\xd9",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "folder.jpg").mkdir()
    expect = {"empty.jpg": "empty_file", "truncated.jpg": "truncated", "truncated.png": "truncated",
              "notes.txt": "not_an_image", "garbage.jpg": "corrupt", "folder.jpg": "unreadable",
              "missing.jpg": "missing"}
    for name, reason in expect.items():
        img, status = images.decode_image(tmp_path / name)
        assert (img, status) == (None, reason), name
        assert reason in faces.SKIP_REASONS
    for name, tol in {"cmyk.jpg": 6.0, "appended.jpg": 6.0, "gray.png": 0, "rgb16.png": 0, "rgba.png": 0, "image.tga": 0}.items():
        img, status = images.decode_image(tmp_path / name)
        assert status == "ok" and img.dtype == np.uint8 and img.shape == (128, 128, 3), name
        want = np.repeat(gray[..., None], 3, 2) if name == "gray.png" else rgb
        assert np.abs(img.astype(int) - want).mean() <= tol, name
    # Pillow-only modes reach 8-bit RGB too: 16-bit grayscale (I;16) and 32-bit integer (I)
    g16 = Image.fromarray((gray.astype(np.uint16) * 257))
    np.testing.assert_array_equal(images._pil_to_rgb(g16), np.repeat(gray[..., None], 3, 2))
    np.testing.assert_array_equal(images._pil_to_rgb(g16.convert("I")), np.repeat(gray[..., None], 3, 2))
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    assert images.decode_image(tmp_path / "gray.png") == (None, "too_large")


# --- rules -----------------------------------------------------------------------------------------------


def make_faces_raw(folder: Path, astronaut: np.ndarray) -> list[str]:
    """faces_raw: the astronaut (PNG and JPEG), a face-free photo, a grayscale copy, two broken files."""
    imgs = {"a/astronaut.png": encode(astronaut, ".png"), "a/astronaut.jpg": encode(astronaut, ".jpg"),
            "b/coffee.jpg": encode(np.ascontiguousarray(skimage.data.coffee()), ".jpg"),
            "b/astronaut_gray.png": encode(cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), ".png"),
            "broken/empty.jpg": b"", "broken/notes.jpg": b"plain text\n"}
    for name, data in imgs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    manifest = sorted(imgs) + ["gone/missing.png"]
    io.write_text(folder / "manifest.txt", "\n".join(manifest) + "\n\n")
    io.write_json(folder / "meta.json", {"name": "faces_raw", "source": "test images",
                                         "stand_in": "test images standing in for web faces"})
    return manifest




def test_rule_scripts_detect_shards_and_gather_write_the_format(tmp_path, astronaut):
    src = tmp_path / "resources/data/faces_raw"
    manifest = make_faces_raw(src, astronaut)
    boxes = [tmp_path / f"results/faces/shards/{i:04d}.json" for i in range(2)]
    crops = [tmp_path / f"resources/faces_shards/{i:04d}.npy" for i in range(2)]
    for i in range(2):
        run_script("faces_detect_shard", fake_snakemake(
            "faces_detect_shard", tmp_path, input={"source": str(src)},
            output={"boxes": str(boxes[i]), "crops": str(crops[i])},
            params={"shard": i, "shards": 2, "faces": CFG}))
    records = {}
    for b, c in zip(boxes, crops):
        rec = json.loads(b.read_text())
        x = np.load(c)
        assert x.dtype == np.uint8 and x.shape[1:] == (64, 64, 3)
        assert len(x) == rec["counts"]["faces_kept"] == sum(len(r["boxes"]) for r in rec["images"].values())
        assert "provenance" in rec
        records.update(rec["images"])
        # the boxes JSON alone redoes the crops, without the detector (and with another margin, for an audit)
        np.testing.assert_array_equal(faces.crops_from_boxes(src, b, margin=0.0, image_size=64), x)
        assert faces.crops_from_boxes(src, b, margin=0.25, image_size=32).shape == (len(x), 32, 32, 3)
    assert sorted(records) == sorted(manifest)  # every image accounted for, in one shard
    status = {k: r["status"] for k, r in records.items()}
    assert status == {"a/astronaut.png": "ok", "a/astronaut.jpg": "ok", "b/coffee.jpg": "ok",
                      "b/astronaut_gray.png": "ok", "broken/empty.jpg": "empty_file",
                      "broken/notes.jpg": "not_an_image", "gone/missing.png": "missing"}
    for name in ("a/astronaut.png", "a/astronaut.jpg", "b/astronaut_gray.png"):
        assert len(records[name]["boxes"]) == 1 and faces.iou(records[name]["boxes"][0], ASTRONAUT_FACE) >= 0.5
    assert records["b/coffee.jpg"]["boxes"] == []

    out = {"data": tmp_path / "resources/data/faces", "summary": tmp_path / "results/faces/summary.json"}
    run_script("faces_gather", fake_snakemake(
        "faces_gather", tmp_path, input={"source": str(src), "boxes": [str(b) for b in boxes],
                                         "crops": [str(c) for c in crops]},
        output={k: str(v) for k, v in out.items()}, params={"faces": CFG, "preset": "test"}))
    x, y = io.read_dataset(out["data"], "train")
    assert x.shape == (3, 64, 64, 3) and x.dtype == np.uint8
    assert y.dtype == np.int64 and (y == -1).all()
    np.testing.assert_array_equal(x, np.concatenate([np.load(c) for c in crops]))
    meta = io.read_meta(out["data"])
    assert meta["name"] == "faces" and meta["splits"] == {"train": 3} and meta["image_shape"] == [64, 64, 3]
    assert meta["stand_in"] == "test images standing in for web faces" and meta["n_classes"] == 0
    s = json.loads(out["summary"].read_text())
    assert (s["images_seen"], s["images_decoded"], s["skipped_total"]) == (7, 4, 3)
    assert s["skipped"] == {"empty_file": 1, "missing": 1, "not_an_image": 1}
    assert (s["images_with_faces"], s["faces_found"], s["faces_kept"], s["crops"]) == (3, 3, 3, 3)
    assert s["provenance"]["config"]["faces"]["min_size"] == 64
    assert not list(tmp_path.rglob("*.partial*")) and not list(tmp_path.rglob("*.tmp*"))


def test_shards_split_the_manifest_like_array_split_and_bad_settings_fail_clearly(tmp_path):
    items = [f"{i}.jpg" for i in range(11)]
    parts = [faces.shard_items(items, i, 4) for i in range(4)]
    assert parts == [list(p) for p in np.array_split(np.array(items), 4)]
    with pytest.raises(ValueError, match="faces.shards"):
        faces.shard_items(items, 4, 4)
    with pytest.raises(ValueError, match="faces.cascade.*haarcascade_frontalface_default.xml"):
        faces.load_cascade("no_such_cascade.xml")
    with pytest.raises(FileNotFoundError, match="manifest.txt"):
        faces.read_manifest(tmp_path)
    (tmp_path / "c0.npy").write_bytes(b"")
    io.save_npy(tmp_path / "c0.npy", np.zeros((2, 32, 32, 3), np.uint8))
    io.write_json(tmp_path / "b0.json", {"images": {}, "counts": {}})
    with pytest.raises(ValueError, match="faces.image_size"):
        faces.gather(tmp_path, [tmp_path / "b0.json"], [tmp_path / "c0.npy"], tmp_path / "out",
                     tmp_path / "s.json", CFG, "test")
    assert not (tmp_path / "out").exists() and not (tmp_path / "s.json").exists()


# --- evaluation --------------------------------------------------------------------------------------------


def test_evaluate_detector_counts_hits_misses_and_false_detections(astronaut):
    hit = faces.evaluate_detector([astronaut], [ASTRONAUT_FACE])
    assert (hit["found"], hit["recall"], hit["false_detections"]) == (1, 1.0, 0)
    # a wrong true box: the real face becomes a false detection and the true box a miss
    miss = faces.evaluate_detector([astronaut], [[300, 300, 100, 100]])
    assert (miss["found"], miss["recall"], miss["false_detections"], miss["false_detections_per_image"]) == \
        (0, 0.0, 1, 1.0)
    # a face smaller than min_size is not eligible: it is excluded from recall_eligible, not from recall
    small = faces.evaluate_detector([astronaut], [[10, 10, 30, 30]])
    assert small["faces_eligible"] == 0 and small["recall_eligible"] is None


def test_detector_on_composites_with_known_faces(shared_data):
    """300 real faces pasted on real scenes (measured at defaults: recall 0.64 over all faces, 0.97 over faces
    >= 64 px, 0.03 false detections per image)."""
    d = np.load(shared_data / "faces" / "composite_faces256.npz")
    r = faces.evaluate_detector(d["images"][:150], d["boxes_xywh"][:150])
    assert r["recall_eligible"] >= 0.9 and r["false_detections_per_image"] <= 0.1
    assert r["mean_iou_found"] >= 0.75


def test_precropped_faces_skip_detection_and_take_the_centred_square(tmp_path, astronaut):
    """faces.detect: false (e.g. LFW crops): no cascade; the centred square is the face; min_size still applies."""
    path = tmp_path / "face.png"
    Image.fromarray(astronaut[40:130, 160:300]).save(path)            # 90 x 140: not a square, no context
    rec, crops, found = faces.process_image(path, {**CFG, "detect": False})
    assert rec["boxes"] == [[25, 0, 90, 90]] and found == 1 and crops.shape == (1, 64, 64, 3)
    square = faces.crop_faces(astronaut[40:130, 160:300], np.array([[25, 0, 90, 90]]))    # (1, 64, 64, 3)
    np.testing.assert_array_equal(crops, square)
    rec, crops, _ = faces.process_image(path, {**CFG, "detect": False, "min_size": 100})
    assert rec["status"] == "ok" and rec["boxes"] == [] and len(crops) == 0  # too small: counted, not kept
