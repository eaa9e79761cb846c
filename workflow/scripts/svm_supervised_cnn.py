"""Rule svm_supervised_cnn: Table 2 baseline, the SVHN D architecture trained on the SVM's labelled draw
(dcgan_repro.svm.supervised_cnn)."""

from dcgan_repro import runtime
from dcgan_repro.svm import supervised_cnn

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
supervised_cnn.train(
    data_dir=snakemake.input[0],  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    cnn_cfg=snakemake.params.supervised_cnn,  # noqa: F821
    svm_cfg=snakemake.params.svm,  # noqa: F821
    run=snakemake.params.run,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
