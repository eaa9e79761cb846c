"""dcgan_repro.figures: exact pixels and sizes, guided backprop, interpolation, window dropout, box files, every
figure's files, the authors' SVHN sheet, on tiny models built with models.save_checkpoint (no training, no
../shared data needed)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from dcgan_repro import io, models, paper
from dcgan_repro import theano_weights as tw
from dcgan_repro.figures import (arithmetic, cli, guided_backprop, interpolation, layout, mnist, runs,
                                 sample_sheets, window_dropout)
from dcgan_repro.images import GRID_PAD, image_grid

torch.set_num_threads(1)
COMMON = {"preset": "demo", "device": "cpu", "precision": "fp32"}
STAND_IN = "random test pixels standing in for LSUN"


def run_cfg(model: str, ngf: int, dataset: str) -> dict:
    return {"dataset": dataset, "model": model, "recipe": "paper", "ngf": ngf, "ndf": ngf, "nz": 100,
            "batch_size": 32, "lr": 2e-4, "beta1": 0.5, "weight_decay": 0.0, "epochs": 2, "decay_epochs": 0,
            "snapshot_epochs": [1, 2], "checkpoint_every": 50, "sample_every": 50, "max_steps": 0, "seed": 0}


def save_run(root: Path, name: str, model: str, ngf: int, dataset: str, meta: dict) -> Path:
    """model.pt (epoch 2) and a snapshot epoch001.pt with different weights, in the CONTRACTS format."""
    run = run_cfg(model, ngf, dataset)
    d = root / "results" / "models" / name
    kw = dict(name=name, run=run, data_meta=meta, provenance={})
    torch.manual_seed(1)
    g1, d1 = models.build_models(run)
    models.save_checkpoint(d / "epoch001.pt", g1, d1, epoch=1, step=5, snapshots={}, **kw)
    torch.manual_seed(2)
    g2, d2 = models.build_models(run)
    models.save_checkpoint(d / "model.pt", g2, d2, epoch=2, step=10,
                           snapshots={1: str(d / "epoch001.pt")}, **kw)
    return d / "model.pt"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("figs")
    rng = np.random.default_rng(0)
    lsun_meta = {"name": "lsun", "splits": {"train": 64}, "image_shape": [64, 64, 3], "n_classes": 0,
                 "class_names": None, "source": "test", "stand_in": STAND_IN}
    io.write_dataset(root / "lsun", "train", rng.integers(0, 256, (64, 64, 64, 3), dtype=np.uint8))
    io.write_json(root / "lsun" / "meta.json", lsun_meta)
    mnist_meta = {**lsun_meta, "name": "mnist", "splits": {"train": 100}, "image_shape": [28, 28, 1],
                  "n_classes": 10, "stand_in": "random digits standing in for MNIST"}
    io.write_dataset(root / "mnist", "train", rng.integers(0, 256, (100, 28, 28, 1), dtype=np.uint8),
                     np.arange(100) % 10)
    io.write_json(root / "mnist" / "meta.json", mnist_meta)
    return {
        "root": root,
        "lsun": save_run(root, "lsun", "dcgan64", 2, "lsun", lsun_meta),
        "mnist_dcgan": save_run(root, "mnist_dcgan", "mnist_cond_dcgan", 2, "mnist", mnist_meta),
        "mnist_gan": save_run(root, "mnist_gan", "mnist_cond_mlp", 2, "mnist", mnist_meta),
        "figures": {"grid_rows": 2, "grid_cols": 3, "interp_rows": 3, "interp_points": 3, "interp_steps": 2,
                    "window_run": "lsun", "window_layer": 2, "window_boxes": None, "arithmetic_noise": 0.25,
                    "exemplars": 2, "exemplar_ids": None, "turn_exemplars": 2, "turn_ids": None, "measure_draws": 6,
                    "bn_reference": 16, "exemplar_pool": 24, "seed": 0},
    }


def read_png(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


# --- layout and exact pixels --------------------------------------------------------------------------------


def test_sample_sheet_has_the_expected_pixels_and_is_deterministic(tiny, tmp_path):
    figs = tiny["figures"]
    png, pdf = tmp_path / "fig10.png", tmp_path / "fig10.pdf"
    lay = sample_sheets.sample_sheet(tiny["lsun"], tiny["root"] / "lsun", png, pdf, run="lsun", epoch=None,
                                     figure="fig10_faces", figures=figs, common=COMMON)
    img = read_png(png)
    # grid of 2 x 3 samples of 64 px with 2 px padding = 134 x 200, upscaled 4x (720 / 200 -> 4, the cap)
    assert lay.scale == 4 and img.shape[1] == 820 == 200 * 4 + 2 * layout.MARGIN_PX
    assert img.shape[0] == lay.height
    assert (img.shape[0] - layout.TITLE_PX - 134 * 4 - layout.FOOTER_PAD_PX - layout.MARGIN_PX) % layout.LINE_PX == 0
    netG, _, ckpt = models.load_checkpoint(tiny["lsun"])
    samples = models.generate(netG, 6, z_dist=models.z_dist(ckpt["run"]), seed=figs["seed"])
    grid = image_grid(samples, 3)
    assert grid.shape == (134, 200, 3)
    up = np.repeat(np.repeat(grid, 4, 0), 4, 1)
    x, y = layout.MARGIN_PX, layout.TITLE_PX
    np.testing.assert_array_equal(img[y:y + 536, x:x + 800], up)  # the generated pixels, unresampled
    assert pdf.read_bytes().startswith(b"%PDF")
    first = png.read_bytes(), pdf.read_bytes()
    sample_sheets.sample_sheet(tiny["lsun"], tiny["root"] / "lsun", png, pdf, run="lsun", epoch=None,
                               figure="fig10_faces", figures=figs, common=COMMON)
    assert (png.read_bytes(), pdf.read_bytes()) == first


def test_snapshot_epochs_load_the_snapshot_and_name_what_is_kept(tiny):
    g_final, _, ck = runs.load_run(tiny["lsun"], torch.device("cpu"))
    g1, _, ck1 = runs.load_run(tiny["lsun"], torch.device("cpu"), epoch=1)
    assert (ck["epoch"], ck1["epoch"]) == (2, 1)
    assert not torch.equal(g_final.project.weight, g1.project.weight)
    with pytest.raises(ValueError, match=r"no snapshot of epoch 3; kept: \[1\]"):
        runs.load_run(tiny["lsun"], torch.device("cpu"), epoch=3)


# --- algorithms ---------------------------------------------------------------------------------------------


def test_interpolation_endpoints_are_the_anchor_points():
    pts = torch.randn(4, 5)
    path = interpolation.interpolate_z(pts, 3)
    assert path.shape == (10, 5)
    for k in range(4):
        assert torch.equal(path[3 * k], pts[k])
    torch.testing.assert_close(path[1], pts[0] + (pts[1] - pts[0]) / 3)
    rows = interpolation.walk_rows(pts, 3)                 # one row per segment, both ends included
    assert rows.shape == (3, 4, 5)
    for k in range(3):
        assert torch.equal(rows[k, 0], pts[k]) and torch.equal(rows[k, -1], pts[k + 1])


def test_fig04_is_laid_out_as_rows_of_segments_and_records_its_settings(tiny, tmp_path):
    """Rows of interp_steps + 1 images (about 10 at the paper's settings), one row per segment, walk after walk:
    3 rows from walks through 3 points = a whole walk (2 rows) and the first row of a second."""
    figs = tiny["figures"]
    lay = interpolation.fig04_interpolation(tiny["lsun"], tiny["root"] / "lsun", tmp_path / "f4.png",
                                            tmp_path / "f4.pdf", figures=figs, common=COMMON)
    assert len(lay.boxes) == 2                                 # one panel per walk
    (x0, y0, w0, h0), (x1, y1, w1, h1) = lay.boxes[0][0], lay.boxes[1][0]
    pitch = (64 + GRID_PAD) * lay.scale
    assert (w0, h0) == (3 * pitch + GRID_PAD * lay.scale, 2 * pitch + GRID_PAD * lay.scale)   # 2 rows x 3 images
    assert h1 == pitch + GRID_PAD * lay.scale
    foot = " ".join(lay.footer_lines)
    assert "3 rows (figures.interp_rows) of 3 images" in foot and "2 steps per segment" in foot
    assert "through 3 random points" in foot
    # the paper's settings: 16 rows of 10 images stay legible (each face >= 128 px wide at 100 dpi)
    big = {**figs, "interp_rows": 16, "interp_points": 9, "interp_steps": 9}
    lay = interpolation.fig04_interpolation(tiny["lsun"], None, tmp_path / "g4.png", tmp_path / "g4.pdf",
                                            figures=big, common=COMMON)
    assert len(lay.boxes) == 2 and lay.scale == 2
    assert lay.boxes[0][0][3] == 8 * (64 + GRID_PAD) * 2 + GRID_PAD * 2 and lay.width < 1400


@pytest.mark.parametrize("act", [nn.ReLU(), nn.LeakyReLU(0.2, inplace=True)])
def test_guided_backprop_matches_the_rule_and_passes_only_positive_gradient(act):
    torch.manual_seed(0)
    l1, l2, l3 = nn.Linear(6, 8), nn.Linear(8, 5), nn.Linear(5, 1)
    net = nn.Sequential(l1, act, l2, copy_act := type(act)(*([0.2] if isinstance(act, nn.LeakyReLU) else [])), l3)
    x = torch.randn(3, 6)

    def fwd(t):
        return net(t)[:, :, None, None]  # (N, 1, 1, 1)

    grad = guided_backprop.guided_backprop(net, fwd, x, [(i, 0, 0, 0) for i in range(3)])
    # by hand: at each (leaky) ReLU keep only positive gradient where the activation is positive
    with torch.no_grad():
        h1 = l1(x)
        h2 = l2(act(h1.clone()))
        g2 = l3.weight[0].clamp(min=0) * (h2 > 0)                      # (3, 5), >= 0
        g1 = (g2 @ l2.weight).clamp(min=0) * (h1 > 0)                   # (3, 8), >= 0
        expected = g1 @ l1.weight                                       # (3, 6)
    assert (g1 >= 0).all() and (g2 >= 0).all()
    torch.testing.assert_close(grad, expected)
    # an ordinary gradient differs, and the hooks are gone afterwards
    xx = x.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(net(xx).sum(), xx)
    assert not torch.allclose(plain, expected)
    assert not any(m._forward_hooks for m in (act, copy_act))


def test_guided_backprop_through_the_real_discriminator_gives_per_image_gradients():
    torch.manual_seed(0)
    _, netD = models.build_models(run_cfg("dcgan64", 2, "lsun"))
    imgs = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    vis, chosen = guided_backprop.guided_backprop_panel(netD, imgs, n_features=3, top=2, seed=0,
                                                        device=torch.device("cpu"))
    assert vis.shape == (6, 64, 64, 3) and vis.dtype == np.uint8
    assert [len(c) for c in chosen] == [2, 2, 2] and all(s[1] == k for k, c in enumerate(chosen) for s in c)
    net = guided_backprop._fixed_bn_copy(netD, imgs, 0, torch.device("cpu"))
    x = models.to_model_input(imgs[:2], "tanh")
    both = guided_backprop.guided_backprop(net, lambda t: net.features(t)[-1], x, [(0, 0, 1, 1), (1, 1, 2, 2)])
    one = guided_backprop.guided_backprop(net, lambda t: net.features(t)[-1], x[:1], [(0, 0, 1, 1)])
    torch.testing.assert_close(both[:1], one)  # fixed BN: images do not interact


def test_window_dropout_zeroes_exactly_the_chosen_maps():
    torch.manual_seed(0)
    netG, _ = models.build_models(run_cfg("dcgan64", 2, "lsun"))
    z = models.sample_z(6, 100, "uniform", generator=torch.Generator().manual_seed(0))
    sites = window_dropout.activation_sites(netG, z[:2])
    assert [s[1] for s in sites] == [(8, 8, 8), (4, 16, 16), (2, 32, 32)]  # ngf = 2
    layers = window_dropout.feature_layers(netG, z[:2])
    assert layers[0] == ("project", (16, 4, 4)) and layers[1:] == sites  # counted from z: the projection first
    site = window_dropout.layer_site(netG, z[:2], 2)   # the paper's "second highest": the 8x8 layer
    assert site == 0 and window_dropout.layer_site(netG, z[:2], 3) == 1
    for bad in (1, 5):
        with pytest.raises(ValueError, match=r"figures.window_layer = %d: .* allowed: 2\.\.4" % bad):
            window_dropout.layer_site(netG, z[:2], bad)
    img0, a0 = window_dropout.generate_with_sites(netG, z, capture=site)
    img1, a1 = window_dropout.generate_with_sites(netG, z, capture=site, drop=(site, [0, 2]))
    assert (a0[:, [0, 2]].abs().sum(dim=(2, 3)) > 0).all()  # they were active ...
    assert (a1[:, [0, 2]] == 0).all()                       # ... and are zero everywhere
    torch.testing.assert_close(a1[:, [1, 3]], a0[:, [1, 3]], rtol=0, atol=0)
    assert not np.array_equal(img0, img1)
    img2, _ = window_dropout.generate_with_sites(netG, z)
    np.testing.assert_array_equal(img0, img2)  # hooks removed: no lasting effect


def test_window_training_set_positives_and_negatives():
    acts = np.random.default_rng(0).random((3, 4, 16, 16))
    boxes = [{"sample": 1, "x0": 16, "y0": 8, "x1": 32, "y1": 24}]   # 4 x 4 cells of a 16 x 16 map on 64 px
    X, y = window_dropout.window_training_set(acts, boxes, (64, 64), np.random.default_rng(0))
    assert X.shape == (32, 4) and y.sum() == 16
    inside = acts[1][:, 2:6, 4:8].reshape(4, -1).T
    assert {tuple(r) for r in X[y == 1]} == {tuple(r) for r in inside}
    assert not {tuple(r) for r in X[y == 0]} & {tuple(r) for r in inside}


def test_proxy_boxes_find_the_brightest_region():
    imgs = np.full((3, 64, 64, 3), 60, np.uint8)
    imgs[1, 40:56, 8:24] = 250
    imgs[2, 0:16, 0:16] = 120
    boxes = window_dropout.proxy_window_boxes(imgs, 2)
    assert boxes[0] == {"sample": 1, "x0": 8, "y0": 40, "x1": 24, "y1": 56}
    assert boxes[1]["sample"] == 2


def test_box_file_errors_name_the_file_and_the_box(tmp_path):
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps({"samples": {"z_seed": 0, "n": 10},
                             "boxes": [{"sample": 1, "x0": 0, "y0": 0, "x1": 70, "y1": 5}]}))
    with pytest.raises(ValueError, match=r"boxes\.json: box 0 .* 0 <= x0 < x1 <= 64"):
        window_dropout.read_box_file(p, (64, 64))
    p.write_text(json.dumps({"samples": {"z_seed": 0, "n": 10}, "boxes": [], "extra": 1}))
    with pytest.raises(ValueError, match="must be a JSON object with keys"):
        window_dropout.read_box_file(p, (64, 64))


# --- every figure writes its files -------------------------------------------------------------------------


def test_box_template_then_fig06_with_drawn_boxes(tiny, tmp_path):
    out = tmp_path / "boxes"
    assert cli.main(["make-box-template", "--model", str(tiny["lsun"]), "--out", str(out), "--n", "12",
                     "--z-seed", "5"]) == 0
    spec = json.loads((out / "window_boxes.json").read_text())
    assert spec["samples"] == {"z_seed": 5, "n": 12} and spec["boxes"] == []
    assert len(list((out / "samples").glob("sample_*.png"))) == 12 and (out / "window_boxes_sheet.png").exists()
    netG, _, ckpt = models.load_checkpoint(tiny["lsun"])
    z = models.sample_z(12, 100, models.z_dist(ckpt["run"]), generator=torch.Generator().manual_seed(5))
    imgs, _ = window_dropout.generate_with_sites(netG, z)
    np.testing.assert_array_equal(read_png(out / "samples" / "sample_003.png"), imgs[3])  # what fig06 boxes
    spec["boxes"] = [{"sample": i, "x0": 8, "y0": 8, "x1": 40, "y1": 30} for i in (0, 3, 7)]
    (out / "window_boxes.json").write_text(json.dumps(spec))
    figs = {**tiny["figures"], "window_boxes": str(out / "window_boxes.json")}
    stats = window_dropout.fig06_window_dropout(tiny["lsun"], tiny["root"] / "lsun", tmp_path / "f6.png",
                                                tmp_path / "f6.pdf", tmp_path / "f6.json", figures=figs, common=COMMON)
    assert stats["proxy_used"] is False and stats["n_boxes"] == 3 and stats["n_samples"] == 12
    assert stats["dropped_maps_all_zero"] and stats["n_maps"] == 8                     # the 8x8 layer at ngf = 2
    assert stats["layer"]["from_z"] == 2 and stats["layer"]["shape"] == [8, 8, 8]
    assert stats["boxes_source"] == f"box file {out / 'window_boxes.json'}"
    stats3 = window_dropout.fig06_window_dropout(tiny["lsun"], tiny["root"] / "lsun", tmp_path / "f6.png",
                                                 tmp_path / "f6.pdf", tmp_path / "f6b.json",
                                                 figures={**figs, "window_layer": 3}, common=COMMON)
    assert stats3["layer"]["shape"] == [4, 16, 16] and stats3["n_maps"] == 4                 # configurable
    assert json.loads((tmp_path / "f6.json").read_text())["provenance"]["seed"] == 0


def test_every_figure_writes_png_and_pdf(tiny, tmp_path):
    figs, root = tiny["figures"], tiny["root"]
    out = {}
    for name in ("fig04", "fig05", "fig06", "fig07", "fig08", "fig09"):
        out[name] = (tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
    interpolation.fig04_interpolation(tiny["lsun"], root / "lsun", *out["fig04"], figures=figs, common=COMMON)
    guided_backprop.fig05_guided_backprop(tiny["lsun"], root / "lsun", *out["fig05"], figures=figs, common=COMMON)
    stats = window_dropout.fig06_window_dropout(tiny["lsun"], root / "lsun", *out["fig06"], tmp_path / "f6.json",
                                                figures=figs, common=COMMON)
    r7 = arithmetic.fig07_vector_arithmetic(tiny["lsun"], None, *out["fig07"], tmp_path / "f7.json",
                                            tmp_path / "f7.csv", figures=figs, common=COMMON)
    r8 = arithmetic.fig08_turn_vector(tiny["lsun"], None, *out["fig08"], tmp_path / "f8.json", tmp_path / "f8.csv",
                                      figures=figs, common=COMMON)
    mnist.fig09_mnist_samples(tiny["mnist_dcgan"], tiny["mnist_gan"], root / "mnist", *out["fig09"],
                              figures=figs, common=COMMON)
    for png, pdf in out.values():
        assert read_png(png).shape[1] >= layout.MIN_WIDTH_PX and pdf.read_bytes().startswith(b"%PDF")
    # the proxy is declared, with the paper's sample and box counts
    assert stats["proxy_used"] and (stats["n_samples"], stats["n_boxes"]) == (paper.FIG6_SAMPLES, paper.FIG6_BOXES)
    assert "AUTOMATIC PROXY" in stats["boxes_source"]
    # Figs. 7, 8: automatic exemplars are declared a proxy; the measured effects are written beside the figure
    assert set(r7["equations"]) == {"smile", "glasses"}
    for eq in r7["equations"].values():
        assert ("AUTOMATIC PROXY" in eq["source"] and eq["draws"] == figs["measure_draws"]) if eq["drawn"] else \
            "real-face threshold" in eq["reason"]
    assert json.loads((tmp_path / "f7.json").read_text())["equations"].keys() == r7["equations"].keys()
    assert (tmp_path / "f7.csv").read_text().startswith("figure,equation,measure")
    assert r8["exemplars"] == "automatic proxy" and len(r8["left"]) == figs["turn_exemplars"]
    assert r8["turn"]["faces"] == figs["measure_draws"] and len(r8["turn"]["alphas"]) == figs["interp_steps"] + 1
    assert [r["direction"] for r in csv.DictReader((tmp_path / "f8.csv").open())] == \
        ["turn", *(f"random_same_length_{i + 1}" for i in range(arithmetic.RANDOM_DIRECTIONS))]
    assert r8["random_directions"]["directions"] == arithmetic.RANDOM_DIRECTIONS
    # Fig. 9: three panels of 10 classes x 20 samples of 28 px (30 px pitch + 2 px border)
    lay = layout.layout([[layout.Panel(np.zeros((302, 602, 1), np.uint8), "x")] * 3], "f")
    assert read_png(out["fig09"][0]).shape[1] == lay.width


def test_fig07_exemplar_ids_from_config_and_the_pool_sheet_that_shows_them(tiny, tmp_path):
    figs = tiny["figures"]
    ids = {"A": [0, 1], "B": [5], "C": [7, 8, 9]}
    r7 = arithmetic.fig07_vector_arithmetic(tiny["lsun"], None, tmp_path / "f7.png", tmp_path / "f7.pdf",
                                            figures=figs, common=COMMON, exemplar_ids=ids)  # bare {A, B, C} = smile
    smile = r7["equations"]["smile"]
    assert smile["exemplars"] == ids and smile["source"].startswith("hand-picked")
    assert smile["shown"] == {"A": [0, 1], "B": [5], "C": [7, 8]}          # the first `exemplars` of each list
    both = {"smile": ids, "glasses": {"A": [2, 3], "B": [4, 6], "C": [10, 11]}}
    r7 = arithmetic.fig07_vector_arithmetic(tiny["lsun"], None, tmp_path / "f7.png", tmp_path / "f7.pdf",
                                            figures=figs, common=COMMON, exemplar_ids=both)
    assert {k: v["exemplars"] for k, v in r7["equations"].items()} == both
    with pytest.raises(ValueError, match=r"figures.exemplar_ids.smile.*\[0, 24\)"):
        arithmetic.fig07_vector_arithmetic(tiny["lsun"], None, tmp_path / "x.png", tmp_path / "x.pdf",
                                           figures=figs, common=COMMON, exemplar_ids={**ids, "C": [24]})
    with pytest.raises(ValueError, match="unknown equation"):
        arithmetic.normalize_exemplar_ids({"beard": ids})
    r8 = arithmetic.fig08_turn_vector(tiny["lsun"], None, tmp_path / "f8.png", tmp_path / "f8.pdf", figures=figs,
                                      common=COMMON, turn_ids={"left": [3, 4, 5], "right": [6, 7]})
    assert (r8["left"], r8["right"], r8["exemplars"]) == ([3, 4], [6, 7], "hand")
    with pytest.raises(ValueError, match=r"figures.turn_ids.*\[0, 24\)"):
        arithmetic.fig08_turn_vector(tiny["lsun"], None, tmp_path / "x.png", tmp_path / "x.pdf", figures=figs,
                                     common=COMMON, turn_ids={"left": [30], "right": [1]})
    # the pool sheet shows exactly the samples the ids index (same seed, reference batch and pool size)
    assert cli.main(["exemplar-pool", "--model", str(tiny["lsun"]), "--out", str(tmp_path / "pool.png"),
                     "--seed", "0", "--bn-reference", "16", "--pool", "24"]) == 0
    netG, _, ckpt = models.load_checkpoint(tiny["lsun"])
    pool = arithmetic._pool(netG, ckpt, figs)[3]                               # (24, 64, 64, 3)
    sheet = read_png(tmp_path / "pool.png")
    assert sheet.shape[:2] == (3 * (1 * 66 + 2), 3 * (24 * 66 + 2))             # 1 row of 24 at 3x
    # sample 3, away from its index label: sheet pixels = the sample's pixels upscaled 3x
    y0, x0 = 3 * GRID_PAD, 3 * (GRID_PAD + 3 * 66)
    np.testing.assert_array_equal(sheet[y0 + 45:y0 + 192:3, x0 + 45:x0 + 192:3], pool[3, 15:64, 15:64])


def test_authors_svhn_samples_draws_the_generator_the_loader_gives_it(tmp_path):
    """The rule script's path: theano_weights loads the released-layout G, the figure draws its samples."""
    torch.manual_seed(0)
    netG, _ = models.build_models(tw.RELEASED_RUNS["svhn32"])
    jl = tw.write_theano_params(netG, tmp_path / "200_gen_params.jl")[-1]
    loaded = tw.load_generator(tmp_path, "svhn32")
    png, pdf = tmp_path / "svhn.png", tmp_path / "svhn.pdf"
    lay = sample_sheets.authors_svhn_samples(loaded, tw.released_file(tmp_path, "svhn32", "G"), png, pdf,
                                             figures={"grid_rows": 2, "grid_cols": 3, "seed": 0}, common=COMMON)
    assert tw.released_file(tmp_path, "svhn32", "G") == jl and pdf.read_bytes().startswith(b"%PDF")
    grid = image_grid(models.generate(loaded, 6, z_dist="normal", seed=0), 3)    # (70, 104, 3)
    up = np.repeat(np.repeat(grid, lay.scale, 0), lay.scale, 1)
    x, y, w, h = lay.boxes[0][0]
    assert (h, w) == up.shape[:2]
    np.testing.assert_array_equal(read_png(png)[y:y + h, x:x + w], up)
