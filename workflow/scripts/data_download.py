"""Rule data_download: fetch one dataset into its data.<name>.path, verify every file, record what was checked."""

from dcgan_repro import runtime
from dcgan_repro.data import fetch

log = runtime.rule_context(snakemake)  # noqa: F821 (injected by Snakemake's script: directive)
record = fetch.fetch_dataset(
    snakemake.wildcards.name,  # noqa: F821
    dict(snakemake.params.data),  # noqa: F821 (config.yaml data.<name>: source, path, category)
    snakemake.output[0],  # noqa: F821
    ledger=snakemake.params.ledger,  # noqa: F821 (LSUN's first-seen sha256 ledger, shared with data_ingest)
)
log.info("wrote %s: %d files verified, fetched now: %s", snakemake.output[0], len(record["files"]),  # noqa: F821
         record["fetched_now"] or "none")
