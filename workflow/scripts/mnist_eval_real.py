"""Rule mnist_eval_real: exact 1-NN fitted on real MNIST training images (Table 3 'Real Data'; mnist_eval.protocol)."""

from dcgan_repro import runtime
from dcgan_repro.mnist_eval import protocol

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
protocol.evaluate_real(
    data_dir=snakemake.input[0],  # noqa: F821
    eval_cfg=snakemake.params.mnist_eval,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
