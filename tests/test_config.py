"""config.yaml and presets validate; bad keys and values fail with messages naming them."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from snakemake.utils import update_config

from dcgan_repro import io
from dcgan_repro.config import ConfigError, overrides, validate_config
from dcgan_repro.svm import solvers
from dcgan_repro.svm.registry import FEATURE_RUNS

REPO = Path(__file__).resolve().parents[1]
RUN_NAMES = ("lsun", "faces", "imagenet32", "svhn", "mnist_dcgan", "mnist_gan")


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.fixture
def paper() -> dict:
    return _load("config.yaml")


def test_paper_config_is_valid(paper):
    validate_config(paper)
    assert paper["preset"] == "paper"


PRESETS = sorted(p.name for p in (REPO / "presets").glob("*.yaml") if not p.name.endswith(".example.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_merge_and_validate(paper, preset, tmp_path):
    """Every preset validates; one that uses the authors' released D asks for the paths file that says where it is."""
    merged = copy.deepcopy(paper)
    update_config(merged, _load(f"presets/{preset}"))  # the merge Snakemake applies for --configfile
    choice = merged["features"]["discriminator"]
    needs = [run for ds, run in FEATURE_RUNS.items() if choice[ds] != "trained" and not merged["weights"][run]]
    for run in needs:
        with pytest.raises(ConfigError, match=rf"'weights\.{run}' is null"):
            validate_config(copy.deepcopy(merged))
        merged["weights"][run] = str(tmp_path)
    validate_config(merged)
    assert merged["preset"] == preset.removesuffix(".yaml")


def test_the_example_paths_file_is_a_valid_second_config_file(paper, tmp_path):
    """presets/paths.example.yaml, passed after a preset, sets only keys the schema allows (its paths made to exist)."""
    merged = copy.deepcopy(paper)
    update_config(merged, _load("presets/table1_subset.yaml"))
    example = _load("presets/paths.example.yaml")
    assert "preset" not in example
    update_config(merged, example)
    for key in ("imagenet32", "svhn"):
        merged["weights"][key] = str(tmp_path)
    for section, key in (("dedup", "photos"), ("faces", "composites")):
        assert key in example["checks"][section]
        merged["checks"][section][key] = str(tmp_path / f"{key}.npz")
        (tmp_path / f"{key}.npz").write_bytes(b"")
    validate_config(merged)


