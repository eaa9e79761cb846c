"""Rule figures_fig08_turn_vector: Fig. 8, a 'turn' vector added to random faces + its measured pose trend (JSON,
CSV)."""
from dcgan_repro import runtime
from dcgan_repro.figures import arithmetic

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
arithmetic.fig08_turn_vector(
    snakemake.input.model,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    snakemake.output.stats,  # noqa: F821
    snakemake.output.table,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
    turn_ids=snakemake.params.figures["turn_ids"],  # noqa: F821 (null = automatic choice)
)
