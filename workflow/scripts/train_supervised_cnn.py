"""Rule train_supervised_cnn: Table 2 baseline, the SVHN D architecture trained on the labelled draw (svm)."""

from dcgan_repro import runtime, svm

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
svm.train_supervised_cnn(
    data_dir=snakemake.input[0],  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    cnn_cfg=snakemake.params.cnn,  # noqa: F821
    svm_cfg=snakemake.params.svm,  # noqa: F821
    run=snakemake.params.model,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
