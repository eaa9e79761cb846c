# Stage: figures 2-11 (dcgan_repro.plots). Each writes PNG + PDF; captions name dataset, model, preset, epoch.


rule sample_sheet:
    """Figs. 2, 3, 10, 11: a grid of generated samples from a run's generator."""
    input:
        model=lambda w: model_path(SAMPLE_SHEETS[w.sheet][0]),
        data=lambda w: train_dataset_dir(SAMPLE_SHEETS[w.sheet][0]),
    output:
        png="results/figures/{sheet}.png",
        pdf="results/figures/{sheet}.pdf",
    params:
        run=lambda w: SAMPLE_SHEETS[w.sheet][0],
        epoch=lambda w: SAMPLE_SHEETS[w.sheet][1],
        figure=lambda w: w.sheet,
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/{sheet}.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/sample_sheet.py"


rule fig04_interpolation:
    input:
        model=model_path("lsun"),
        data=train_dataset_dir("lsun"),
    output:
        png="results/figures/fig04_interpolation.png",
        pdf="results/figures/fig04_interpolation.pdf",
    params:
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/fig04_interpolation.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fig04_interpolation.py"


rule fig05_guided_backprop:
    input:
        model=model_path("lsun"),
        data=train_dataset_dir("lsun"),
    output:
        png="results/figures/fig05_guided_backprop.png",
        pdf="results/figures/fig05_guided_backprop.pdf",
    params:
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/fig05_guided_backprop.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fig05_guided_backprop.py"


rule fig06_window_dropout:
    input:
        model=model_path("lsun"),
        data=train_dataset_dir("lsun"),
    output:
        png="results/figures/fig06_window_dropout.png",
        pdf="results/figures/fig06_window_dropout.pdf",
        stats="results/figures/fig06_window_dropout.json",
    params:
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/fig06_window_dropout.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fig06_window_dropout.py"


rule fig07_vector_arithmetic:
    input:
        model=model_path("faces"),
        data=train_dataset_dir("faces"),
    output:
        png="results/figures/fig07_vector_arithmetic.png",
        pdf="results/figures/fig07_vector_arithmetic.pdf",
    params:
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/fig07_vector_arithmetic.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fig07_vector_arithmetic.py"


rule fig08_turn_vector:
    input:
        model=model_path("faces"),
        data=train_dataset_dir("faces"),
    output:
        png="results/figures/fig08_turn_vector.png",
        pdf="results/figures/fig08_turn_vector.pdf",
    params:
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/fig08_turn_vector.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fig08_turn_vector.py"


rule fig09_mnist_samples:
    input:
        dcgan=model_path("mnist_dcgan"),
        gan=model_path("mnist_gan"),
        data=dataset_dir("mnist"),
    output:
        png="results/figures/fig09_mnist_samples.png",
        pdf="results/figures/fig09_mnist_samples.pdf",
    params:
        figures=config["figures"],
        common=common_params(),
    log:
        "logs/results/figures/fig09_mnist_samples.log",
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fig09_mnist_samples.py"
