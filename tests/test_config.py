"""config.yaml and presets validate; bad keys and values fail with messages naming them."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from dcgan_repro.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.fixture
def paper() -> dict:
    return _load("config.yaml")


def test_paper_config_is_valid(paper):
    validate_config(paper)
    assert paper["preset"] == "paper"


@pytest.mark.parametrize("preset", sorted(p.name for p in (REPO / "presets").glob("*.yaml")))
def test_presets_merge_and_validate(paper, preset):
    merged = copy.deepcopy(paper)
    update_config(merged, _load(f"presets/{preset}"))  # the merge Snakemake applies for --configfile
    validate_config(merged)
    assert merged["preset"] == preset.removesuffix(".yaml")


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


def test_bad_type_and_range_name_the_key(paper):
    paper["svm"]["final_draws"] = 0
    paper["device"] = "tpu"
    with pytest.raises(ConfigError) as e:
        validate_config(paper)
    msg = str(e.value)
    assert "svm.final_draws" in msg and "device" in msg and "auto, cpu, cuda" in msg


def test_snapshot_after_last_epoch_is_refused(paper):
    paper["runs"]["lsun"]["snapshot_epochs"] = [1, 50]
    with pytest.raises(ConfigError, match=r"runs\.lsun\.snapshot_epochs"):
        validate_config(paper)


def test_every_config_setting_is_commented():
    """Every key in config.yaml carries a comment; the per-run and per-dataset blocks repeat the keys of the
    first block (runs.lsun, data.mnist), which is where they are documented."""
    repeated = {"runs.faces", "runs.imagenet32", "runs.svhn", "runs.mnist_dcgan", "runs.mnist_gan",
                "data.cifar10", "data.svhn"}
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
    missing = [k for k in missing if k not in {"data", "runs", "data.mnist", "data.lsun", "data.imagenet",
                                               "data.faces", "runs.lsun", "mnist_eval.sample_counts"}
               and not any(k == r for r in repeated)]
    assert not missing, f"config.yaml keys without a comment: {missing}"
