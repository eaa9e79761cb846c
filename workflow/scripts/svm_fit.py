"""Rule svm_fit: one L2-SVM protocol on discriminator features (Tables 1, 2; dcgan_repro.svm.protocols)."""

from dcgan_repro import runtime
from dcgan_repro.svm import protocols

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
protocols.fit(
    protocol=snakemake.params.protocol,  # noqa: F821
    train_feats_path=snakemake.input.train,  # noqa: F821
    test_feats_path=snakemake.input.test,  # noqa: F821
    data_dir=snakemake.input.data,  # noqa: F821
    svm_cfg=snakemake.params.svm,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
    feature_model=snakemake.params.feature_model,  # noqa: F821
    feature_pool=snakemake.params.feature_pool,  # noqa: F821
    about_path=snakemake.input.get("about"),  # noqa: F821
)
