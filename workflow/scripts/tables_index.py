"""Rule tables_index: results/tables/README.md (what each table reproduces, preset, stand-ins, how to read)."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.write_index(list(snakemake.input), snakemake.output[0], preset=snakemake.params.preset)  # noqa: F821
