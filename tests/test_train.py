"""dcgan_repro.train: a killed-and-resumed run ends bitwise equal to an uninterrupted one, the recipes update
G and D as the authors' code / pytorch/examples do, the lr schedule matches the code's decrement, outputs follow
docs/CONTRACTS.md, the collapse detector stops bad runs. Tiny synthetic datasets, CPU, a few seconds each."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan_repro import io, models, resumable, runtime, train

torch.set_num_threads(1)
COMMON = {"preset": "test", "device": "cpu", "precision": "fp32"}
SHAPES = {"svhn32": (32, 32, 3), "dcgan64": (64, 64, 3), "mnist_cond_dcgan": (28, 28, 1),
          "mnist_cond_mlp": (28, 28, 1), "imagenet32": (32, 32, 3)}


def make_run(model="svhn32", recipe="paper", **kw) -> dict:
    run = {"dataset": "svhn", "model": model, "recipe": recipe, "ngf": 4, "ndf": 4, "nz": 8, "batch_size": 8,
           "lr": 2e-3, "beta1": 0.5, "weight_decay": 1e-5, "epochs": 3, "decay_epochs": 1,
           "snapshot_epochs": [1, 3], "checkpoint_every": 4, "sample_every": 5, "log_every": 3, "max_steps": 0,
           "seed": 7}
    run.update(kw)
    return run


def make_data(root: Path, model: str, n: int = 44, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = root / f"data_{model}"
    io.write_dataset(d, "train", rng.integers(0, 256, (n, *SHAPES[model]), dtype=np.uint8), rng.integers(0, 10, n))
    io.write_json(d / "meta.json", {"name": "synthetic", "stand_in": "random pixels (test)"})
    return d


def fit(root: Path, tag: str, run: dict, data: Path, ckpt: str | None = None) -> tuple[dict, Path]:
    out = root / tag
    summary = train.train_gan(run, "t", data, out / "model.pt", out / "summary.json",
                              root / (ckpt or f"ck_{tag}"), COMMON)
    return summary, out


def same_weights(a: Path, b: Path) -> None:
    ca, cb = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    for net in ("netG", "netD"):
        assert ca[net].keys() == cb[net].keys()
        for k in ca[net]:
            assert torch.equal(ca[net][k], cb[net][k]), f"{net}.{k} differs"


def stats(out: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in (out / "stats.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("steps_per_s", "images_per_s")} for r in rows]


class Crash(Exception):
    pass


@pytest.mark.parametrize("model,recipe", [("svhn32", "paper"), ("mnist_cond_mlp", "paper"),
                                          ("dcgan64", "pytorch_examples")])
def test_crash_and_resume_is_bitwise_identical(tmp_path, monkeypatch, model, recipe):
    """Killed at step 11 (last checkpoint at 8), resumed: same final weights, stats and snapshots as a run that
    was never interrupted. mnist_cond_mlp covers labels and a net without convs; dcgan64 the D-then-G recipe."""
    run = make_run(model, recipe, ngf=2 if model == "dcgan64" else 4, ndf=2 if model == "dcgan64" else 4)
    data = make_data(tmp_path, model)                           # 44 images / 8 = 5 steps per epoch, 15 steps
    full, out_full = fit(tmp_path, "full", run, data)
    assert full["steps"] == 15 and full["resumed_from_step"] is None

    def crash_at_11(step):
        if step == 11:
            raise Crash

    monkeypatch.setattr(train, "_after_step", crash_at_11)
    with pytest.raises(Crash):
        fit(tmp_path, "resumed", run, data)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    monkeypatch.setattr(train, "_after_step", lambda step: None)
    resumed, out_res = fit(tmp_path, "resumed", run, data)
    assert resumed["resumed_from_step"] == 10                  # epoch end at step 10 is the newest checkpoint
    same_weights(out_full / "model.pt", out_res / "model.pt")
    same_weights(out_full / "epoch003.pt", out_res / "epoch003.pt")
    assert stats(out_full) == stats(out_res)
    assert not list((tmp_path / "ck_resumed").glob("*.pt"))    # finished: crash-recovery state removed


KILL_CHILD = """
import json, os, signal, sys
import torch
from dcgan_repro import train
torch.set_num_threads(1)
run, data, out, ck, common = json.loads(sys.argv[1])

