# Stage: ablation of the paper's guidelines and training settings (Sec. 3, 4; dcgan_repro.ablation, docs/ABLATIONS.md).
# Every variant x seed of config ablation trains from the base run's settings with one change, is scored, and joins
# results/tables/table4_ablations.* and results/figures/fig_ablations.png. Not in rule all: ask for those files.
# The FID weights are a download: a local rule, so under SLURM it runs on the submit host (where the internet is).


localrules:
    ablation_fid_weights,


rule ablation_train:
    """One variant x seed with dcgan_repro.train (a run the health checks stop is recorded as such, not an error)."""
    input:
        train_dataset_dir(ABLATION_BASE),
    output:
        "results/ablation/{variant}/s{seed}/train.json",
    log:
        "logs/results/ablation/{variant}/s{seed}/train.log",
    benchmark:
        "logs/benchmarks/ablation/{variant}_s{seed}_train.tsv"
    wildcard_constraints:
        variant="|".join(ABLATION["variants"]),
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1 if config["device"] == "cpu" else 4  # as train_gan: one thread per small CPU run
    resources:
        gpu=1,
        runtime=24 * 60,
        mem_mb=lambda w, input: sizing.train_mem_mb(config, input[0]),
    params:
        run=lambda w: ablation_run(w).run,
        name=lambda w: ablation_run(w).name,
        change=lambda w: ablation_run(w).change,
        checkpoint_dir=lambda w: f"resources/checkpoints/ablation/{w.variant}_s{w.seed}",
        common=common_params(),
        holdout=mnist_holdout(ABLATION_BASE),
        tail=ABLATION["tail"],
    script:
        "../scripts/ablation_train.py"


rule ablation_classifier:
    """The MNIST classifier whose features give the Frechet distance, trained on the training split."""
    input:
        dataset_dir("mnist"),
    output:
        model="results/ablation/classifier/model.pt",
        result="results/ablation/classifier.json",
    log:
        "logs/results/ablation/classifier.log",
    benchmark:
        "logs/benchmarks/ablation/classifier.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        runtime=60,
        mem_mb=4000,
    params:
        classifier=ABLATION["classifier"],
        holdout={k: config["mnist_eval"][k] for k in ("validation_size", "split_seed")},
        common=common_params(),
    script:
        "../scripts/ablation_classifier.py"


rule ablation_fid_weights:
    """The standard Inception weights for FID, downloaded once and checksum-verified (fails clearly offline)."""
    output:
        ABLATION["fid"]["weights"],
    log:
        "logs/results/ablation/fid_weights.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/ablation_fid_weights.py"


rule ablation_score:
    """One run's metrics: MNIST 1-NN test error (epoch chosen on validation) and Frechet distance, or FID; and the
    stability measures of its training."""
    input:
        unpack(ablation_score_inputs),
    output:
        "results/ablation/{variant}/s{seed}/score.json",
    log:
        "logs/results/ablation/{variant}/s{seed}/score.log",
    benchmark:
        "logs/benchmarks/ablation/{variant}_s{seed}_score.tsv"
    wildcard_constraints:
        variant="|".join(ABLATION["variants"]),
        seed=r"\d+",
    conda:
        "../../envs/torch.yaml"
    threads: 1
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    params:
        run=lambda w: ablation_run(w).run,
        # Table 3's protocol, with the ablation's own budget for choosing the epoch on the validation split
        mnist_eval={**config["mnist_eval"], "select_samples": ABLATION["select_samples"]},
        ablation=ABLATION,
        common=common_params(),
    script:
        "../scripts/ablation_score.py"


rule ablation_table:
    """table4_ablations: every variant's metrics (mean, std, per seed) and its difference from the baseline."""
    input:
        scores=ablation_scores(),
        classifier=["results/ablation/classifier.json"] if ABLATION_KIND == "mnist" else [],
    output:
        csv="results/tables/table4_ablations.csv",
        md="results/tables/table4_ablations.md",
        tex=report(
            "results/tables/table4_ablations.tex",
            caption="../report/table4_ablations.rst",
            category="Tables",
            labels={"table": "table4_ablations", "format": "LaTeX"},
        ),
        html=report(
            "results/tables/table4_ablations.html",
            caption="../report/table4_ablations.rst",
            category="Tables",
            labels={"table": "table4_ablations", "format": "HTML"},
        ),
    log:
        "logs/results/tables/table4_ablations.log",
    conda:
        "../../envs/torch.yaml"  # the t-interval needs scipy
    params:
        baseline=ABLATION["baseline"],
        ci=ABLATION["ci"],
        preset=config["preset"],
    script:
        "../scripts/ablation_table.py"


rule ablation_figure:
    """fig_ablations: each metric per variant with every seed, and a row of samples per variant from a fixed z."""
    input:
        scores=ablation_scores(),
    output:
        png=report(
            "results/figures/fig_ablations.png",
            caption="../report/fig_ablations.rst",
            category="Figures",
            labels={"figure": "fig_ablations"},
        ),
        pdf="results/figures/fig_ablations.pdf",
    log:
        "logs/results/figures/fig_ablations.log",
    conda:
        "../../envs/torch.yaml"
    params:
        order=list(ABLATION["variants"]),
        baseline=ABLATION["baseline"],
        runs={v: ABLATION_RUNS[v, str(ABLATION["seeds"][0])].run for v in ABLATION["variants"]},
        sample_seed=ABLATION["sample_seed"],
        preset=config["preset"],
    script:
        "../scripts/ablation_figure.py"
