"""dcgan_repro.figures.measures and the effects Figs. 7 and 8 measure with them: each measure responds to a planted
effect and not to a planted non-effect, on stand-in generators whose one latent axis does one known thing to a real
face (scikit-image's LFW subset); the measured success rate (Fig. 7) and pose trend (Fig. 8) report the planted
effect and report none where none was planted. With ../shared/data, the measures on the labelled LFW faces."""

from __future__ import annotations

import tarfile
from collections.abc import Callable

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from dcgan_repro.figures import arithmetic, measures

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def real_faces() -> np.ndarray:
    """uint8 (100, 64, 64, 3): the 100 faces of scikit-image's LFW subset (25x25 grey), upsampled."""
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    up = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_CUBIC) for f in faces])
    return np.repeat(up[..., None], 3, axis=3)


class PlantedG(nn.Module):
    """A stand-in generator (tanh output, no batch norm): every z draws ``base`` (64, 64, 3) changed by
    ``effect(image, z[0])`` (the planted axis) and made brighter or darker by z[1] (a nuisance every measure
    should ignore)."""

    output_range = "tanh"
    image_shape = (3, 64, 64)

    def __init__(self, base: np.ndarray, effect: Callable[[np.ndarray, float], np.ndarray], nz: int = 8) -> None:
        super().__init__()
        self.nz, self.base, self.effect = nz, base.astype(np.float32), effect
        self.dummy = nn.Parameter(torch.zeros(1))   # render() asks G for its device

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        imgs = np.stack([np.clip(self.effect(self.base, float(t)) + 25 * float(b), 0, 255)
                         for t, b in z[:, :2].cpu().numpy()])                 # (N, 64, 64, 3), 0-255
        return torch.from_numpy(imgs / 127.5 - 1).permute(0, 3, 1, 2).float()  # (N, 3, 64, 64)


def brighten(rows: slice, cols: slice, amount: float = 70.0) -> Callable[[np.ndarray, float], np.ndarray]:
    def effect(img: np.ndarray, t: float) -> np.ndarray:
        out = img.copy()
        out[rows, cols] += amount * t
        return out
    return effect


MOUTH = brighten(slice(56, 64), slice(24, 40))          # teeth showing: the smile measure's region
FOREHEAD = brighten(slice(2, 14), slice(20, 44))        # a change the smile measure must not see


def frames(img: np.ndarray, t: float) -> np.ndarray:
    """Dark spectacle frames, from none (t <= 0) to dark (t = 1): a bridge between the eyes, a rim under each eye."""
    out, d = img.copy(), 90.0 * max(0.0, t)
    out[22:25, 24:40] -= d
    out[34:37, 8:25] -= d
    out[34:37, 39:56] -= d
    return out


def mirror_blend(img: np.ndarray, t: float) -> np.ndarray:
    """A planted turn: from the face's mirror image (t = -1) to the face itself (t = +1); its antisymmetric part,
    all a yaw measure may look at, scales linearly with t."""
    w = (t + 1) / 2
    return w * img + (1 - w) * img[:, ::-1]