def kill_at_11(step):
    if step == 11:   # a kill in mid-append of a stats line, then SIGKILL: no cleanup code of ours runs
        with open(os.path.join(out, "stats.jsonl"), "a") as f:
            f.write('{"step": 12, "epoch"')
        os.kill(os.getpid(), signal.SIGKILL)

train._after_step = kill_at_11
train.train_gan(run, "t", data, os.path.join(out, "model.pt"), os.path.join(out, "summary.json"), ck, common)
"""


def test_sigkilled_process_resumes_bitwise_identical(tmp_path):
    """A real SIGKILL of the training process (mid-way, while appending to stats.jsonl), then a rerun: same
    final weights and stats as an uninterrupted run (what a cluster time limit + --retries does)."""
    import subprocess
    import sys

    run = make_run()
    data = make_data(tmp_path, "svhn32")
    _, out_full = fit(tmp_path, "full", run, data)
    out = tmp_path / "killed"
    args = [run, str(data), str(out), str(tmp_path / "ck_killed"), COMMON]
    proc = subprocess.run([sys.executable, "-c", KILL_CHILD, json.dumps(args)], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / "model.pt").exists() and (out / "stats.jsonl").read_text().endswith('"epoch"')
    resumed, out_res = fit(tmp_path, "killed", run, data)
    assert resumed["resumed_from_step"] == 10
    same_weights(out_full / "model.pt", out_res / "model.pt")
    assert stats(out_full) == stats(out_res)


SIGNAL_CHILD = """
import json, os, signal, sys
import torch
from dcgan_repro import train
torch.set_num_threads(1)
run, data, out, ck, common, signame = json.loads(sys.argv[1])

def signal_at_6(step):
    if step == 6:    # the scheduler's signal arrives during step 7
        os.kill(os.getpid(), getattr(signal, signame))

