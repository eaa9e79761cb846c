"""Rule figures_fig04_interpolation: Fig. 4, interpolation between random points in Z (run figures.interp_run;
paper: LSUN)."""
from dcgan_repro import runtime
from dcgan_repro.figures import interpolation

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
interpolation.fig04_interpolation(
    snakemake.input.model,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
