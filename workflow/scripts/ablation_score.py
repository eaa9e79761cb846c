"""Rule ablation_score: the metrics of one ablation run (dcgan_repro.ablation.score)."""

from dcgan_repro import runtime
from dcgan_repro.ablation import score

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
score.score_run(
    train_json=smk.input.train,
    data_dir=smk.input.data,
    out_json=smk.output[0],
    run=dict(smk.params.run),
    eval_cfg=dict(smk.params.mnist_eval),
    ablation=dict(smk.params.ablation),
    common=dict(smk.params.common),
    classifier=smk.input.get("classifier"),
    classifier_json=smk.input.get("classifier_json"),
    fid_weights=smk.input.get("fid_weights"),
)