train._after_step = signal_at_6
train.train_gan(run, "t", data, os.path.join(out, "model.pt"), os.path.join(out, "summary.json"), ck, common)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_a_stop_signal_writes_a_checkpoint_and_the_resume_is_bitwise_identical(tmp_path, signame):
    """SIGTERM (a time limit, a preemption, scancel) or SIGUSR1 (sbatch --signal) in mid-run: the process finishes
    its step, writes a checkpoint there (step 7: off the step grid, which has none before the epoch end at 10) and
    stops with an error; the rerun resumes from step 7 and ends with the uninterrupted run's weights."""
    import subprocess
    import sys

    run = make_run(checkpoint_every=100)                       # step checkpoints at epoch ends (5, 10, 15) only
    data = make_data(tmp_path, "svhn32")
    _, out_full = fit(tmp_path, "full", run, data)
    out, ck = tmp_path / "stopped", tmp_path / "ck_stopped"
    args = [run, str(data), str(out), str(ck), COMMON, signame]
    proc = subprocess.run([sys.executable, "-c", SIGNAL_CHILD, json.dumps(args)], cwd=Path(__file__).parents[1],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and f"stopped by {signame} after step 7 of 15" in proc.stderr, proc.stderr[-2000:]
    assert sorted(p.name for p in ck.glob("step*.pt")) == ["step000000005.pt", "step000000007.pt"]
    assert not (out / "model.pt").exists()
    resumed, out_res = fit(tmp_path, "stopped", run, data)
    assert resumed["resumed_from_step"] == 7 and resumed["steps"] == 15
    same_weights(out_full / "model.pt", out_res / "model.pt")
    same_weights(out_full / "epoch003.pt", out_res / "epoch003.pt")


def test_checkpoints_follow_the_clock_and_the_step_grid():
    from dcgan_repro.preemption import CheckpointClock

    now = [0.0]
    clock = CheckpointClock(every_steps=0, minutes=20, clock=lambda: now[0])
    assert not clock.due(1000, epoch_end=True)                 # by the clock only: an epoch end is no reason
    now[0] = 20 * 60 - 1
    assert not clock.due(1001, epoch_end=False)
    now[0] = 20 * 60
    assert clock.due(1002, epoch_end=False)
    clock.saved()
    assert not clock.due(1003, epoch_end=False)
    grid = CheckpointClock(every_steps=4, minutes=20, clock=lambda: now[0])
    assert [s for s in range(1, 13) if grid.due(s, epoch_end=s % 5 == 0)] == [4, 5, 8, 10, 12]
    with pytest.raises(ValueError, match="checkpoint_minutes"):
        CheckpointClock(every_steps=0, minutes=0)


def test_max_steps_stop_then_continue(tmp_path):
    run = make_run()
    data = make_data(tmp_path, "svhn32")
    fit(tmp_path, "full", run, data)
    part, out = fit(tmp_path, "part", {**run, "max_steps": 7}, data)
    ck = torch.load(out / "model.pt", weights_only=True)
    assert part["stopped_early"] and ck["stopped_early"] and ck["step"] == 7 and ck["epoch"] == 1
    assert set(ck["snapshots"]) == {1}                         # epoch 3 was never reached
    assert (out / "samples" / "step0000007.png").exists()      # final grid even off the sample_every grid
    assert list((tmp_path / "ck_part").glob("step*.pt"))        # kept, so the run can continue
    rest, out = fit(tmp_path, "part", run, data)               # max_steps back to 0: resumes at 7
    assert rest["resumed_from_step"] == 7 and not rest["stopped_early"] and rest["steps"] == 15
    same_weights(tmp_path / "full" / "model.pt", out / "model.pt")


def test_finished_run_retrains_and_changed_config_is_not_resumed(tmp_path):
    run = make_run(epochs=1, decay_epochs=0, snapshot_epochs=[1])
    data = make_data(tmp_path, "svhn32")
    fit(tmp_path, "a", {**run, "max_steps": 3}, data, ckpt="ck")
    # lr changed after a stop: the old checkpoints are moved aside, not resumed, not overwritten
    again, _ = fit(tmp_path, "a", {**run, "lr": 1e-3}, data, ckpt="ck")
    assert again["resumed_from_step"] is None and again["steps"] == 5
    stale = list(tmp_path.glob("ck.stale-*"))
    assert len(stale) == 1 and list(stale[0].glob("step000000003.pt"))
    # a finished run leaves no checkpoint, so a forced rerun trains from step 0
    third, _ = fit(tmp_path, "a", {**run, "lr": 1e-3}, data, ckpt="ck")
    assert third["resumed_from_step"] is None


def test_a_changed_snapshot_schedule_still_resumes(tmp_path):
    """snapshot_every (and the snapshot_epochs config.py derives from it) choose which generators are kept, not the
    trajectory: changing it between a stop and a resume resumes, and the new schedule's snapshots are written."""
    data = make_data(tmp_path, "svhn32")
    fit(tmp_path, "s", make_run(snapshot_every=0, snapshot_epochs=[3], max_steps=3), data, ckpt="ck")
    again, out = fit(tmp_path, "s", make_run(snapshot_every=1, snapshot_epochs=[1, 2, 3]), data, ckpt="ck")
    assert again["resumed_from_step"] == 3
    assert sorted(again["snapshots"]) == ["1", "2", "3"] and (out / "epoch002.pt").exists()


# --- corrupt resumable checkpoints (a node crash or a full disk mid-write must not block training forever) ----


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dcgan_repro.train" and r.levelno == logging.WARNING]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """An uninterrupted run, and one stopped by max_steps at step 10 that keeps resumable checkpoints 8 and 10."""
    root = tmp_path_factory.mktemp("stopped")
    run = make_run()
    data = make_data(root, "svhn32")
    _, out_full = fit(root, "full", run, data)
    fit(root, "part", {**run, "max_steps": 10}, data)
    ck = root / "ck_part"
    assert sorted(p.name for p in ck.iterdir()) == ["step000000008.pt", "step000000010.pt"]
    return run, data, out_full, ck


def truncate(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * keep)])


def test_truncated_newest_checkpoint_is_moved_aside_and_the_older_one_resumed(tmp_path, stopped_run, caplog):
    """Newest checkpoint cut to half its bytes (crash / full disk): the rerun moves it aside as .corrupt with a
    warning naming it and the error, resumes from the older one, and ends bitwise equal to an uninterrupted run."""
    run, data, out_full, _ = stopped_run
    part, out = fit(tmp_path, "c", {**run, "max_steps": 10}, data)
    assert part["steps"] == 10
    ck = tmp_path / "ck_c"
    newest = ck / "step000000010.pt"
    truncate(newest)
    cut = newest.read_bytes()
    with caplog.at_level(logging.INFO, logger="dcgan_repro.train"):
        resumed, out = fit(tmp_path, "c", run, data)
    assert resumed["resumed_from_step"] == 8 and resumed["steps"] == 15 and not resumed["stopped_early"]
    assert (ck / "step000000010.pt.corrupt").read_bytes() == cut          # moved aside, byte for byte
    warned = warnings_of(caplog)
    assert any(str(newest) in m and "failed reading zip archive" in m and "step000000010.pt.corrupt" in m
               for m in warned), warned
    same_weights(out_full / "model.pt", out / "model.pt")
    same_weights(out_full / "epoch003.pt", out / "epoch003.pt")
    assert stats(out_full) == stats(out)
    # finished: the good checkpoints are removed as before, the corrupt one is kept for a person to look at
    assert sorted(p.name for p in ck.iterdir()) == ["step000000010.pt.corrupt"]


def test_zero_byte_newest_checkpoint_falls_back_to_the_older_one(tmp_path, stopped_run, caplog):
    run, data, out_full, ck0 = stopped_run
    ck = shutil.copytree(ck0, tmp_path / "ck")
    (ck / "step000000010.pt").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="dcgan_repro.train"):
        resumed, out = fit(tmp_path, "z", {**run, "max_steps": 12}, data, ckpt="ck")
    assert resumed["resumed_from_step"] == 8 and resumed["steps"] == 12
    assert any(str(ck / "step000000010.pt") in m for m in warnings_of(caplog))
    assert (ck / "step000000010.pt.corrupt").stat().st_size == 0
    # steps 10 and 12 were checkpointed again: the one resumed from is pruned only once both new ones exist
    assert sorted(p.name for p in ck.iterdir()) == ["step000000010.pt", "step000000010.pt.corrupt",
                                                    "step000000012.pt"]


def _edit(path: Path, change) -> None:
    ck = torch.load(path, weights_only=True)
    torch.save(change(ck), path)


CORRUPTIONS = {
    "zero_bytes": lambda p: p.write_bytes(b""),
    "truncated": truncate,
    "garbage": lambda p: p.write_bytes(b"\x00not a checkpoint\xff" * 500),
    "not_a_dict": lambda p: torch.save([1, 2, 3], p),
    "missing_key": lambda p: _edit(p, lambda ck: {k: v for k, v in ck.items() if k != "optD"}),
    # these fail half-way through loading (netG loaded, then netD / the RNGs refused): nothing may leak into the
    # fresh start, or the step-0 run would not match an uninterrupted one
    "wrong_shape": lambda p: _edit(p, lambda ck: {**ck, "netD": {k: v[..., :1] if v.ndim == 4 else v
                                                                  for k, v in ck["netD"].items()}}),
    "bad_rng": lambda p: _edit(p, lambda ck: {**ck, "rng": {**ck["rng"], "python": None}}),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_all_checkpoints_corrupt_starts_from_step_0_with_a_warning(tmp_path, stopped_run, caplog, kind):
    """Zero-byte newest, and the older one corrupt in some way: both moved aside, training from step 0, bitwise
    equal to an uninterrupted run (a half-applied checkpoint must leave no trace), a warning lists both files."""
    run, data, out_full, ck0 = stopped_run
    ck = shutil.copytree(ck0, tmp_path / "ck")
    (ck / "step000000010.pt").write_bytes(b"")
    CORRUPTIONS[kind](ck / "step000000008.pt")
    with caplog.at_level(logging.WARNING, logger="dcgan_repro.train"):
        summary, out = fit(tmp_path, "all", run, data, ckpt="ck")
    assert summary["resumed_from_step"] is None and summary["steps"] == 15
    same_weights(out_full / "model.pt", out / "model.pt")
    assert stats(out_full) == stats(out)
    assert sorted(p.name for p in ck.iterdir()) == ["step000000008.pt.corrupt", "step000000010.pt.corrupt"]
    last = warnings_of(caplog)[-1]
    assert "starting from step 0" in last and str(ck / "step000000008.pt.corrupt") in last \
        and str(ck / "step000000010.pt.corrupt") in last, last


def test_corrupt_files_are_never_resumed_nor_overwritten(tmp_path, stopped_run, caplog):
    """A .corrupt file is never picked up, even one that would load; a second corrupt file of the same step gets
    a new name instead of replacing the first."""
    run, data, _, ck0 = stopped_run
    ck = shutil.copytree(ck0, tmp_path / "ck")
    good10 = (ck / "step000000010.pt").read_bytes()
    (ck / "step000000010.pt.corrupt").write_bytes(good10)                 # loadable, but set aside earlier
    (ck / "step000000014.pt.corrupt.pt").write_bytes(good10)              # odd names never match either
    (ck / "step000000010.pt").write_bytes(b"")
    (ck / "step000000008.pt").write_bytes(b"junk")
    with caplog.at_level(logging.WARNING, logger="dcgan_repro.train"):
        summary, _ = fit(tmp_path, "n", {**run, "max_steps": 3}, data, ckpt="ck")
    assert summary["resumed_from_step"] is None
    assert (ck / "step000000010.pt.corrupt").read_bytes() == good10
    assert (ck / "step000000010.pt.corrupt.1").stat().st_size == 0
    assert (ck / "step000000008.pt.corrupt").read_bytes() == b"junk"
    names = ["step000000008.pt", "step999999999.pt", "step1000000000.pt", "step000000010.pt.corrupt",
             "step000000010.pt.corrupt.1", "step000000014.pt.corrupt.pt", ".step000000016.pt.x1.tmp.pt", "stepX.pt"]
    d = tmp_path / "names"
    d.mkdir()
    for n in names:
        (d / n).touch()
    assert [p.name for p in resumable.files(d)] == ["step1000000000.pt", "step999999999.pt",
                                                           "step000000008.pt"]


def test_corrupt_newest_then_stale_older_still_moves_the_folder_aside(tmp_path, stopped_run):
    run, data, _, ck0 = stopped_run
    ck = shutil.copytree(ck0, tmp_path / "ck")
    (ck / "step000000010.pt").write_bytes(b"")
    summary, _ = fit(tmp_path, "s", {**run, "lr": 1e-3, "max_steps": 2}, data, ckpt="ck")
    assert summary["resumed_from_step"] is None
    stale = list(tmp_path.glob("ck.stale-*"))
    assert len(stale) == 1
    assert sorted(p.name for p in stale[0].iterdir()) == ["step000000008.pt", "step000000010.pt.corrupt"]


def test_a_failed_checkpoint_write_prunes_nothing(tmp_path, stopped_run, monkeypatch):
    """Old checkpoints are pruned only after the new one is in place: a save that dies half-way (full disk)
    leaves the existing ones and no partial file that could be taken for a checkpoint."""
    run, data, _, ck0 = stopped_run
    ck = shutil.copytree(ck0, tmp_path / "ck")
    torch.manual_seed(0)
    netG, netD = models.build_models(run)
    optG, optD = torch.optim.Adam(netG.parameters()), torch.optim.Adam(netD.parameters())
    args = (netG, netD, optG, optD, torch.Generator(), train._State(step=12), {"fp": 1})
    real_save = torch.save

    def full_disk(obj, f):
        real_save(obj, f)
        truncate(Path(f))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space"):
        resumable.save(ck, *args)
    assert sorted(p.name for p in ck.iterdir()) == ["step000000008.pt", "step000000010.pt"]

    def checked_save(obj, f):                                  # while the new file is written, nothing is pruned
        assert sorted(p.name for p in ck.glob("step*.pt")) == ["step000000008.pt", "step000000010.pt"]
        real_save(obj, f)

    monkeypatch.setattr(torch, "save", checked_save)
    resumable.save(ck, *args)
    assert sorted(p.name for p in ck.iterdir()) == ["step000000010.pt", "step000000012.pt"]
    assert torch.load(ck / "step000000012.pt", weights_only=True)["state"]["step"] == 12


def test_outputs_follow_the_contract(tmp_path):
    run = make_run("mnist_cond_dcgan", ngf=4, ndf=4)
    data = make_data(tmp_path, "mnist_cond_dcgan")
    summary, out = fit(tmp_path, "m", run, data)
    netG, netD, ck = models.load_checkpoint(out / "model.pt", "cpu", run=run)
    assert set(models.CHECKPOINT_KEYS) <= set(ck)
    assert ck["name"] == "t" and ck["run"] == run and ck["epoch"] == 3 and ck["step"] == 15
    assert ck["snapshots"] == {1: str(out / "epoch001.pt"), 3: str(out / "epoch003.pt")}
    assert ck["data_meta"]["stand_in"] == "random pixels (test)"
    assert {"code_version", "seed", "config", "inputs", "wall_time_s"} <= set(ck["provenance"])
    snap = torch.load(out / "epoch001.pt", weights_only=True)
    assert set(models.CHECKPOINT_KEYS) <= set(snap) and snap["epoch"] == 1 and snap["step"] == 5
    same = json.loads((out / "summary.json").read_text())
    assert same["steps"] == 15 and same["provenance"]["seed"] == 7 and same["stand_in"] == "random pixels (test)"
    rows = stats(out)
    # log_every 3 (3, 6, ...), checkpoint_every 4 (4, 8, 12), epoch ends (5, 10, 15)
    assert [r["step"] for r in rows] == [3, 4, 5, 6, 8, 9, 10, 12, 15]
    assert all(math.isfinite(r["loss_d"]) and 0 <= r["d_real"] <= 1 for r in rows if r["loss_d"] is not None)
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step0000005.png", "step0000010.png",
                                                                        "step0000015.png"]
    grid = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(out / "samples" / "step0000015.png"))
    assert grid.shape == (10 * 30, 10 * 30)                    # 10 x 10 sheet of 28x28 with 2 px gaps
    frame = np.zeros((300, 300), bool)                          # each sample in a 1-pixel black frame
    frame[[0, -1]], frame[:, [0, -1]], frame[29::30], frame[30::30], frame[:, 29::30], frame[:, 30::30] = (True,) * 6
    assert (grid[frame] == 0).all()
    assert models.generate(netG, 10, z_dist="uniform", seed=0, labels=np.arange(10)).shape == (10, 28, 28, 1)


def test_paper_recipe_alternates_g_first_and_examples_updates_both(tmp_path):
    data = make_data(tmp_path, "svhn32")
    _, out = fit(tmp_path, "p", make_run(epochs=1, decay_epochs=0, snapshot_epochs=[1], log_every=1), data)
    rows = stats(out)
    assert [r["loss_g"] is not None for r in rows] == [True, False, True, False, True]   # steps 1..5: G first
    assert [r["loss_d"] is not None for r in rows] == [False, True, False, True, False]
    _, out = fit(tmp_path, "e", make_run(recipe="pytorch_examples", epochs=1, decay_epochs=0,
                                         snapshot_epochs=[1], log_every=1), data)
    assert all(r["loss_g"] is not None and r["loss_d"] is not None for r in stats(out))


def test_paper_recipe_g_step_leaves_d_untouched(tmp_path):
    """One G step (step 0 of the paper recipe) changes G's weights only."""
    run = make_run(max_steps=1, weight_decay=0.0)
    data = make_data(tmp_path, "svhn32")
    torch.manual_seed(run["seed"])
    g0, d0 = models.build_models(run)                          # train seeds the same way before building
    _, out = fit(tmp_path, "one", run, data)
    ck = torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(v, ck["netD"][k]) for k, v in d0.state_dict().items() if "running" not in k
               and "num_batches" not in k)
    assert not torch.equal(g0.project.weight, ck["netG"]["project.weight"])


