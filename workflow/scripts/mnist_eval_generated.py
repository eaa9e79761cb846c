"""Rule mnist_eval_generated: exact 1-NN fitted on generated MNIST samples (Table 3 @50K / @10M;
mnist_eval.protocol)."""

from dcgan_repro import runtime
from dcgan_repro.mnist_eval import protocol

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
protocol.evaluate_generated(
    model_path=snakemake.input.model,  # noqa: F821
    data_dir=snakemake.input.data,  # noqa: F821
    n_samples=snakemake.params.n_samples,  # noqa: F821
    eval_cfg=snakemake.params.mnist_eval,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
    column=snakemake.params.column,  # noqa: F821
    run=snakemake.params.run,  # noqa: F821
    selection=snakemake.input.selection,  # noqa: F821
)
