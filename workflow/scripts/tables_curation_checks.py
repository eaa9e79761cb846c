"""Rule tables_curation_checks: the dedup and face-detection checks (results/{dedup,faces}/check.json) as a table."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.build_curation_checks(
    snakemake.input.get("dedup"),  # noqa: F821
    snakemake.input.get("faces"),  # noqa: F821
    snakemake.output.csv,  # noqa: F821
    snakemake.output.md,  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