def test_lr_schedule_matches_the_authors_decrement():
    """mnist/train_cond_dcgan.py: for epoch in 1..niter+niter_decay: train; if epoch > niter: lr -= lr0/decay."""
    run = make_run(lr=2e-4, epochs=200, decay_epochs=100)
    lr, seen = 2e-4, []
    for epoch in range(1, 201):
        seen.append(lr)
        if epoch > 100:
            lr -= 2e-4 / 100
    np.testing.assert_allclose([train.lr_at(run, e) for e in range(200)], seen, rtol=1e-9, atol=1e-15)
    assert train.lr_at(make_run(lr=1e-3, decay_epochs=0), 2) == 1e-3


def test_config_yaml_mnist_run_gets_the_authors_schedule():
    """config.yaml's mnist_dcgan (run_defaults + its own decay_fraction 0.5, expanded as the Snakefile does) trains
    200 epochs, the last 100 decaying, step for step as the code's decrement."""
    import yaml

    from dcgan_repro import config

    paper = yaml.safe_load(config.CONFIG_PATH.read_text())
    run = config.expand_runs(paper)["runs"]["mnist_dcgan"]
    lr0, lr, seen = run["lr"], run["lr"], []
    for epoch in range(1, 201):
        seen.append(lr)
        if epoch > 100:
            lr -= lr0 / 100
    assert (run["epochs"], run["decay_epochs"]) == (200, 100)
    np.testing.assert_allclose([train.lr_at(run, e) for e in range(200)], seen, rtol=1e-9, atol=1e-15)


