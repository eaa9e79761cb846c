"""Config validation with messages that name the key and what is allowed.

jsonschema does the checking; this module turns its errors into one readable message, e.g.
``config key 'runs.lsun.recipe': 'paperr' is not allowed; allowed values: paper, pytorch_examples``.

Once the config is valid, :func:`validate_config` expands each run in place (:func:`expand_runs`): a file's
``runs.<name>`` lists only what differs from ``run_defaults``; the run the workflow reads is the merge of both plus
the schedule derived from it (``decay_epochs`` from ``decay_fraction``, ``snapshot_epochs`` from
``snapshot_every``), computed here and nowhere else. :func:`overrides` names the settings in force that differ
from config.yaml; every provenance record carries them (``runtime.rule_context`` hands them to ``io``).

Beyond the schema it checks what a schema cannot express, before any job runs (the Snakefile calls
:func:`validate_config` at parse time, so ``snakemake -n`` reports it): ordered ranges, released-weight folders
that exist, and the **ownership of paths**. The workflow writes and deletes only
inside the folders it owns (:func:`owned_outputs`: ``results/``, ``logs/``, ``resources/checkpoints/``,
``resources/faces_shards/`` and one folder per dataset under ``data.root``); Snakemake deletes a rule's output
folder before rebuilding it, so a user's folder (``data.*.path``, ``weights.*``) that equals, lies inside or
contains an owned output is refused, as is an existing dataset folder under ``data.root`` that this workflow
did not make.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from dcgan_repro import io

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
CONFIG_PATH = Path(__file__).resolve().parents[1] / "config.yaml"  # what every preset and --config overrides
# Run settings derived from others at validation time (never written in a config file): key -> what sets it.
DERIVED_RUN_KEYS = {"decay_epochs": "decay_fraction (decay_epochs = round(epochs * decay_fraction))",
                    "snapshot_epochs": "snapshot_every (epochs between kept snapshots; 0 = the last epoch only)"}


class ConfigError(ValueError):
    """A config value or key that the schema does not allow."""


# YAML integers only: jsonschema counts 2.0 as an integer, which later crashes range() with a TypeError.
_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, x: isinstance(x, int) and not isinstance(x, bool))
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPES)
# A number written like 2e-4: YAML 1.1 (PyYAML, which Snakemake uses) reads it as a string.
_YAML11_FLOAT = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))[eE]([+-]?)(\d+)$")

# Datasets rule data_ingest builds (its wildcard values), and the config.yaml data.<key> section of each.
INGESTED_DATASETS = ("mnist", "cifar10", "svhn", "lsun_raw", "imagenet", "faces_raw")
DATA_CONFIG_KEY = {name: {"lsun_raw": "lsun", "faces_raw": "faces"}.get(name, name) for name in INGESTED_DATASETS}
# Dataset folders under data.root, each the output of one rule (data_ingest, dedup_gather, faces_gather).
DATASET_FOLDERS = (*INGESTED_DATASETS, "lsun", "faces")
# Output folders outside data.root, relative to the working directory (what workflow/rules/*.smk write).
OWNED_FOLDERS = ("results", "logs", "resources/checkpoints", "resources/faces_shards")
# User-supplied paths: read, never written (downloads add files to data.*.path but never delete or rewrite).
DATA_PATH_KEYS = ("mnist", "cifar10", "svhn", "lsun", "imagenet", "faces")


def load_schema(path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _subschema(schema: dict, error: jsonschema.ValidationError) -> dict:
    sub = error.schema
    if "$ref" in sub:
        ref = sub["$ref"].split("/")[-1]
        sub = schema["$defs"][ref]
    return sub


def _explain(schema: dict, error: jsonschema.ValidationError) -> str:
    key = _key(error.absolute_path)
    sub = _subschema(schema, error)
    if error.validator == "additionalProperties":
        allowed = sorted(sub.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        derived = "".join(f"; {e} is derived: set {DERIVED_RUN_KEYS[e]}" for e in extra if e in DERIVED_RUN_KEYS)
        return (f"unknown config key(s) {', '.join(repr(_key([*error.absolute_path, e])) for e in extra)} "
                f"{where}; allowed keys: {', '.join(allowed)}{derived}")
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"config key '{key}': {error.instance!r} is not allowed; allowed values: {allowed}"
    if error.validator == "required":
        return f"config key '{key}' is missing a required setting: {error.message}"
    if error.validator == "type":
        return _explain_type(key, error.instance, error.validator_value)
    return f"config key '{key}': {error.message}"


def _explain_type(key: str, value: Any, wanted: str | list[str]) -> str:
    """A type error, with the fix for the two ways YAML surprises: 2e-4 read as a string, 2.0 where an integer goes."""
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    what = " or ".join("null" if w == "null" else f"an {w}" if w[0] in "aeiou" else f"a {w}" for w in wanted)
    msg = f"config key '{key}': {value!r} is not {what}"
    if isinstance(value, str) and ("number" in wanted or "integer" in wanted) and (m := _YAML11_FLOAT.match(value)):
        mant, sign, exp = m.groups()
        fixed = f"{mant if '.' in mant else mant + '.0'}e{sign or '+'}{exp}"
        return (f"{msg}: YAML 1.1, which Snakemake's config reader follows, reads {value} as a string (a number "
                f"in exponent notation needs a dot in the mantissa and a sign in the exponent); write {fixed} "
                f"or {float(value)!r}")
    if isinstance(value, float) and "integer" in wanted and value.is_integer():
        return f"{msg}; write {int(value)} (no decimal point)"
    if isinstance(value, str) and ("number" in wanted or "integer" in wanted) and _is_number(value):
        *outer, last = key.split(".")
        as_yaml = f"{last}: {value}"
        for k in reversed(outer):
            as_yaml = f"{k}: {{{as_yaml}}}"
        return (f"config key '{key}': {value!r} is a string, not {what}: Snakemake's --config reads a nested value "
                f"(--config '{key.split('.')[0]}={{...}}') as a string. Put it in a YAML file passed with "
                f"--configfile instead: {as_yaml}")
    return msg


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config`` as written (config.yaml with presets and --config merged over it); raise
    :class:`ConfigError` listing every problem, each naming its key, and leave ``config`` as it was. If it is
    valid, expand its runs in place (:func:`expand_runs`) so the rest of the workflow reads complete runs, and
    return it. Validate a config once: an expanded run holds the derived keys, which a config file may not set."""
    schema = load_schema(schema_path)
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_explain(schema, e) for e in errors]
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))
    _check_consistency(config)
    return expand_runs(config)


