"""The runs of an ablation study: every variant named in config ``ablation.variants`` for every seed of
``ablation.seeds``; ``ablation.changes`` holds what each variant name changes.

A variant is the base run (``runs.<ablation.run>``) with ``ablation.run_overrides`` applied, the seed replaced, and
one change: a switch of :mod:`dcgan_repro.model_variants` (stored as the run's ``variant``) or the Adam setting
``lr`` / ``beta1`` (claims 6, 7). The baseline variant changes nothing, so its run is the base run's recipe exactly
(no ``variant`` key: ``models.build_models`` takes the unchanged path). :func:`check_plan` refuses, before any job
runs, a baseline that changes something, a variant that changes nothing, and a switch that does not apply to the
base run's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dcgan_repro import config as config_mod
from dcgan_repro import variant_switches

RUN_SETTINGS = ("lr", "beta1")          # variant changes that are plain run settings (claims 6, 7)
# The claim (docs/ABLATIONS.md numbering) each change tests; batchnorm "all" is claim 3, "none" claim 2.
CLAIM_OF = {"lr": 6, "beta1": 7}


class AblationConfigError(ValueError):
    """An ``ablation`` config the study cannot run (error names the key)."""


@dataclass(frozen=True)
class AblationRun:
    variant: str
    seed: int
    name: str                  # derived run name: <base run>__abl_<variant>_s<seed>
    run: dict[str, Any]        # the full run settings train_gan reads
    change: dict[str, Any]     # the variant's one change ({} for the baseline)


def claim(change: dict[str, Any]) -> int | None:
    """The paper claim a change tests (docs/ABLATIONS.md), or None for the baseline."""
    if not change:
        return None
    (k, v), = change.items()
    if k == "batchnorm":
        return 3 if v == "all" else 2
    return CLAIM_OF.get(k) or variant_switches.CLAIMS[k][0]


def describe(change: dict[str, Any]) -> str:
    """``batchnorm=none``; ``baseline`` for no change."""
    return ", ".join(f"{k}={v}" for k, v in change.items()) or "baseline (the paper's recipe)"


def kind_of(run: dict[str, Any]) -> str:
    """How a run is scored: ``mnist`` (1-NN error, Frechet distance in classifier features) for the class-conditional
    MNIST nets, ``fid`` for the others (the 64x64 runs)."""
    return "mnist" if run["dataset"] == "mnist" else "fid"


def run_name(base: str, variant: str, seed: int) -> str:
    return f"{base}__abl_{variant}_s{seed}"


def variant_run(config: dict[str, Any], variant: str, seed: int) -> AblationRun:
    """The run settings of one variant x seed (``config`` validated and expanded, as the workflow holds it)."""
    abl = config["ablation"]
    base = abl["run"]
    change = dict(abl["changes"][variant])
    run = {k: v for k, v in config["runs"][base].items() if k not in config_mod.DERIVED_RUN_KEYS}
    run.update(abl["run_overrides"])
    run["seed"] = int(seed)
    for k in RUN_SETTINGS:
        if k in change:
            run[k] = change[k]
    switches = {k: v for k, v in change.items() if k not in RUN_SETTINGS}
    if switches:
        run["variant"] = {**(run.get("variant") or {}), **switches}
    run["decay_epochs"] = config_mod.decay_epochs(run["epochs"], run["decay_fraction"])
    run["snapshot_epochs"] = config_mod.snapshot_epochs(run["epochs"], run["snapshot_every"])
    return AblationRun(variant=variant, seed=int(seed), name=run_name(base, variant, seed), run=run, change=change)


def check_plan(config: dict[str, Any]) -> list[AblationRun]:
    """Every variant x seed run, after checking what the schema cannot (raises :class:`AblationConfigError`)."""
    abl = config["ablation"]
    base = abl["run"]
    unknown = [v for v in abl["variants"] if v not in abl["changes"]]
    if unknown:
        raise AblationConfigError(f"config key 'ablation.variants': {', '.join(unknown)} not defined under "
                                  f"ablation.changes; defined: {', '.join(abl['changes'])}")
    variants = {v: abl["changes"][v] for v in abl["variants"]}
    if abl["baseline"] not in variants:
        raise AblationConfigError(f"config key 'ablation.baseline': {abl['baseline']!r} is not one of "
                                  f"ablation.variants ({', '.join(variants)})")
    if variants[abl["baseline"]]:
        raise AblationConfigError(f"config key 'ablation.changes.{abl['baseline']}': the baseline must change "
                                  f"nothing ({{}}), got {variants[abl['baseline']]}")
    base_run = config["runs"][base]
    for name, change in variants.items():
        if name == abl["baseline"]:
            continue
        if not change:
            raise AblationConfigError(f"config key 'ablation.changes.{name}': a variant must change one thing "
                                      f"(a switch of {', '.join(variant_switches.SWITCHES)}, or lr / beta1); it "
                                      f"changes nothing")
        (k, v), = change.items()
        if k in RUN_SETTINGS and v == {**base_run, **abl["run_overrides"]}[k]:
            raise AblationConfigError(f"config key 'ablation.changes.{name}.{k}': {v} is the base run's own value "
                                      f"(runs.{base}.{k}); the variant would change nothing")
        if k not in RUN_SETTINGS and v == variant_switches.BASELINE[k]:
            raise AblationConfigError(f"config key 'ablation.changes.{name}.{k}': {v!r} is the baseline value; "
                                      f"choose one of {', '.join(variant_switches.SWITCHES[k][1:])}")
    runs = [variant_run(config, v, s) for v in variants for s in abl["seeds"]]
    for r in runs:
        try:
            variant_switches.check_variant(r.run, where=f"ablation.changes.{r.variant}")
        except variant_switches.VariantError as e:
            raise AblationConfigError(f"{e} (ablation.run is {base}, model {r.run['model']})") from None
    return runs
