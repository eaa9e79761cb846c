"""Rule dedup_hash_shard: packed binary codes of one contiguous shard of lsun_raw (dcgan_repro.dedup)."""

from dcgan_repro import dedup, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
dedup.hash_shard(
    data_dir=snakemake.input.data,  # noqa: F821
    model_path=snakemake.input.model,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    shard=int(snakemake.params.shard),  # noqa: F821
    shards=int(snakemake.params.shards),  # noqa: F821
    dedup=dict(snakemake.params.dedup),  # noqa: F821
    common=dict(snakemake.params.common),  # noqa: F821
)