def decay_epochs(epochs: int, decay_fraction: float) -> int:
    """Epochs at the end of the schedule over which lr decays linearly to 0: ``round(epochs * decay_fraction)``
    (Python's round: a half goes to the even neighbour). The authors' MNIST and ImageNet code: 100 + 100 and
    30 + 30 epochs, i.e. 0.5."""
    return round(epochs * decay_fraction)


def snapshot_epochs(epochs: int, snapshot_every: int) -> list[int]:
    """Epochs after which the generator is kept: every ``snapshot_every`` epochs (0 = none but the last) and
    always the last one."""
    every = range(snapshot_every, epochs + 1, snapshot_every) if snapshot_every else ()
    return sorted({*every, epochs})


def expand_runs(config: dict[str, Any]) -> dict[str, Any]:
    """Replace each ``runs.<name>`` in place by ``run_defaults`` merged with its own settings (its own win) plus the
    derived ``decay_epochs`` and ``snapshot_epochs``; the one place these are computed. Returns ``config``."""
    defaults = config["run_defaults"]
    for name, own in config["runs"].items():
        run = {**defaults, **own}
        run["decay_epochs"] = decay_epochs(run["epochs"], run["decay_fraction"])
        run["snapshot_epochs"] = snapshot_epochs(run["epochs"], run["snapshot_every"])
        config["runs"][name] = run
    return config


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {dotted key: leaf}; lists and scalars are leaves."""
    if not isinstance(node, dict) or not node:
        return {prefix: node} if prefix else {}
    out = {}
    for k, v in node.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def overrides(config: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings in force that differ from ``base`` (default: config.yaml), as flat dotted keys -> value,
    e.g. ``{"preset": "mnist_cpu", "runs.mnist_dcgan.epochs": 80}``.

    Both sides are compared as runs are used (:func:`expand_runs`), so a ``run_defaults`` value appears under each
    run it reaches (``runs.<name>.lr``), and a ``run_defaults`` value every run overrides appears nowhere; the
    ``run_defaults`` block itself and the derived keys (which follow from epochs, decay_fraction and
    snapshot_every) are left out. ``config`` may be expanded already or not."""
    if base is None:
        base = yaml.safe_load(CONFIG_PATH.read_text())
    ours, theirs = (_flat(expand_runs(copy.deepcopy(c))) for c in (config, base))
    missing = object()
    return {k: v for k, v in sorted(ours.items())
            if theirs.get(k, missing) != v and not k.startswith("run_defaults.")
            and k.rsplit(".", 1)[-1] not in DERIVED_RUN_KEYS}


