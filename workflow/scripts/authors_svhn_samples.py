"""Rule authors_svhn_samples: samples of the authors' released SVHN generator in our net (theano_weights)."""

from dcgan_repro import runtime, theano_weights

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
theano_weights.authors_svhn_samples(
    snakemake.params.weights,  # noqa: F821
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
