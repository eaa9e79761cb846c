"""Rule features_extract: Sec. 5.1 features of one dataset split (dcgan_repro.features): a trained or released D's,
or raw pixels."""

from dcgan_repro import features, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
features.run_extraction(
    source=snakemake.params.source,  # noqa: F821
    data_dir=snakemake.input.data,  # noqa: F821
    split=snakemake.wildcards.split,  # noqa: F821
    out_path=snakemake.output.features,  # noqa: F821
    about_path=snakemake.output.about,  # noqa: F821
    cfg=snakemake.params.features,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
    model_path=snakemake.input.get("model"),  # noqa: F821
    run=snakemake.params.run,  # noqa: F821
    epoch=snakemake.params.epoch,  # noqa: F821
    released=snakemake.params.released,  # noqa: F821
)
