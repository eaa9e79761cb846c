"""Rule dedup_train_autoencoder: the Sec. 4.1.1 hashing autoencoder on lsun_raw (dcgan_repro.dedup.train_job)."""

from dcgan_repro import dedup, runtime

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
dedup.train_job(
    data_dir=snakemake.input[0],  # noqa: F821 (the lsun_raw dataset folder)
    out_path=snakemake.output[0],  # noqa: F821
    dedup=dict(snakemake.params.dedup),  # noqa: F821 (config.yaml dedup:)
    common=dict(snakemake.params.common),  # noqa: F821
)
