"""Rule tables_table1_cifar10: Table 1 (CIFAR-10, L2-SVM on ImageNet-trained D features) from results/svm + paper.py."""
from dcgan_repro import runtime, tables

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
tables.build_table1(
    snakemake.input.all_labels,  # noqa: F821
    snakemake.input.per_class,  # noqa: F821
    snakemake.input.data,  # noqa: F821
    snakemake.output.csv,  # noqa: F821
    snakemake.output.md,  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
    kmeans_all=snakemake.input.kmeans_all,  # noqa: F821
    kmeans_per_class=snakemake.input.kmeans_per_class,  # noqa: F821
)
