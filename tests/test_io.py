"""dcgan_repro.io: atomic, durable writes that follow the umask; full checksums; ingested arrays checked on read."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from dcgan_repro import io


@pytest.fixture(params=[0o022, 0o027, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def test_outputs_follow_the_umask(tmp_path, umask):
    """Colleagues on a shared machine read results: a temporary file is 0600, the output must not stay so."""
    io.write_json(tmp_path / "r.json", {"a": 1})
    io.write_text(tmp_path / "t.md", "x")
    io.save_npy(tmp_path / "a.npy", np.zeros(3))
    with io.atomic_path(tmp_path / "model.pt") as tmp:
        torch.save({"w": torch.zeros(2)}, tmp)
    arr, tmp = io.open_npy_writer(tmp_path / "big.npy", (4, 2), np.float32)
    io.commit_npy(arr, tmp, tmp_path / "big.npy")
    for name in ("r.json", "t.md", "a.npy", "model.pt", "big.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    assert io.umask() == umask


def test_data_reaches_the_disk_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append(("replace", str(b))), real_replace(a, b))[1])
    io.write_json(tmp_path / "r.json", {"a": 1})
    kinds = [c[0] for c in calls]
    assert kinds == ["fsync", "replace", "fsync"]  # the file, the rename, then its folder
    assert calls[0][1].startswith(str(tmp_path / ".r.json.")) and calls[2][1] == str(tmp_path)


def test_a_failed_write_leaves_the_old_file(tmp_path):
    io.write_json(tmp_path / "r.json", {"a": 1})
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "r.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert io.read_json(tmp_path / "r.json") == {"a": 1} and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_checksum_covers_every_byte_of_a_large_file(tmp_path):
    """Provenance must notice a change anywhere, also in the middle of a file over 256 MiB (once only sampled)."""
    p = tmp_path / "big.bin"
    with open(p, "wb") as f:
        f.truncate(300 << 20)  # sparse: cheap to make
    before = io.checksum(p)
    with open(p, "r+b") as f:
        f.seek(150 << 20)
        f.write(b"\1")
    after = io.checksum(p)
    assert before.startswith("sha256:") and after == "sha256:" + io.sha256_file(p) and after != before


@pytest.mark.parametrize("damage", ["truncate", "extend", "meta"])
def test_reading_a_damaged_dataset_names_the_file_and_the_fix(tmp_path, damage):
    d = tmp_path / "mnist"
    io.write_dataset(d, "train", np.zeros((10, 4, 4, 1), np.uint8))
    io.write_json(d / "meta.json", {"splits": {"train": 10}, "image_shape": [4, 4, 1], "provenance": {}})
    x, _ = io.read_dataset(d, "train")
    assert x.shape == (10, 4, 4, 1)
    del x
    xp = d / "train_x.npy"
    if damage == "truncate":
        with open(xp, "r+b") as f:
            f.truncate(xp.stat().st_size - 16)
    elif damage == "extend":
        with open(xp, "ab") as f:
            f.write(b"\0" * 16)
    else:
        io.write_json(d / "meta.json", {"splits": {"train": 12}, "image_shape": [4, 4, 1], "provenance": {}})
    with pytest.raises(io.DatasetError) as e:
        io.read_dataset(d, "train")
    msg = str(e.value)
    if damage == "meta":
        assert f"{xp} holds shape [10, 4, 4, 1], meta.json says 12 items of [4, 4, 1]" in msg
    else:
        size = xp.stat().st_size
        assert f"ingested dataset {d} is damaged: {xp} is {size:,} bytes, but its header (10 x 4 x 4 x 1 uint8) " \
               f"needs {128 + 160:,}" in msg
    assert f"Delete the folder {d} and run the workflow again" in msg
