"""Rule faces_check: the face detector on images with known face boxes (dcgan_repro.faces)."""

from dcgan_repro import faces, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
faces.check(
    snakemake.input[0],  # noqa: F821
    snakemake.params.faces,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    snakemake.params.common,  # noqa: F821
)
