"""Rule figures_fig05_guided_backprop: Fig. 5, guided backpropagation of D's last conv features, trained vs random D
(run figures.guided_run; paper: LSUN)."""
from dcgan_repro import runtime
from dcgan_repro.figures import guided_backprop

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
guided_backprop.fig05_guided_backprop(
    snakemake.input.model,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
