"""Rule train_gan: train one DCGAN run (paper Sec. 3-4) with dcgan_repro.train; resumes after a kill."""

from dcgan_repro import runtime, train

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
train.train_gan(
    run=dict(smk.params.run),
    name=smk.params.name,
    data_dir=smk.input[0],
    out_model=smk.output.model,
    out_summary=smk.output.summary,
    checkpoint_dir=smk.params.checkpoint_dir,
    common=dict(smk.params.common),
    holdout=smk.params.holdout,
)
