"""Rule tables_views: a table's LaTeX (for papers) and HTML (for snakemake --report) versions, from its CSV."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.write_views(
    snakemake.input.csv,  # noqa: F821
    snakemake.output.tex,  # noqa: F821
    snakemake.output.html,  # noqa: F821
    name=snakemake.params.name,  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
