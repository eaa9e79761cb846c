"""Rule figures_fig07_vector_arithmetic: Fig. 7, vector arithmetic on face samples + its measured effect (JSON,
CSV)."""
from dcgan_repro import runtime
from dcgan_repro.figures import arithmetic

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
arithmetic.fig07_vector_arithmetic(
    snakemake.input.model,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    snakemake.output.stats,  # noqa: F821
    snakemake.output.table,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
    exemplar_ids=snakemake.params.figures["exemplar_ids"],  # noqa: F821 (null = automatic choice)
)
