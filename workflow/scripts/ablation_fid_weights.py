"""Rule ablation_fid_weights: the standard Inception weights for FID, downloaded and checksum-verified
(dcgan_repro.ablation.fid)."""

from dcgan_repro import runtime
from dcgan_repro.ablation import fid

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
got = fid.ensure_weights(smk.output[0])
log.info("Inception weights for FID at %s, sha256 %s", got["path"], got["sha256"])
