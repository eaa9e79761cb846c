"""Rule ablation_classifier: the MNIST classifier behind the ablation's Frechet distance
(dcgan_repro.ablation.frechet)."""

from dcgan_repro import runtime
from dcgan_repro.ablation import frechet

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
frechet.train_classifier(
    data_dir=smk.input[0],
    cfg=dict(smk.params.classifier),
    holdout=dict(smk.params.holdout),
    out_model=smk.output.model,
    out_json=smk.output.result,
    common=dict(smk.params.common),
)
