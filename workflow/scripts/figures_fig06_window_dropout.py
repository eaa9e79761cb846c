"""Rule figures_fig06_window_dropout: Fig. 6, samples with and without the 'window' feature maps of G (run
figures.window_run, layer figures.window_layer; paper: LSUN, the second-highest layer) + stats JSON."""
from dcgan_repro import runtime
from dcgan_repro.figures import window_dropout

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
window_dropout.fig06_window_dropout(
    snakemake.input.model,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    snakemake.output.stats,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
