"""Rule tables_table1_cifar10: Table 1 (CIFAR-10, L2-SVM on D features and baselines) from results/svm + paper.py."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.build_table1(
    snakemake.input.results,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.csv,  # noqa: F821
    snakemake.output.md,  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
