"""dcgan_repro.images.image_grid: the one image grid of the project (figures, training sample sheets, the dedup
contact sheet): torchvision's make_grid layout by default, the training sheets' black frames by arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcgan_repro.images import GRID_PAD, image_grid


def _imgs(n: int, h: int = 5, w: int = 4, c: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 255, (n, h, w, c), dtype=np.uint8)  # no 0 / 255 pixels


def test_image_grid_matches_torchvision_make_grid():
    from torchvision.utils import make_grid

    imgs = _imgs(7)
    for pad in (0, 1, GRID_PAD, 3):
        ref = make_grid(torch.from_numpy(imgs).permute(0, 3, 1, 2), nrow=3, padding=pad, pad_value=255)
        np.testing.assert_array_equal(image_grid(imgs, 3, pad=pad), ref.permute(1, 2, 0).numpy())
    assert image_grid(imgs[:, :, :, :1], 3).shape == (3 * 7 + 2, 3 * 6 + 2, 1)
    assert image_grid(imgs, 10).shape == (5 + 4, 7 * 6 + 2, 3)  # cols capped at N


def test_image_grid_black_frames_of_the_training_sample_sheets():
    """pad=2, pad_value=0, border=1: each image in a 1-pixel black frame, (rows*(H+2), cols*(W+2), C)."""
    imgs = _imgs(7)
    g = image_grid(imgs, 3, pad=2, pad_value=0, border=1)
    assert g.shape == (3 * 7, 3 * 6, 3)
    for i, im in enumerate(imgs):
        r, k = divmod(i, 3)
        y, x = 1 + r * 7, 1 + k * 6
        np.testing.assert_array_equal(g[y:y + 5, x:x + 4], im)
    mask = np.ones(g.shape[:2], bool)
    for i in range(len(imgs)):
        r, k = divmod(i, 3)
        mask[1 + r * 7:6 + r * 7, 1 + k * 6:5 + k * 6] = False
    assert (g[mask] == 0).all() and mask.sum() == g.shape[0] * g.shape[1] - 7 * 20  # frames + 2 empty cells


def test_image_grid_pair_without_border_and_bad_input():
    a, b = _imgs(2)
    pair = image_grid(np.stack([a, b]), 2, border=0)  # the dedup contact sheet's (removed | kept) pair
    np.testing.assert_array_equal(pair, np.concatenate([a, np.full((5, 2, 3), 255, np.uint8), b], axis=1))
    np.testing.assert_array_equal(image_grid(a[None], 1, border=0), a)
    for bad in (np.zeros((0, 5, 4, 3), np.uint8), np.zeros((2, 5, 4, 3), np.float32), np.zeros((5, 4, 3), np.uint8)):
        with pytest.raises(ValueError, match="expected uint8 N x H x W x C images"):
            image_grid(bad, 2)
    for kw in ({"pad": -1}, {"border": -1}, {"pad_value": 256}):
        with pytest.raises(ValueError, match="must be >= 0"):
            image_grid(a[None], 1, **kw)
