"""Rule tables_table2_svhn: Table 2 (SVHN, 1000 labels) from the SVM and supervised-CNN results + paper.py."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.build_table2(
    snakemake.input.results,  # noqa: F821
    snakemake.input.cnn,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.csv,  # noqa: F821
    snakemake.output.md,  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
