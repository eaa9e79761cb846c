"""Rule ablation_figure: results/figures/fig_ablations.{png,pdf} (dcgan_repro.ablation.figure)."""

from dcgan_repro import io, runtime
from dcgan_repro.ablation import figure

smk = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
log = runtime.rule_context(smk)
figure.fig_ablations(
    [io.read_json(p) for p in smk.input.scores],
    order=list(smk.params.order),
    baseline=smk.params.baseline,
    runs={k: dict(v) for k, v in smk.params.runs.items()},
    sample_seed=smk.params.sample_seed,
    png=smk.output.png,
    pdf=smk.output.pdf,
    preset=smk.params.preset,
)
