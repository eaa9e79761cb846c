"""Rule dedup_gather: bucket equal codes, keep one image per bucket, write the lsun dataset (dcgan_repro.dedup)."""

from dcgan_repro import dedup, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
summary = dedup.gather(
    data_dir=snakemake.input.data,  # noqa: F821
    shard_paths=list(snakemake.input.shards),  # noqa: F821
    out_dir=snakemake.output.data,  # noqa: F821
    summary_path=snakemake.output.summary,  # noqa: F821
    kept_path=snakemake.output.kept,  # noqa: F821
    removed_path=snakemake.output.removed,  # noqa: F821
    sheet_path=snakemake.output.sheet,  # noqa: F821
    dedup=dict(snakemake.params.dedup),  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
log.info("dedup: kept %d of %d images (removal rate %.2f %%)", summary["kept"], summary["images"],
         100 * summary["removal_rate"])
