"""dcgan_repro.released: git blob ids, the layouts of a copy of the authors' release, and its verification."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
import torch

from dcgan_repro import models, released, theano_weights
from dcgan_repro.released import ReleaseError, git_blob_id, model_folder, release_blobs, verify

SVHN = "dcgan_code_svhn"
IMAGENET = "dcgan_code_imagenet_partial"


def test_git_blob_id_is_what_git_hash_object_prints(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    files = {"empty": b"", "small": b"hello\n", "chunks": np.random.default_rng(0).bytes((5 << 20) // 2 + 7)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        out = subprocess.run(["git", "hash-object", name], cwd=tmp_path, capture_output=True, text=True, check=True)
        assert git_blob_id(tmp_path / name) == out.stdout.strip(), name


def test_blob_table_lists_every_released_file():
    for model, epoch in released.EPOCHS.items():
        blobs = release_blobs(model)
        assert all(len(b) == 40 and int(b, 16) >= 0 for b in blobs.values())
        for net, jl in theano_weights.RELEASED_FILES[model].items():
            assert jl.startswith(f"{epoch}_") and jl in blobs
    assert len(release_blobs("svhn32")) == 1 + 8 + 1 + 10  # .jl + D's 8 arrays, .jl + G's 10
    assert len(release_blobs("imagenet32")) == 1 + 17 + 1 + 19
    with pytest.raises(ReleaseError, match="allowed: svhn32, imagenet32"):
        release_blobs("dcgan64")


def test_shared_svhn_copy_verifies_complete(shared_data):
    folder = shared_data / "weights" / SVHN
    assert {p.name for p in folder.iterdir()} == set(release_blobs("svhn32"))
    for net, n_files in (("D", 9), ("G", 11)):
        m = verify(folder, "svhn32", net)
        assert json.loads(json.dumps(m)) == m
        assert (m["complete"], m["missing"], m["files_verified"], m["epoch"]) == (True, [], n_files, 200)
        assert m["verified_blobs"] == {n: b for n, b in release_blobs("svhn32").items() if n.startswith(m["jl"])}
        assert m["folder"] == str(folder.resolve()) and m["commit"] == released.COMMIT
        assert (m["convs_total"], m["convs_loaded"]) == ((3, 3) if net == "D" else (None, None))


def test_shared_imagenet_d_is_usable_only_as_an_allowed_prefix(shared_data):
    folder = shared_data / "weights" / IMAGENET
    with pytest.raises(ReleaseError) as e:
        verify(folder, "imagenet32", "D", key="features.weights.imagenet32")
    msg = str(e.value)
    for part in ("30_discrim_params.jl_11.npy", "30_discrim_params.jl_14.npy", "git clone " + released.REPOSITORY,
                 "add imagenet32 to features.weights.allow_partial", "first 4 of 6 conv layers"):
        assert part in msg
    m = verify(folder, "imagenet32", "D", allow_partial=True)
    assert (m["complete"], m["convs_loaded"], m["convs_total"], m["files_verified"]) == (False, 4, 6, 16)
    assert m["missing"] == ["30_discrim_params.jl_11.npy", "30_discrim_params.jl_14.npy"]


def test_shared_imagenet_g_is_never_usable(shared_data):
    folder = shared_data / "weights" / IMAGENET
    for allow_partial in (False, True):
        with pytest.raises(ReleaseError, match="partial G is never usable") as e:
            verify(folder, "imagenet32", "G", allow_partial=allow_partial)
        assert all(f"30_gen_params.jl_{i}.npy" in str(e.value) for i in ("01", "04", "07"))


def test_one_changed_byte_is_refused_naming_file_and_blobs(shared_data, tmp_path):
    copy = tmp_path / "models" / released.FOLDERS["svhn32"]
    shutil.copytree(shared_data / "weights" / SVHN, copy)
    name = "200_discrim_params.jl_05.npy"
    (copy / name).chmod(0o644)
    data = bytearray((copy / name).read_bytes())
    data[-1] ^= 1  # one bit of the last float32
    (copy / name).write_bytes(data)
    with pytest.raises(ReleaseError) as e:
        verify(tmp_path, "svhn32", "D")
    msg = str(e.value)
    assert name in msg and release_blobs("svhn32")[name] in msg and git_blob_id(copy / name) in msg
    assert f"git -C {tmp_path.resolve()} checkout ee12b2d -- models/{released.FOLDERS['svhn32']}/{name}" in msg
    assert verify(tmp_path, "svhn32", "G")["complete"]  # G's files are untouched


def test_model_folder_accepts_four_layouts_and_refuses_others(shared_data, tmp_path):
    folder = tmp_path / "clone" / "models" / released.FOLDERS["svhn32"]
    folder.mkdir(parents=True)
    for p in (shared_data / "weights" / SVHN).iterdir():
        (folder / p.name).symlink_to(p)
    for path in (tmp_path / "clone", folder.parent, folder, folder / "200_gen_params.jl"):
        assert model_folder(path, "svhn32") == folder.resolve()
    shared = shared_data / "weights" / SVHN  # a model folder under another name, recognised by its .jl files
    assert model_folder(shared, "svhn32") == shared.resolve()
    assert verify(tmp_path / "clone", "svhn32", "G")["complete"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    for path, model, why in ((tmp_path / "other", "svhn32", "not the authors' released model"),
                             (tmp_path / "nowhere", "svhn32", "does not exist"),
                             (folder, "imagenet32", "not the authors' released model"),
                             (tmp_path / "other" / "notes.txt", "svhn32", "not the authors' released model")):
        with pytest.raises(ReleaseError, match="Accepted: a clone of https://github.com/Newmu/dcgan_code") as e:
            model_folder(path, model)
        assert str(path) in str(e.value) and why in str(e.value) and released.FOLDERS[model] in str(e.value)
    with pytest.raises(ReleaseError, match="allowed: svhn32, imagenet32"):
        model_folder(folder, "cifar10")


def test_substituted_blob_table_verifies_a_written_release(tmp_path, monkeypatch):
    torch.manual_seed(0)
    _, netD = models.build_models(theano_weights.RELEASED_RUNS["svhn32"])
    written = theano_weights.write_theano_params(netD, tmp_path / "200_discrim_params.jl")
    with pytest.raises(ReleaseError, match="has git blob"):  # the real table: these are not the authors' arrays
        verify(tmp_path, "svhn32", "D")
    blobs = {p.name: git_blob_id(p) for p in written}
    monkeypatch.setattr(released, "_table", lambda: {"svhn32": blobs})
    m = verify(tmp_path / "200_discrim_params.jl", "svhn32", "D")
    assert (m["complete"], m["files_verified"], m["convs_loaded"], m["convs_total"]) == (True, 9, 3, 3)
    (tmp_path / "200_discrim_params.jl_05.npy").unlink()  # the kernel of D's third (last) conv layer
    with pytest.raises(ReleaseError, match="add svhn32 to weights.allow_partial"):
        verify(tmp_path, "svhn32", "D")
    m = verify(tmp_path, "svhn32", "D", allow_partial=True)
    assert (m["complete"], m["missing"], m["convs_loaded"]) == (False, ["200_discrim_params.jl_05.npy"], 2)
    (tmp_path / "200_discrim_params.jl_01.npy").unlink()  # D's first conv kernel: nothing is usable
    with pytest.raises(ReleaseError, match="Not even D's first conv layer"):
        verify(tmp_path, "svhn32", "D", allow_partial=True)
    with pytest.raises(ReleaseError, match="net 'X'"):
        verify(tmp_path, "svhn32", "X")
