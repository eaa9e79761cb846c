"""Rule nn_eval_real: exact 1-NN fitted on real MNIST training images (Table 3 'Real Data'; dcgan_repro.nn_eval)."""

from dcgan_repro import nn_eval, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
nn_eval.evaluate_real(
    data_dir=snakemake.input[0],  # noqa: F821
    eval_cfg=snakemake.params.eval,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
