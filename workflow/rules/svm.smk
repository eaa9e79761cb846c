# Stage: L2-SVM on discriminator features (Sec. 5.1, 5.2; dcgan_repro.svm) and the supervised CNN baseline.


rule fit_svm:
    input:
        train=lambda w: f"results/features/{SVM_PROTOCOLS[w.protocol]}/train.npy",
        test=lambda w: f"results/features/{SVM_PROTOCOLS[w.protocol]}/test.npy",
        data=lambda w: dataset_dir(SVM_PROTOCOLS[w.protocol]),
    output:
        "results/svm/{protocol}.json",
    params:
        protocol=lambda w: w.protocol,
        svm=config["svm"],
        common=common_params(),
    log:
        "logs/results/svm/{protocol}.log",
    benchmark:
        "logs/benchmarks/svm/{protocol}.tsv"
    threads: 4
    resources:
        runtime=120,
        mem_mb=16000,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/fit_svm.py"


rule train_supervised_cnn:
    """Table 2 baseline: the SVHN D architecture trained on the same 1000 labels, random search."""
    input:
        dataset_dir("svhn"),
    output:
        "results/svm/supervised_cnn_svhn_1000.json",
    params:
        cnn=config["supervised_cnn"],
        svm=config["svm"],
        model=config["runs"]["svhn"],
        common=common_params(),
    log:
        "logs/results/svm/supervised_cnn_svhn_1000.log",
    benchmark:
        "logs/benchmarks/svm/supervised_cnn.tsv"
    threads: 4
    resources:
        gpu=1,
        runtime=24 * 60,
        mem_mb=16000,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_supervised_cnn.py"
