"""Rule faces_gather: concatenate shard crops into the faces dataset; counts per skip reason (dcgan_repro.faces)."""

from dcgan_repro import faces, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
faces.gather(
    source_dir=snakemake.input.source,  # noqa: F821
    box_paths=list(snakemake.input.boxes),  # noqa: F821
    crop_paths=list(snakemake.input.crops),  # noqa: F821
    out_dir=snakemake.output.data,  # noqa: F821
    summary_path=snakemake.output.summary,  # noqa: F821
    faces=dict(snakemake.params.faces),  # noqa: F821
    preset=snakemake.params.preset,  # noqa: F821
)
