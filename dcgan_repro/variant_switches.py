"""The variant switches of the ablation study (paper Sec. 3, 4): names, allowed values, the baseline, the models each
applies to, and the check that refuses a switch a model cannot take. Torch-free, so the workflow checks a config at
parse time without importing torch; the nets themselves are in :mod:`dcgan_repro.model_variants`, whose docstring
lists the switches and the claim each tests.
"""

from __future__ import annotations

from typing import Any

# switch -> allowed values, the baseline (the paper's recipe) first. workflow/schemas/config.schema.yaml lists the
# same values (tests/test_ablation.py checks they agree).
SWITCHES: dict[str, tuple[str, ...]] = {
    "resampling": ("strided", "pooling"),
    "batchnorm": ("paper", "none", "all"),
    "fc_hidden": ("paper", "removed", "added"),
    "g_activation": ("relu", "lrelu", "elu"),
    "d_activation": ("lrelu", "relu"),
    "init": ("normal", "pytorch_default"),
}
BASELINE = {k: v[0] for k, v in SWITCHES.items()}
# The paper claim (docs/ABLATIONS.md numbering) and section each switch tests.
CLAIMS = {"resampling": (1, "Sec. 3"), "batchnorm": (2, "Sec. 3"), "fc_hidden": (4, "Sec. 3"),
          "g_activation": (5, "Sec. 3"), "d_activation": (5, "Sec. 3"), "init": (8, "Sec. 4")}

# Non-baseline values each model family supports, and why the others do not apply.
_CONV = {"resampling": {"pooling"}, "batchnorm": {"none", "all"}, "g_activation": {"lrelu", "elu"},
         "d_activation": {"relu"}, "init": {"pytorch_default"}}
APPLICABLE: dict[str, dict[str, set[str]]] = {
    "mnist_cond_dcgan": {**_CONV, "fc_hidden": {"removed"}},
    "dcgan64": {**_CONV, "fc_hidden": {"added"}},
    "imagenet32": {**_CONV, "fc_hidden": {"added"}},
    "svhn32": {**_CONV, "fc_hidden": {"added"}},
    "mnist_cond_mlp": {"init": {"pytorch_default"}},
}
WHY_NOT = {
    ("mnist_cond_dcgan", "fc_hidden", "added"): "the authors' MNIST net already has FC hidden layers (use removed)",
    ("dcgan64", "fc_hidden", "removed"): "this all-convolutional net has no FC hidden layer (use added)",
    ("imagenet32", "fc_hidden", "removed"): "this all-convolutional net has no FC hidden layer (use added)",
    ("svhn32", "fc_hidden", "removed"): "this all-convolutional net has no FC hidden layer (use added)",
    "mnist_cond_mlp": "the permutation-invariant baseline is the fully connected comparison of Table 3, not a "
                      "DCGAN: the Sec. 3 guidelines are ablated on the convolutional nets",
    "pytorch_examples": "recipe pytorch_examples builds pytorch/examples' dcgan64, which the ablation does not "
                        "rebuild (use recipe paper)",
}


class VariantError(ValueError):
    """A variant switch that is unknown, has a value that is not allowed, or does not apply to the model."""


def active(run: dict[str, Any]) -> dict[str, str]:
    """The switches of ``run["variant"]`` that differ from the baseline (empty: the paper's recipe)."""
    variant = run.get("variant") or {}
    if not isinstance(variant, dict):
        raise VariantError(f"run config 'variant' must be a mapping of switches, got {variant!r}")
    return {k: v for k, v in variant.items() if BASELINE.get(k) != v}


def check_variant(run: dict[str, Any], where: str = "variant") -> dict[str, str]:
    """Validate ``run["variant"]`` against the run's model; return the non-baseline switches.

    Raises :class:`VariantError` naming ``where`` (the config key), the switch, the allowed values, and for a
    switch that does not apply to the model, why and what does apply."""
    on = active(run)
    model, recipe = run.get("model"), run.get("recipe", "paper")
    for k, v in on.items():
        if k not in SWITCHES:
            raise VariantError(f"config key '{where}.{k}': unknown variant switch; allowed switches: "
                               f"{', '.join(SWITCHES)}")
        if v not in SWITCHES[k]:
            raise VariantError(f"config key '{where}.{k}': {v!r} is not allowed; allowed values: "
                               f"{', '.join(SWITCHES[k])}")
        if k == "init":
            continue                                                  # every net has weights to initialise
        if recipe == "pytorch_examples" and model == "dcgan64":
            raise VariantError(f"config key '{where}.{k}': switch {k}={v} does not apply to model {model} with "
                               f"{WHY_NOT['pytorch_examples']}; only init applies there")
        ok = APPLICABLE.get(model, {}).get(k, set())
        if v not in ok:
            why = WHY_NOT.get((model, k, v)) or WHY_NOT.get(model) or "not built for this model"
            can = sorted(f"{s}={x}" for s, xs in APPLICABLE.get(model, {}).items() for x in xs)
            raise VariantError(f"config key '{where}.{k}': switch {k}={v} does not apply to model {model}: {why}. "
                               f"Switches that apply to {model}: {', '.join(can) or 'none'}")
    return on
