"""Rule figures_authors_svhn_samples: samples of the authors' released SVHN generator, loaded into our net by
theano_weights."""

from dcgan_repro import runtime, theano_weights
from dcgan_repro.figures import sample_sheets

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
weights = snakemake.params.weights  # noqa: F821
sample_sheets.authors_svhn_samples(
    theano_weights.load_generator(weights, "svhn32"),
    theano_weights.released_file(weights, "svhn32", "G"),
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
