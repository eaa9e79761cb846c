"""Rule figures_sample_sheet: Figs. 2, 3, 10, 11, a grid of samples from a run's generator (snapshot epoch or final)."""
from dcgan_repro import runtime
from dcgan_repro.figures import sample_sheets

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
sample_sheets.sample_sheet(
    snakemake.input.model,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    run=snakemake.params.run,  # noqa: F821
    epoch=snakemake.params.epoch,  # noqa: F821
    figure=snakemake.params.figure,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