def test_adam_gets_l2_before_the_update_not_adamw(tmp_path, monkeypatch):
    made = []
    real_adam = torch.optim.Adam
    monkeypatch.setattr(torch.optim, "Adam", lambda params, **kw: made.append(kw) or real_adam(params, **kw))
    fit(tmp_path, "o", make_run(max_steps=1), make_data(tmp_path, "svhn32"))
    assert made == [{"lr": 2e-3, "betas": (0.5, 0.999), "weight_decay": 1e-5}] * 2


def test_minibatches_read_the_right_rows():
    x = np.arange(20, dtype=np.uint8).reshape(20, 1, 1, 1).repeat(2, 1).repeat(2, 2)
    y = np.arange(20, dtype=np.int64)
    mb = train._Minibatches(x, y, 6, seed=3, pin=False, need_images=lambda s: s != 1)
    assert mb.steps_per_epoch == 3                             # last partial minibatch dropped
    order = train.epoch_order(3, 1, 20)
    assert sorted(order) == list(range(20)) and not np.array_equal(order, train.epoch_order(3, 2, 20))
    got = list(mb.iterate(range(2, 6)))
    assert [s for s, _, _ in got] == [2, 3, 4, 5]
    step, xb, yb = got[2]                                      # step 4 = epoch 1, minibatch 1
    assert torch.equal(yb, torch.from_numpy(np.sort(order[6:12])))
    assert torch.equal(xb[:, 0, 0, 0].long(), yb)
    assert mb.load(1)[1] is None                               # G steps of the paper recipe read no images


