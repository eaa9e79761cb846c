# Stage: MNIST 1-nearest-neighbour evaluation (Sec. 5.3, Table 3; dcgan_repro.nn_eval).


rule nn_eval_generated:
    """Exact 1-NN fitted on generated class-conditional samples, streamed; real test images classified."""
    input:
        model=lambda w: model_path(w.run),
        data=dataset_dir("mnist"),
    output:
        "results/mnist/{run}_nn{size}.json",
    wildcard_constraints:
        run="|".join(MNIST_MODELS),
    params:
        n_samples=lambda w: config["mnist_eval"]["sample_counts"][w.size],
        column=lambda w: w.size,
        eval=config["mnist_eval"],
        run=lambda w: config["runs"][w.run],
        common=common_params(),
    log:
        "logs/results/mnist/{run}_nn{size}.log",
    benchmark:
        "logs/benchmarks/mnist/{run}_nn{size}.tsv"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=8000,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/nn_eval_generated.py"


rule nn_eval_real:
    """Table 3 'Real Data' row: 1-NN fitted on real training images (all 60k, and the 50k split)."""
    input:
        dataset_dir("mnist"),
    output:
        "results/mnist/real_nn.json",
    params:
        eval=config["mnist_eval"],
        common=common_params(),
    log:
        "logs/results/mnist/real_nn.log",
    threads: 4
    resources:
        runtime=60,
        mem_mb=8000,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/nn_eval_real.py"
