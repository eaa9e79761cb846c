# Stage: MNIST 1-nearest-neighbour evaluation (Sec. 5.3, Table 3; dcgan_repro.mnist_eval).


rule mnist_eval_select_epoch:
    """Model selection on the validation split only: the snapshot epoch with the lowest validation 1-NN error."""
    input:
        model=lambda w: model_path(w.run),
        summary="results/models/{run}/train_summary.json",
        data=dataset_dir("mnist"),
    output:
        "results/mnist_eval/{run}_selection.json",
    log:
        "logs/results/mnist_eval/{run}_selection.log",
    benchmark:
        "logs/benchmarks/mnist_eval/{run}_selection.tsv"
    wildcard_constraints:
        run="|".join(MNIST_MODELS),
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    params:
        mnist_eval=config["mnist_eval"],
        run=lambda w: config["runs"][w.run],
        common=common_params(),
    script:
        "../scripts/mnist_eval_select_epoch.py"


rule mnist_eval_generated:
    """Exact 1-NN fitted on generated class-conditional samples (the selected epoch), streamed; real test
    images classified once per reported number."""
    input:
        model=lambda w: model_path(w.run),
        selection="results/mnist_eval/{run}_selection.json",
        data=dataset_dir("mnist"),
    output:
        "results/mnist_eval/{run}_nn{size}.json",
    log:
        "logs/results/mnist_eval/{run}_nn{size}.log",
    benchmark:
        "logs/benchmarks/mnist_eval/{run}_nn{size}.tsv"
    wildcard_constraints:
        run="|".join(MNIST_MODELS),
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    params:
        n_samples=lambda w: config["mnist_eval"]["sample_counts"][w.size],
        column=lambda w: w.size,
        mnist_eval=config["mnist_eval"],
        run=lambda w: config["runs"][w.run],
        common=common_params(),
    script:
        "../scripts/mnist_eval_generated.py"


rule mnist_eval_real:
    """Table 3 'Real Data' row: 1-NN fitted on real training images (all 60k, and the 50k split)."""
    input:
        dataset_dir("mnist"),
    output:
        "results/mnist_eval/real_nn.json",
    log:
        "logs/results/mnist_eval/real_nn.log",
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,  # the 1-NN search runs on the configured device (a GPU when there is one)
        runtime=60,
        mem_mb=8000,
    params:
        mnist_eval=config["mnist_eval"],
        common=common_params(),
    script:
        "../scripts/mnist_eval_real.py"