def test_unknown_key_is_named_with_allowed_keys(paper):
    paper["runs"]["lsun"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    assert "runs.lsun.learning_rate" in msg
    assert "allowed keys" in msg and "lr" in msg


def test_unknown_top_level_key(paper):
    paper["sedd"] = 1
    with pytest.raises(ConfigError, match=r"'sedd'.*at the top level; allowed keys: .*seed|'sedd'"):
        validate_config(paper)


def test_bad_enum_value_lists_allowed_values(paper):
    paper["runs"]["faces"]["recipe"] = "paperr"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    assert re.search(r"runs\.faces\.recipe.*'paperr'.*allowed values: paper, pytorch_examples", str(e.value))


def test_svm_newton_methods_are_the_solvers(paper):
    """svm.newton allows exactly the torch solver's Newton methods; another value is refused naming them."""
    for method in solvers.NEWTON_METHODS:
        cfg = copy.deepcopy(paper)
        cfg["svm"]["newton"] = method
        validate_config(cfg)
    paper["svm"]["newton"] = "bfgs"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    assert re.search(r"svm\.newton.*'bfgs'.*allowed values: " + ", ".join(solvers.NEWTON_METHODS), str(e.value))


def test_bad_type_and_range_name_the_key(paper):
    paper["svm"]["final_draws"] = 0
    paper["device"] = "tpu"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    assert "svm.final_draws" in msg and "device" in msg and "auto, cpu, cuda" in msg


def test_schedule_keys_written_by_hand_are_refused_naming_their_replacement(paper):
    paper["runs"]["lsun"]["snapshot_epochs"] = [1, 50]
    paper["runs"]["mnist_dcgan"]["decay_epochs"] = 100
    with pytest.raises(ConfigError, match=r"runs\.lsun\.snapshot_epochs") as e:
        validate_config(paper)
    msg = str(e.value)
    assert "'runs.mnist_dcgan.decay_epochs'" in msg and "decay_epochs is derived: set decay_fraction" in msg
    assert "snapshot_epochs is derived: set snapshot_every" in msg
    assert "decay_epochs" in paper["runs"]["mnist_dcgan"] and "model" not in paper["runs"]["lsun"]  # left as it was


@pytest.mark.parametrize("key, value", [("decay_fraction", 1.5), ("decay_fraction", -0.1), ("snapshot_every", -1)])
def test_schedule_parameter_out_of_range_names_the_key(paper, key, value):
    paper["runs"]["lsun"][key] = value
    with pytest.raises(ConfigError, match=rf"config key 'runs\.lsun\.{key}'"):
        validate_config(paper)


def test_runs_are_run_defaults_plus_their_own_settings_plus_the_derived_schedule(paper):
    raw = copy.deepcopy(paper)
    runs = validate_config(paper)["runs"]
    for name, run in runs.items():
        assert run == {**raw["run_defaults"], **raw["runs"][name], "decay_epochs": run["decay_epochs"],
                       "snapshot_epochs": run["snapshot_epochs"]}, name
    # the authors' schedules: MNIST 100 + 100, ImageNet 30 + 30; MNIST scored every 5 epochs; LSUN keeps epoch 1
    assert (runs["mnist_dcgan"]["epochs"], runs["mnist_dcgan"]["decay_epochs"]) == (200, 100)
    assert runs["mnist_dcgan"]["snapshot_epochs"] == list(range(5, 201, 5))
    assert (runs["imagenet32"]["epochs"], runs["imagenet32"]["decay_epochs"]) == (60, 30)
    assert runs["lsun"]["snapshot_epochs"] == [1, 2, 3, 4, 5] and runs["lsun"]["decay_epochs"] == 0
    assert runs["faces"]["snapshot_epochs"] == [25] and runs["svhn"]["lr"] == 0.0005
    assert runs["mnist_gan"]["model"] == "mnist_cond_mlp" and runs["lsun"]["model"] == "dcgan64"


@pytest.mark.parametrize("epochs, fraction, every, decay, kept", [
    (10, 0.5, 2, 5, [2, 4, 6, 8, 10]),
    (7, 0.5, 3, 4, [3, 6, 7]),       # the last epoch is always kept; round(3.5) = 4
    (5, 0.5, 0, 2, [5]),             # 0 = the last epoch only; round(2.5) = 2 (half to even)
    (3, 0.0, 5, 0, [3]),             # every 5 > epochs: the last epoch only
    (4, 1.0, 1, 4, [1, 2, 3, 4]),
])
def test_derived_schedule(paper, epochs, fraction, every, decay, kept):
    update_config(paper, {"runs": {"faces": {"epochs": epochs, "decay_fraction": fraction, "snapshot_every": every}}})
    run = validate_config(paper)["runs"]["faces"]
    assert (run["decay_epochs"], run["snapshot_epochs"]) == (decay, kept)


def test_a_longer_mnist_run_is_one_value(paper):
    """A second --configfile holding runs: {mnist_dcgan: {epochs: 80}} over presets/mnist_cpu.yaml: the decay and
    the snapshots follow; every other setting of the run stays."""
    update_config(paper, _load("presets/mnist_cpu.yaml"))
    update_config(paper, yaml.safe_load("runs: {mnist_dcgan: {epochs: 80}}"))
    runs = validate_config(paper)["runs"]
    assert (runs["mnist_dcgan"]["epochs"], runs["mnist_dcgan"]["decay_epochs"]) == (80, 40)
    assert runs["mnist_dcgan"]["snapshot_epochs"] == list(range(2, 81, 2))  # mnist_cpu's snapshot_every: 2
    assert runs["mnist_dcgan"]["model"] == "mnist_cond_dcgan" and runs["mnist_dcgan"]["weight_decay"] == 2.5e-5
    assert runs["mnist_gan"]["epochs"] == 20


def test_nested_command_line_number_says_to_use_a_config_file(paper):
    """Snakemake's --config reads nested values with YAML's BaseLoader: every leaf is a string."""
    from snakemake.cli import parse_config

    update_config(paper, parse_config(['runs={"mnist_dcgan": {"epochs": 80}}']))
    assert paper["runs"]["mnist_dcgan"]["epochs"] == "80"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    assert ("config key 'runs.mnist_dcgan.epochs': '80' is a string, not an integer: Snakemake's --config reads a "
            "nested value") in str(e.value)
    assert "--configfile instead: runs: {mnist_dcgan: {epochs: 80}}" in str(e.value)


def test_a_preset_run_defaults_value_reaches_every_run_without_its_own(paper):
    update_config(paper, {"run_defaults": {"lr": 0.001}})  # as a preset's run_defaults: {lr: 0.001}
    runs = validate_config(paper)["runs"]
    assert {name: run["lr"] for name, run in runs.items()} == {
        "lsun": 0.001, "faces": 0.001, "imagenet32": 0.001, "svhn": 0.0005, "mnist_dcgan": 0.001, "mnist_gan": 0.001}


def test_run_defaults_needs_every_setting_and_a_run_its_dataset(paper):
    del paper["run_defaults"]["lr"]
    del paper["runs"]["faces"]["dataset"]
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    assert "config key 'run_defaults' is missing a required setting: 'lr'" in msg
    assert "config key 'runs.faces' is missing a required setting: 'dataset'" in msg


def test_run_defaults_errors_name_the_key(paper):
    paper["run_defaults"]["lr"] = 0
    paper["run_defaults"]["dataset"] = "mnist"  # a run's dataset is its own
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    assert "config key 'run_defaults.lr'" in msg and "'run_defaults.dataset'" in msg


# --- overrides: what provenance records ---------------------------------------------------------------------


def test_overrides_are_the_settings_in_force_that_differ_from_config_yaml(paper):
    base = copy.deepcopy(paper)
    assert overrides(validate_config(copy.deepcopy(base))) == {}
    assert overrides(copy.deepcopy(base)) == {}  # the paper config itself: none (default base: config.yaml)
    update_config(paper, _load("presets/mnist_cpu.yaml"))
    update_config(paper, {"runs": {"mnist_dcgan": {"epochs": 80}, "lsun": {"epochs": 5}},  # lsun: 5 already
                          "run_defaults": {"lr": 0.001}})
    got = overrides(validate_config(paper), base)
    assert got == {
        "preset": "mnist_cpu", "device": "cpu", "precision": "auto",
        "runs.mnist_dcgan.epochs": 80, "runs.mnist_dcgan.snapshot_every": 2,
        "runs.mnist_gan.epochs": 20, "runs.mnist_gan.snapshot_every": 4,
        **{f"runs.{r}.lr": 0.001 for r in ("lsun", "faces", "imagenet32", "mnist_dcgan", "mnist_gan")},
        "mnist_eval.sample_counts.10M": 0, "mnist_eval.select_samples": 10000,
    }
    assert overrides(paper) == got  # config.yaml is the default base


def test_overrides_flatten_nested_and_replaced_values(paper):
    base = copy.deepcopy(paper)
    paper["figures"]["exemplar_ids"] = {"A": [1], "B": [2], "C": [3]}  # null in config.yaml
    paper["svm"]["c_grid"] = [1.0e-3]
    assert overrides(paper, base) == {"figures.exemplar_ids.A": [1], "figures.exemplar_ids.B": [2],
                                      "figures.exemplar_ids.C": [3], "svm.c_grid": [1.0e-3]}


def test_every_config_setting_is_commented():
    """Every key in config.yaml carries a comment; the per-dataset blocks repeat the keys of the first block
    (data.mnist), which is where they are documented. Each run lists only what differs from run_defaults, each
    line with its reason."""
    repeated = {"data.cifar10", "data.svhn"}
    missing, stack = [], []
    for line in (REPO / "config.yaml").read_text().splitlines():
        m = re.match(r"^( *)([A-Za-z0-9_]+):", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack = stack[:depth] + [m.group(2)]
        path = ".".join(stack)
        if "#" in line or any(path.startswith(r + ".") for r in repeated):
            continue
        missing.append(path)
    # Section headers whose children are all commented need no comment of their own.
    missing = [k for k in missing if k not in {"data", "data.mnist", "data.lsun", "data.imagenet", "data.faces",
                                               "mnist_eval.sample_counts", *(f"runs.{r}" for r in RUN_NAMES)}
               and not any(k == r for r in repeated)]
    assert not missing, f"config.yaml keys without a comment: {missing}"


# --- safety: the workflow never owns a user's folder ----------------------------------------------------------


@pytest.fixture
def at(tmp_path, monkeypatch):
    """Run validation from a fresh working directory (relative paths resolve there, as under --directory)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("where", ["equal", "inside", "containing"])
def test_user_folder_overlapping_an_owned_dataset_folder_is_refused_naming_both_keys(paper, at, where):
    (at / "data" / "imagenet" / "train" / "n01").mkdir(parents=True)
    user = {"equal": "data/imagenet", "inside": "data/imagenet/train", "containing": "data"}[where]
    paper["data"]["root"] = "data" if where != "containing" else "data/out"
    paper["data"]["imagenet"]["path"] = str(at / user)
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    rel = {"equal": "is the workflow's", "inside": "lies inside", "containing": "contains"}[where]
    assert f"config key 'data.imagenet.path' ({at / user}) {rel} " in msg
    assert "config key 'data.root'" in msg and "would be lost" in msg


def test_face_folder_inside_data_root_is_refused(paper, at):
    (at / "R" / "faces").mkdir(parents=True)
    (at / "R" / "faces" / "a.jpg").write_bytes(b"\xff\xd8 a user's photo")
    paper["data"]["root"] = "R"
    paper["data"]["faces"] = {"source": "folder", "path": "R/faces", "max_images": 0, "link": "copy"}
    with pytest.raises(ConfigError, match=r"config key 'data\.faces\.path' \(.*/R/faces\) is the workflow's 'faces' "
                                          r"dataset folder under config key 'data\.root' \(R\)"):
        validate_config(paper)


def test_symlinked_user_folder_is_recognised(paper, at):
    (at / "real" / "imagenet").mkdir(parents=True)
    (at / "data").mkdir()
    (at / "data" / "imagenet").symlink_to(at / "real" / "imagenet")
    paper["data"]["root"] = "data"
    paper["data"]["imagenet"]["path"] = str(at / "real" / "imagenet")
    with pytest.raises(ConfigError, match=r"data\.imagenet\.path"):
        validate_config(paper)


def test_user_folder_overlapping_results_is_refused(paper, at):
    paper["data"]["mnist"]["path"] = "results/mnist_download"
    with pytest.raises(ConfigError, match=r"'data\.mnist\.path' .* lies inside .*/results, the workflow's results/"):
        validate_config(paper)


def test_demo_sources_do_not_need_their_path(paper, at):
    paper["data"]["root"] = "data"
    paper["data"]["mnist"] = {"source": "demo", "path": "data/mnist"}  # unused by a demo source
    validate_config(paper)


def test_foreign_folder_where_a_dataset_goes_is_refused(paper, at):
    """A folder Snakemake would delete on a forced rerun (the ingest output) that this workflow did not make."""
    (at / "data" / "mnist").mkdir(parents=True)
    (at / "data" / "mnist" / "my_notes.txt").write_text("mine")
    paper["data"]["root"] = "data"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    assert "data/mnist exists and was not made by this workflow" in str(e.value)
    (at / "data" / "mnist" / "my_notes.txt").unlink()  # an empty folder loses nothing
    validate_config(copy.deepcopy(paper))  # a valid config is expanded in place: validate a fresh copy each time
    io.write_dataset(at / "data" / "mnist", "train", np.zeros((3, 2, 2, 1), np.uint8))
    io.write_json(at / "data" / "mnist" / "meta.json", {"splits": {"train": 3}, "image_shape": [2, 2, 1],
                                                          "provenance": {}})
    validate_config(copy.deepcopy(paper))  # one of ours


def test_damaged_ingested_dataset_fails_before_any_job(paper, at):
    d = at / "data" / "mnist"
    io.write_dataset(d, "train", np.zeros((30, 28, 28, 1), np.uint8))
    io.write_json(d / "meta.json", {"splits": {"train": 30}, "image_shape": [28, 28, 1], "provenance": {}})
    paper["data"]["root"] = "data"
    validate_config(copy.deepcopy(paper))
    with open(d / "train_x.npy", "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    assert (f"ingested dataset data/mnist is damaged: data/mnist/train_x.npy is 1,000 bytes, but its header "
            "(30 x 28 x 28 x 1 uint8) needs 23,648. Delete the folder data/mnist and run the workflow again") \
        in str(e.value)


@pytest.mark.parametrize("root", ["", " ", "/"])
def test_data_root_at_the_file_system_root_is_refused(paper, root):
    paper["data"]["root"] = root
    with pytest.raises(ConfigError, match=r"config key 'data\.root': .* file-system root"):
        validate_config(paper)


@pytest.mark.parametrize("key", [("dedup", "shards"), ("runs", "lsun", "epochs"), ("svm", "max_iter")])
def test_integer_valued_float_is_refused_naming_the_key(paper, key):
    node = paper
    for k in key[:-1]:
        node = node[k]
    node[key[-1]] = 2.0
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    assert f"config key '{'.'.join(key)}': 2.0 is not an integer; write 2 (no decimal point)" in str(e.value)


def test_yaml11_exponent_string_says_how_to_write_the_number(paper):
    update_config(paper, yaml.safe_load("runs:\n  lsun:\n    lr: 2e-4\n"))  # PyYAML: '2e-4' is a str
    assert paper["runs"]["lsun"]["lr"] == "2e-4"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    assert "config key 'runs.lsun.lr': '2e-4' is not a number: YAML 1.1" in msg
    assert "write 2.0e-4 or 0.0002" in msg
    paper["runs"]["lsun"]["lr"] = yaml.safe_load("2.0e-4")
    validate_config(paper)


def test_missing_released_weights_folder_names_the_key(paper, tmp_path):
    paper["weights"]["svhn"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"config key 'weights\.svhn': .*nowhere does not exist; set it to a clone"):
        validate_config(paper)


def test_released_features_need_the_release_and_trained_features_a_kept_epoch(paper, tmp_path):
    """Asking for the authors' D without saying where it is, or for a snapshot the run does not keep, fails at parse
    time naming the keys; the default keeps epoch 30 of the ImageNet run (the released D's epoch)."""
    good = copy.deepcopy(paper)
    assert 30 in validate_config(good)["runs"]["imagenet32"]["snapshot_epochs"]
    paper["features"]["discriminator"]["cifar10"] = "both"
    with pytest.raises(ConfigError, match=r"'features\.discriminator\.cifar10' is 'both'.*'weights\.imagenet32' is "
                                          r"null"):
        validate_config(copy.deepcopy(paper))
    paper["weights"]["imagenet32"] = str(tmp_path)
    paper["runs"]["imagenet32"]["snapshot_every"] = 0
    with pytest.raises(ConfigError, match=r"'features\.trained_epoch\.cifar10': 30 is not an epoch run imagenet32 "
                                          r"keeps \(runs\.imagenet32: epochs 60, snapshot_every 0 keep \[60\]\)"):
        validate_config(copy.deepcopy(paper))
    paper["features"]["discriminator"]["cifar10"] = "released"  # the trained run's epochs do not matter then
    validate_config(copy.deepcopy(paper))
    paper["weights"]["allow_partial"] = ["svhn32"]
    with pytest.raises(ConfigError, match=r"weights\.allow_partial"):
        validate_config(paper)


@pytest.mark.parametrize("key", ["lr_range", "dropout_range", "weight_decay_range"])
def test_reversed_range_is_refused(paper, key):
    lo, hi = paper["supervised_cnn"][key]
    if lo == 0:
        lo = 0.1
    paper["supervised_cnn"][key] = [hi, lo]
    with pytest.raises(ConfigError, match=rf"config key 'supervised_cnn\.{key}': \[.*\] is reversed; write the "
                                          r"lower bound first"):
        validate_config(paper)


def test_a_curation_check_file_must_exist_and_stay_outside_the_workflows_folders(paper, tmp_path, monkeypatch):
    paper["checks"]["faces"]["composites"] = str(tmp_path / "nowhere.npz")
    with pytest.raises(ConfigError, match=r"config key 'checks\.faces\.composites': .*nowhere\.npz is not a file"):
        validate_config(copy.deepcopy(paper))
    inside = tmp_path / "results" / "photos.npz"  # inside a folder the workflow owns (and may delete)
    inside.parent.mkdir()
    inside.write_bytes(b"")
    paper["checks"]["faces"]["composites"] = None
    paper["checks"]["dedup"]["photos"] = "results/photos.npz"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config key 'checks\.dedup\.photos' .* lies inside .*results"):
        validate_config(paper)
