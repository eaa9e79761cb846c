"""Rule dedup_check: the dedup hash on real photos with planted duplicates (dcgan_repro.dedup_check)."""

from dcgan_repro import dedup_check, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake)
dedup_check.run(
    snakemake.input[0],  # noqa: F821
    snakemake.params.dedup,  # noqa: F821
    snakemake.params.check,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    snakemake.params.common,  # noqa: F821
)