def test_rng_states_round_trip():
    """Checkpoints carry torch, numpy and python RNG states (anything stochastic added later resumes exactly)."""
    import random

    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    saved = resumable.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(9), np.random.seed(9), random.seed(9)
    resumable.set_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_collapse_detector():
    st = train._State()
    window = {"step": 100, "steps": 50, "loss_d": float("nan"), "loss_g": 1.0, "d_real": 0.5, "d_fake": 0.5}
    with pytest.raises(train.TrainingDiverged, match="non-finite loss.*runs.x.lr"):
        train._check_health("x", window, st)
    low = {**window, "loss_d": 1e-5, "d_real": 1.0, "d_fake": 0.0}
    for _ in range(train.COLLAPSE_STEPS // 50 - 1):
        train._check_health("x", low, st)
    train._check_health("x", {**low, "loss_d": 0.5}, st)       # recovery resets the count
    assert st.low_d_steps == 0
    for _ in range(train.COLLAPSE_STEPS // 50 - 1):
        train._check_health("x", low, st)
    with pytest.raises(train.TrainingDiverged, match="collapsed"):
        train._check_health("x", low, st)


def test_diverging_run_stops_with_a_clear_message(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "_bce", lambda logits, target: logits.float().mean() * float("nan"))
    with pytest.raises(train.TrainingDiverged, match="run 't': non-finite loss"):
        fit(tmp_path, "nan", make_run(), make_data(tmp_path, "svhn32"))
    assert not (tmp_path / "nan" / "model.pt").exists()


def test_bad_data_is_refused_naming_file_and_setting(tmp_path):
    data = make_data(tmp_path, "dcgan64", n=10)
    with pytest.raises(ValueError, match=r"svhn32.*32x32x3.*train_x\.npy holds 64 x 64 x 3.*runs\.t\.dataset"):
        fit(tmp_path, "bad", make_run(), data)
    d = tmp_path / "unlabelled"
    io.write_dataset(d, "train", np.zeros((10, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match=r"class-conditional.*train_y\.npy holds \[-1, -1\]"):
        fit(tmp_path, "bad", make_run("mnist_cond_dcgan"), d)


def test_bf16_channels_last_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)  # the bf16 path, even where it is emulated
    out = tmp_path / "bf"
    s = train.train_gan(make_run(max_steps=4), "t", make_data(tmp_path, "svhn32"), out / "model.pt",
                        out / "s.json", tmp_path / "ck_bf", {**COMMON, "precision": "bf16"})
    assert s["steps"] == 4 and s["precision"] == "bf16"
    assert all(torch.isfinite(v).all() for v in torch.load(out / "model.pt", weights_only=True)["netG"].values())


def test_mnist_holdout_keeps_the_validation_split_out_of_training(tmp_path):
    """Table 3 model selection scores the last 10k of the seed-42 shuffle: training must never see them."""
    from dcgan_repro.splits import validation_split

    run = make_run("mnist_cond_dcgan")
    data = make_data(tmp_path, "mnist_cond_dcgan", n=50)
    x_all, _ = io.read_dataset(data, "train")
    netG, _ = models.build_models(run)
    x, y, _ = train._load_data(data, run, "mnist_dcgan", netG, {"validation_size": 10, "split_seed": 42})
    keep, val = validation_split(50, 10, 42)
    assert len(x) == len(y) == 40
    np.testing.assert_array_equal(x, np.asarray(x_all)[np.sort(keep)])
    held_out = {np.asarray(x_all)[i].tobytes() for i in val}
    assert not held_out & {img.tobytes() for img in x}


def test_bf16_where_it_would_be_emulated_is_refused_before_training_and_auto_falls_back(tmp_path, monkeypatch):
    """An emulated bf16 run is 10-15x slower than fp32 (measured on an AVX2-only CPU): config precision bf16 is
    refused at once, naming the key and the values; auto trains in fp32 and records it."""
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    data = make_data(tmp_path, "svhn32")
    with pytest.raises(RuntimeError, match=r"config key 'precision' is 'bf16'.*no native bf16.*fp32, bf16, auto"):
        train.train_gan(make_run(max_steps=2), "t", data, tmp_path / "x" / "model.pt", tmp_path / "x" / "s.json",
                        tmp_path / "ck_x", {**COMMON, "precision": "bf16"})
    assert not (tmp_path / "x").exists() and not (tmp_path / "ck_x").exists()
    s = train.train_gan(make_run(max_steps=2), "t", data, tmp_path / "a" / "model.pt", tmp_path / "a" / "s.json",
                        tmp_path / "ck_a", {**COMMON, "precision": "auto"})
    assert s["precision"] == "fp32"
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    assert runtime.resolve_precision("auto", "cpu") == "bf16" and runtime.resolve_precision("bf16", "cpu") == "bf16"
    assert runtime.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="fp32, bf16, auto"):
        runtime.resolve_precision("fp16", "cpu")


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    """The CPU check is torch's own AVX512-BF16 / AMX test, not oneDNN's (which also says yes where it emulates)."""
    for avx512_bf16, amx, want in [(False, False, False), (True, False, True), (False, True, True)]:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert runtime.native_bf16("cpu") is want
