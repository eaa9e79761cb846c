"""Rule figures_authors_svhn_samples: samples of the authors' released SVHN generator, verified and loaded into our
net (dcgan_repro.released)."""

from dcgan_repro import released, runtime
from dcgan_repro.figures import sample_sheets

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
netG, manifest = released.load_generator(snakemake.params.weights, "svhn32", key="weights.svhn")  # noqa: F821
sample_sheets.authors_svhn_samples(
    netG,
    f"{manifest['folder']} ({manifest['files_verified']} files verified by git blob id)",
    snakemake.output.png,  # noqa: F821
    snakemake.output.pdf,  # noqa: F821
    figures=snakemake.params.figures,  # noqa: F821
    common=snakemake.params.common,  # noqa: F821
)