def _check_consistency(config: dict[str, Any]) -> None:
    """Rules a JSON schema cannot express."""
    for section, settings in config.items():
        for k, v in (settings.items() if isinstance(settings, dict) else ()):
            if k.endswith("_range") and v[0] > v[1]:
                raise ConfigError(f"config key '{section}.{k}': {v} is reversed; write the lower bound first: "
                                  f"[{v[1]}, {v[0]}]")
    _check_weights(config)
    _check_files(config)
    _check_paths(config)


# The data-curation checks' input files (rules dedup_check, faces_check): (section, key) -> what the file holds.
CHECK_FILES = {("dedup", "photos"): "real photographs", ("faces", "composites"): "images with known face boxes"}
# (config checks.<section>.<key>)


def _check_files(config: dict[str, Any]) -> None:
    """A curation check's file, when set, must exist (otherwise Snakemake names a missing file, not the key)."""
    for (section, key), what in CHECK_FILES.items():
        path = config["checks"][section][key]
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"config key 'checks.{section}.{key}': {path} is not a file; set it to an .npz of "
                              f"{what}, or to null to skip the check")


def _check_weights(config: dict[str, Any]) -> None:
    """Released weights where the config uses them, and configured paths that exist (the job verifies the files
    themselves): otherwise Snakemake would name a missing file, not the key."""
    from dcgan_repro.svm.registry import FEATURE_RUNS

    weights = config["weights"]
    for run in ("imagenet32", "svhn"):
        path = weights[run]
        if path is not None and not Path(path).exists():
            raise ConfigError(f"config key 'weights.{run}': {path} does not exist; set it to a clone of the authors' "
                              "repository (git clone https://github.com/Newmu/dcgan_code) or the released model's "
                              "folder in it, or to null")
    for dataset, run in FEATURE_RUNS.items():
        choice = config["features"]["discriminator"][dataset]
        if choice in ("released", "both") and weights[run] is None:
            raise ConfigError(f"config key 'features.discriminator.{dataset}' is {choice!r}, which needs the authors' "
                              f"released D, but 'weights.{run}' is null: set weights.{run} to a clone of "
                              "https://github.com/Newmu/dcgan_code (or its model folder), or use 'trained'")
        epoch = config["features"]["trained_epoch"][dataset]
        spec = {**config["run_defaults"], **config["runs"][run]}
        kept = snapshot_epochs(spec["epochs"], spec["snapshot_every"])
        if choice != "released" and epoch and epoch not in kept:
            raise ConfigError(f"config key 'features.trained_epoch.{dataset}': {epoch} is not an epoch run {run} keeps "
                              f"(runs.{run}: epochs {spec['epochs']}, snapshot_every {spec['snapshot_every']} keep "
                              f"{kept}); choose one of them, 0 for the last, or change runs.{run}.snapshot_every")


