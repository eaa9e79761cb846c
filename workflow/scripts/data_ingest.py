"""Rule data_ingest: one dataset folder in the common .npy format (docs/CONTRACTS.md, "Datasets"), from local files."""

from dcgan_repro import runtime
from dcgan_repro.data import ingest

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
meta = ingest.ingest(
    snakemake.wildcards.dataset,  # noqa: F821
    dict(snakemake.params.data),  # noqa: F821 (config.yaml data.<name>)
    snakemake.output[0],  # noqa: F821
    seed=int(snakemake.params.seed),  # noqa: F821
    workers=snakemake.threads,  # noqa: F821 (threads decoding images)
    offline=True,  # local files only: rule data_download fetched and verified them
)
log.info("wrote %s: splits %s, stand-in: %s", snakemake.output[0], meta["splits"], meta["stand_in"])  # noqa: F821
