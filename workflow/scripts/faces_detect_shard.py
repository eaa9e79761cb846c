"""Rule faces_detect_shard: Haar face boxes and 64x64 crops for one shard of faces_raw (dcgan_repro.faces)."""

from dcgan_repro import faces, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
faces.detect_shard(
    source_dir=snakemake.input[0],  # noqa: F821 (the faces_raw folder)
    shard=int(snakemake.params.shard),  # noqa: F821
    shards=int(snakemake.params.shards),  # noqa: F821
    faces=dict(snakemake.params.faces),  # noqa: F821 (config.yaml faces:)
    boxes_path=snakemake.output.boxes,  # noqa: F821
    crops_path=snakemake.output.crops,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821 (OpenCV worker threads)
)
