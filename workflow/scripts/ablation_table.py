"""Rule ablation_table: results/tables/table4_ablations.{csv,md,tex,html} (dcgan_repro.ablation.table)."""

from dcgan_repro import runtime
from dcgan_repro.ablation import table

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
table.build_table(
    list(smk.input.scores),
    csv=smk.output.csv,
    md=smk.output.md,
    tex=smk.output.tex,
    html=smk.output.html,
    baseline=smk.params.baseline,
    level=smk.params.ci,
    preset=smk.params.preset,
    classifier=smk.input.classifier[0] if smk.input.classifier else None,
)
