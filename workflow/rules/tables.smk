# Stage: tables 1-3 (dcgan_repro.tables), built only from result files, with the paper's numbers beside ours.


rule tables_table1_cifar10:
    input:
        results=list(table_svm_results("cifar10").values()),
        data=dataset_dir("cifar10"),
    output:
        csv="results/tables/table1_cifar10.csv",
        md="results/tables/table1_cifar10.md",
    log:
        "logs/results/tables/table1_cifar10.log",
    conda:
        "../../envs/tables.yaml"
    params:
        preset=config["preset"],
    script:
        "../scripts/tables_table1_cifar10.py"


rule tables_table2_svhn:
    input:
        results=list(table_svm_results("svhn").values()),
        cnn="results/svm/supervised_cnn_svhn_1000.json",
        data=dataset_dir("svhn"),
    output:
        csv="results/tables/table2_svhn.csv",
        md="results/tables/table2_svhn.md",
    log:
        "logs/results/tables/table2_svhn.log",
    conda:
        "../../envs/tables.yaml"
    params:
        preset=config["preset"],
    script:
        "../scripts/tables_table2_svhn.py"


rule tables_table3_mnist:
    input:
        generated=expand("results/mnist_eval/{run}_nn{size}.json", run=MNIST_MODELS, size=MNIST_COUNTS),
        real="results/mnist_eval/real_nn.json",
        data=dataset_dir("mnist"),
    output:
        csv="results/tables/table3_mnist.csv",
        md="results/tables/table3_mnist.md",
    log:
        "logs/results/tables/table3_mnist.log",
    conda:
        "../../envs/tables.yaml"
    params:
        preset=config["preset"],
    script:
        "../scripts/tables_table3_mnist.py"


rule tables_curation_checks:
    """The dedup and face-detection checks on real photos (config checks) as one table."""
    input:
        unpack(curation_check_results),
    output:
        csv="results/tables/curation_checks.csv",
        md="results/tables/curation_checks.md",
    log:
        "logs/results/tables/curation_checks.log",
    conda:
        "../../envs/tables.yaml"
    params:
        preset=config["preset"],
    script:
        "../scripts/tables_curation_checks.py"


rule tables_index:
    """results/tables/README.md: what each table reproduces, and from which preset and data."""
    input:
        [f"results/tables/{t}.csv" for t in TABLES],
    output:
        "results/tables/README.md",
    log:
        "logs/results/tables/index.log",
    conda:
        "../../envs/tables.yaml"
    params:
        preset=config["preset"],
    script:
        "../scripts/tables_index.py"


rule tables_views:
    """results/tables/<table>.{tex,html}: LaTeX for a paper, HTML for snakemake --report, from the CSV."""
    input:
        csv="results/tables/{table}.csv",
    output:
        tex=report(
            "results/tables/{table}.tex",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "LaTeX"},
        ),
        html=report(
            "results/tables/{table}.html",
            caption="../report/table.rst",
            category="Tables",
            labels={"table": "{table}", "format": "HTML"},
        ),
    log:
        "logs/results/tables/{table}_views.log",
    wildcard_constraints:
        table="|".join(TABLES),
    conda:
        "../../envs/tables.yaml"
    params:
        name=lambda w: w.table,
        preset=config["preset"],
    script:
        "../scripts/tables_views.py"