def axis_images(effect: Callable[[np.ndarray, float], np.ndarray], base: np.ndarray, ts: np.ndarray) -> np.ndarray:
    g = PlantedG(base, effect)
    z = torch.zeros(len(ts), g.nz)
    z[:, 0] = torch.as_tensor(ts)
    return ((g(z).permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


def increasing(v: np.ndarray) -> bool:
    return bool(np.all(np.diff(v) > 0))


TS = np.linspace(-1, 1, 9)


# --- each measure moves with its planted effect, and only with it -------------------------------------------


def test_smile_measure_moves_with_a_mouth_axis_and_not_with_a_forehead_axis(real_faces):
    for base in real_faces[:10]:
        s = measures.smile_score(axis_images(MOUTH, base, TS))
        assert increasing(s) and s[-1] - s[0] > 1.0            # in units of the face's luminance spread
        f = measures.smile_score(axis_images(FOREHEAD, base, TS))
        assert np.ptp(f) < 0.25 * (s[-1] - s[0])


def test_glasses_measure_moves_with_planted_frames_and_not_with_a_mouth_axis(real_faces):
    for base in real_faces[:10]:
        g = measures.glasses_score(axis_images(frames, base, TS[4:]))    # t = 0 .. 1: frames appear
        assert increasing(g) and g[-1] > 1.5 * g[0]
        m = measures.glasses_score(axis_images(MOUTH, base, TS))
        assert np.ptp(m) < 0.2 * (g[-1] - g[0])


def test_pose_measure_flips_sign_under_mirroring_and_ignores_symmetric_changes(real_faces):
    p = measures.pose_score(real_faces)
    np.testing.assert_allclose(measures.pose_score(real_faces[:, :, ::-1]), -p, atol=1e-3)
    sym = ((real_faces.astype(np.float32) + real_faces[:, :, ::-1]) / 2).astype(np.uint8)
    np.testing.assert_allclose(measures.pose_score(sym), 0, atol=1e-3)   # a mirror-symmetric face has no yaw
    assert np.std(p) > 0.5                                   # ... and real faces do differ
    brighter = measures.pose_score(np.clip(real_faces.astype(np.int16) + 40, 0, 255).astype(np.uint8))
    assert np.corrcoef(brighter, p)[0, 1] > 0.95


def test_pose_measure_moves_along_a_planted_turn(real_faces):
    turned = real_faces[np.argsort(-np.abs(measures.pose_score(real_faces)))[:5]]  # the most turned faces
    for base in turned:
        p = measures.pose_score(axis_images(mirror_blend, base, TS))
        assert increasing(p) if p[-1] > 0 else increasing(-p)
        np.testing.assert_allclose(p[::-1], -p, atol=1e-3)      # t and -t are mirror images of each other
        assert np.ptp(measures.pose_score(axis_images(FOREHEAD, base, TS))) < 0.1 * abs(p[-1] - p[0])


def test_percentile_in_pool():
    pool = np.arange(100.0)
    np.testing.assert_array_equal(measures.percentile_in(np.array([-1, 0, 50.5, 1000]), pool), [0, 0, 51, 100])


# --- the measured effects of Figs. 7 and 8 report planted effects, and only those ------------------------------


def pool_of(g: PlantedG, n: int = 120, seed: int = 0) -> tuple[Tensor, np.ndarray]:
    z = torch.rand(n, g.nz, generator=torch.Generator().manual_seed(seed)) * 2 - 1   # (n, nz)
    return z, ((g(z).permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)


@pytest.mark.parametrize("effect, planted", [(MOUTH, True), (FOREHEAD, False)])
def test_fig07_success_rate_reports_a_planted_smile_axis_and_nothing_else(real_faces, effect, planted):
    """Concepts chosen by the planted axis (A: high z[0], B and C: low); Y = A - B + C then carries A's change.
    The smile measure must report it for the mouth axis and must not for the forehead axis."""
    g = PlantedG(real_faces[0], effect)
    z, pool = pool_of(g)
    order = np.argsort(-z[:, 0].numpy())
    lists = {"A": order[:10], "B": order[-20:-10], "C": order[-10:]}
    ref = torch.rand(16, g.nz) * 2 - 1
    e = arithmetic.arithmetic_effect(g, z, ref, lists, measures.smile_score, measures.smile_score(pool), k=3,
                                     draws=40, seed=0)
    rate, alone = e["mean_of_3"]["success_rate"], e["c_alone"]["success_rate"]
    if planted:
        assert rate >= 0.9 and e["single"]["success_rate"] >= 0.8 and alone <= 0.1
        assert e["mean_of_3"]["median_percentile"] >= 75
    else:
        assert rate <= 0.6 and abs(rate - alone) <= 0.5      # the measure is blind to the forehead: no effect seen
    lo, hi = e["mean_of_3"]["ci95"]
    assert 0 <= lo <= rate <= hi <= 1


def test_fig08_trend_reports_a_planted_turn_axis_and_nothing_else(real_faces):
    """The turn vector from the pool's most left / right scoring samples; along it the pose must rise for every
    face when the axis turns the face (mirror image -> face), and barely move when the axis only brightens it."""
    base = real_faces[np.argmax(np.abs(measures.pose_score(real_faces)))]
    faces = torch.rand(12, 8, generator=torch.Generator().manual_seed(1)) * 0.5 - 0.25
    ref = torch.rand(16, 8) * 2 - 1
    slopes = {}
    for name, effect in (("turn", mirror_blend), ("brightness", brighten(slice(0, 64), slice(0, 64)))):
        g = PlantedG(base, effect)
        z, pool = pool_of(g)
        pose = measures.pose_score(pool)
        order = np.argsort(-pose, kind="stable")
        turn = z[order[:4]].mean(0) - z[order[-4:]].mean(0)
        e = arithmetic.turn_effect(g, faces, turn, torch.linspace(-1, 1, 7), ref, pose, seed=0)
        slopes[name] = e["slope_per_unit_a"]
        if name == "turn":
            assert e["median_spearman_rho"] == pytest.approx(1.0) and e["share_rho_positive"] == 1.0
            assert e["slope_ci95"][0] > 0 and e["change_over_range_in_pool_sd"] > 1
    # brightening moves clipped pixels, so the pose drifts a little; a turn moves it tens of times more
    assert abs(slopes["brightness"]) < 0.1 * slopes["turn"]


def test_auto_concepts_say_why_an_equation_cannot_be_drawn():
    rng = np.random.default_rng(0)
    score = np.linspace(0, 1, 50)
    got = arithmetic.auto_concepts(score, 3, 0.5, rng)
    assert not isinstance(got, str) and list(got["A"][:3]) == [49, 48, 47]
    assert set(got["B"]).isdisjoint(got["C"]) and max(score[np.r_[got["B"], got["C"]]]) < np.median(score)
    reason = arithmetic.auto_concepts(score, 3, 1.0, rng)
    assert isinstance(reason, str) and "only 0 of 50 pool samples score above the real-face threshold" in reason


# --- on the labelled real faces (../shared/data) -------------------------------------------------------------


def test_measures_on_the_labelled_lfw_faces(shared_data, tmp_path):
    """The committed labels (by eye: smile, glasses; MediaPipe landmarks: yaw) on the LFW crops, taken from the
    shared tarball: the numbers the measures' docstring quotes, and the pose template refitted from the file."""
    wanted = {r["image"] for r in measures.read_labels()}
    with tarfile.open(shared_data / "faces" / "lfw_crops90_jpg.tar") as tar:
        tar.extractall(tmp_path, members=[m for m in tar if m.name in wanted], filter="data")
    out = measures.validate(tmp_path)
    assert out["dev"]["smile_auc_teeth_vs_none"] == pytest.approx(0.944, abs=0.002)
    assert out["heldout"]["smile_auc_teeth_vs_none"] == pytest.approx(0.862, abs=0.002)
    assert out["dev"]["glasses_auc"] == pytest.approx(0.886, abs=0.002)
    assert out["heldout"]["glasses_auc"] == pytest.approx(0.915, abs=0.002)
    pose = out["pose"]
    assert pose["sign_auc_abs_yaw_over_0.06"] == pytest.approx(measures.POSE_VALIDATION["sign_auc_turned_over_0.06"],
                                                               abs=0.002)
    assert pose["spearman_test"] == pytest.approx(measures.POSE_VALIDATION["spearman_rho"], abs=0.002)
    assert pose["mirror_max_abs_error"] < 1e-3 and pose["template_refit_max_abs_diff"] < 1e-3
    for k, v in measures.REAL_FACE_THRESHOLDS.items():
        assert out["thresholds_5pct_fp"][k] == pytest.approx(v, abs=1e-3)
