"""Rule mnist_eval_select_epoch: choose the reported epoch on the validation split (Table 3; mnist_eval.protocol)."""

from dcgan_repro import runtime
from dcgan_repro.mnist_eval import protocol

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
protocol.select_epoch(
    model_path=snakemake.input.model,  # noqa: F821
    summary_path=snakemake.input.summary,  # noqa: F821
    data_dir=snakemake.input.data,  # noqa: F821
    eval_cfg=snakemake.params.mnist_eval,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
    run=snakemake.params.run,  # noqa: F821
)
