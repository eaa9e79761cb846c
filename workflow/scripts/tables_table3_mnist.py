"""Rule tables_table3_mnist: Table 3 (MNIST 1-NN on generated samples) from results/mnist_eval + paper.py."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.build_table3(
    list(snakemake.input.generated),  # noqa: F821
    snakemake.input.real,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.csv,  # noqa: F821
    snakemake.output.md,  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