def owned_outputs(config: dict[str, Any]) -> dict[Path, str]:
    """Every folder the workflow writes and may delete, resolved, with what it holds (for messages)."""
    root = config["data"]["root"]
    owned = {_resolve(os.path.join(root, d)): f"the workflow's '{d}' dataset folder under config key 'data.root' "
                                              f"({root})" for d in DATASET_FOLDERS}
    owned[_resolve(os.path.join(root, "checksums"))] = f"the workflow's checksum ledger under 'data.root' ({root})"
    owned.update({_resolve(d): f"the workflow's {d}/ folder in the working directory" for d in OWNED_FOLDERS})
    return owned


def user_paths(config: dict[str, Any]) -> dict[str, Path]:
    """The configured paths of the user's own data (config key -> resolved path); the workflow only reads them."""
    paths = {}
    for name in DATA_PATH_KEYS:
        ds = config["data"][name]
        if ds["source"] != "demo" and ds.get("path"):
            paths[f"data.{name}.path"] = _resolve(ds["path"])
    for name, p in config["weights"].items():
        if p and name != "allow_partial":
            paths[f"weights.{name}"] = _resolve(p)
    if config["figures"]["window_boxes"]:
        paths["figures.window_boxes"] = _resolve(config["figures"]["window_boxes"])
    for section, key in CHECK_FILES:
        if path := config["checks"][section][key]:
            paths[f"checks.{section}.{key}"] = _resolve(path)
    return paths


def _resolve(p: str | os.PathLike) -> Path:
    """Absolute, symlinks followed (so two names of one folder compare equal), relative to the working directory."""
    return Path(os.path.abspath(os.path.expanduser(p))).resolve()


def _check_paths(config: dict[str, Any]) -> None:
    """Refuse configs under which the workflow could delete or rewrite what is not its own (see the module doc)."""
    root = config["data"]["root"]
    if not root.strip() or _resolve(root) == Path(_resolve(root).anchor):
        raise ConfigError(f"config key 'data.root': {root!r} is not allowed: datasets would be written at the "
                          "file-system root (/mnist, /faces, ...); set it to a folder of the workflow's own, "
                          "e.g. resources/data")
    owned = owned_outputs(config)
    for key, up in user_paths(config).items():
        for op, what in owned.items():
            if up == op or op in up.parents or up in op.parents:
                rel = "is" if up == op else f"lies inside {op}," if op in up.parents else f"contains {op},"
                raise ConfigError(
                    f"config key '{key}' ({up}) {rel} {what}. The workflow deletes and rebuilds its "
                    f"own folders (Snakemake removes a rule's output folder before running it), so your data there "
                    f"would be lost: keep your data outside the workflow's folders, e.g. set data.root to a folder "
                    f"of its own (default resources/data) or move the data")
    for d in DATASET_FOLDERS:
        folder = Path(root) / d
        if not folder.exists():
            continue
        if not folder.is_dir() or (any(folder.iterdir()) and not io.is_dataset_folder(folder)):
            raise ConfigError(
                f"config key 'data.root' ({root}): {folder} exists and was not made by this workflow (no meta.json "
                f"as the workflow writes it). The workflow owns {folder} (the '{d}' dataset) and Snakemake deletes it "
                f"before rebuilding it: move your files elsewhere, or set data.root to a folder of the workflow's "
                f"own (default resources/data)")
        try:
            io.check_dataset(folder)
        except io.DatasetError as e:
            raise ConfigError(f"config key 'data.root' ({root}): {e}") from None
