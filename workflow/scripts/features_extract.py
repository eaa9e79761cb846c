"""Rule features_extract: Sec. 5.1 discriminator features of one dataset split (dcgan_repro.features)."""

from dcgan_repro import features, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
features.run_extraction(
    model_path=snakemake.input.model,  # noqa: F821
    data_dir=snakemake.input.data,  # noqa: F821
    split=snakemake.wildcards.split,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    cfg=snakemake.params.features,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
