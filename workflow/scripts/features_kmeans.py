"""Rule features_kmeans: the Table 1 "1 Layer K-means" baseline features of CIFAR-10 (dcgan_repro.kmeans)."""

from dcgan_repro import kmeans, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
kmeans.kmeans_features(
    data_dir=snakemake.input.data,  # noqa: F821
    train_out=snakemake.output.train,  # noqa: F821
    test_out=snakemake.output.test,  # noqa: F821
    dictionary_out=snakemake.output.dictionary,  # noqa: F821
    cfg=snakemake.params.kmeans,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
