# Stage: figures 2-11 (dcgan_repro.figures). Each writes PNG + PDF; captions name dataset, model, preset, epoch.


rule figures_sample_sheet:
    """Figs. 2, 3, 10, 11: a grid of generated samples from a run's generator."""
    input:
        model=lambda w: model_path(SAMPLE_SHEETS[w.sheet][0]),
        data=lambda w: train_dataset_dir(SAMPLE_SHEETS[w.sheet][0]),
    output:
        png=report(
            "results/figures/{sheet}.png",
            caption="../report/sample_sheet.rst",
            category="Figures",
            labels={"figure": "{sheet}"},
        ),
        pdf="results/figures/{sheet}.pdf",
    log:
        "logs/results/figures/{sheet}.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        run=lambda w: SAMPLE_SHEETS[w.sheet][0],
        epoch=lambda w: SAMPLE_SHEETS[w.sheet][1],
        figure=lambda w: w.sheet,
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_sample_sheet.py"


rule figures_fig04_interpolation:
    input:
        model=model_path(config["figures"]["interp_run"]),
        data=train_dataset_dir(config["figures"]["interp_run"]),
    output:
        png=report(
            "results/figures/fig04_interpolation.png",
            caption="../report/fig04_interpolation.rst",
            category="Figures",
            labels={"figure": "fig04_interpolation"},
        ),
        pdf="results/figures/fig04_interpolation.pdf",
    log:
        "logs/results/figures/fig04_interpolation.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_fig04_interpolation.py"


rule figures_fig05_guided_backprop:
    input:
        model=model_path(config["figures"]["guided_run"]),
        data=train_dataset_dir(config["figures"]["guided_run"]),
    output:
        png=report(
            "results/figures/fig05_guided_backprop.png",
            caption="../report/fig05_guided_backprop.rst",
            category="Figures",
            labels={"figure": "fig05_guided_backprop"},
        ),
        pdf="results/figures/fig05_guided_backprop.pdf",
    log:
        "logs/results/figures/fig05_guided_backprop.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_fig05_guided_backprop.py"


rule figures_fig06_window_dropout:
    input:
        model=model_path(config["figures"]["window_run"]),
        data=train_dataset_dir(config["figures"]["window_run"]),
    output:
        png=report(
            "results/figures/fig06_window_dropout.png",
            caption="../report/fig06_window_dropout.rst",
            category="Figures",
            labels={"figure": "fig06_window_dropout"},
        ),
        pdf="results/figures/fig06_window_dropout.pdf",
        stats="results/figures/fig06_window_dropout.json",
    log:
        "logs/results/figures/fig06_window_dropout.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_fig06_window_dropout.py"


rule figures_fig07_vector_arithmetic:
    input:
        model=model_path("faces"),
        data=train_dataset_dir("faces"),
    output:
        png=report(
            "results/figures/fig07_vector_arithmetic.png",
            caption="../report/fig07_vector_arithmetic.rst",
            category="Figures",
            labels={"figure": "fig07_vector_arithmetic"},
        ),
        pdf="results/figures/fig07_vector_arithmetic.pdf",
        stats="results/figures/fig07_vector_arithmetic.json",
        table="results/figures/fig07_vector_arithmetic.csv",
    log:
        "logs/results/figures/fig07_vector_arithmetic.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_fig07_vector_arithmetic.py"


rule figures_fig08_turn_vector:
    input:
        model=model_path("faces"),
        data=train_dataset_dir("faces"),
    output:
        png=report(
            "results/figures/fig08_turn_vector.png",
            caption="../report/fig08_turn_vector.rst",
            category="Figures",
            labels={"figure": "fig08_turn_vector"},
        ),
        pdf="results/figures/fig08_turn_vector.pdf",
        stats="results/figures/fig08_turn_vector.json",
        table="results/figures/fig08_turn_vector.csv",
    log:
        "logs/results/figures/fig08_turn_vector.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_fig08_turn_vector.py"


rule figures_fig09_mnist_samples:
    input:
        dcgan=model_path("mnist_dcgan"),
        gan=model_path("mnist_gan"),
        # the epochs Table 3 reports (chosen on the validation split)
        dcgan_selection="results/mnist_eval/mnist_dcgan_selection.json",
        gan_selection="results/mnist_eval/mnist_gan_selection.json",
        data=dataset_dir("mnist"),
    output:
        png=report(
            "results/figures/fig09_mnist_samples.png",
            caption="../report/fig09_mnist_samples.rst",
            category="Figures",
            labels={"figure": "fig09_mnist_samples"},
        ),
        pdf="results/figures/fig09_mnist_samples.pdf",
    log:
        "logs/results/figures/fig09_mnist_samples.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_fig09_mnist_samples.py"


rule figures_authors_svhn_samples:
    """Samples of the authors' released SVHN G in our generator (only when config weights.svhn is set); its files are
    verified against the release's git blob ids first."""
    output:
        png=report(
            "results/figures/authors_svhn_samples.png",
            caption="../report/authors_svhn_samples.rst",
            category="Figures",
            labels={"figure": "authors_svhn_samples"},
        ),
        pdf="results/figures/authors_svhn_samples.pdf",
    log:
        "logs/results/figures/authors_svhn_samples.log",
    conda:
        "../../envs/torch.yaml"
    resources:
        gpu=1,  # loads a generator on config device (a GPU where there is one)
    params:
        weights=config["weights"]["svhn"],
        figures=config["figures"],
        common=common_params(),
    script:
        "../scripts/figures_authors_svhn_samples.py"
