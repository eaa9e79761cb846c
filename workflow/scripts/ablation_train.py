"""Rule ablation_train: one ablation variant x seed trained by dcgan_repro.train (dcgan_repro.ablation.training)."""

from dcgan_repro import runtime
from dcgan_repro.ablation import training

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
training.train_variant(
    run=dict(smk.params.run),
    name=smk.params.name,
    variant=smk.wildcards.variant,
    seed=int(smk.wildcards.seed),
    change=dict(smk.params.change),
    data_dir=smk.input[0],
    out_json=smk.output[0],
    checkpoint_dir=smk.params.checkpoint_dir,
    common=dict(smk.params.common),
    holdout=smk.params.holdout,
    tail=smk.params.tail,
)
