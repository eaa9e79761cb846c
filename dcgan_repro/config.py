"""Config validation with messages that name the key and what is allowed.

jsonschema does the checking; this module turns its errors into one readable message, e.g.
``config key 'runs.lsun.recipe': 'paperr' is not allowed; allowed values: paper, pytorch_examples``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value or key that the schema does not allow."""


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
        return (f"unknown config key(s) {', '.join(repr(_key([*error.absolute_path, e])) for e in extra)} "
                f"{where}; allowed keys: {', '.join(allowed)}")
    if error.validator == "enum":
        allowed = ", ".join(str(v) for v in error.validator_value)
        return f"config key '{key}': {error.instance!r} is not allowed; allowed values: {allowed}"
    if error.validator == "required":
        return f"config key '{key}' is missing a required setting: {error.message}"
    return f"config key '{key}': {error.message}"


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate ``config``; raise :class:`ConfigError` listing every problem, each naming its key."""
    schema = load_schema(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [_explain(schema, e) for e in errors]
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(lines))
    _check_consistency(config)
    return config


def _check_consistency(config: dict[str, Any]) -> None:
    """Rules a JSON schema cannot express."""
    for name, run in config["runs"].items():
        bad = [e for e in run["snapshot_epochs"] if e > run["epochs"]]
        if bad:
            raise ConfigError(f"config key 'runs.{name}.snapshot_epochs': epochs {bad} exceed "
                              f"runs.{name}.epochs = {run['epochs']}")
        if run["decay_epochs"] > run["epochs"]:
            raise ConfigError(f"config key 'runs.{name}.decay_epochs' ({run['decay_epochs']}) exceeds "
                              f"runs.{name}.epochs ({run['epochs']})")
    if config["data"]["imagenet"]["source"] == "path" and not config["data"]["imagenet"]["path"]:
        # Not an error at parse time: the ingest rule reports it with instructions when it runs.
        pass
