# Stage: L2-SVM on discriminator features (Sec. 5.1, 5.2; dcgan_repro.svm), on the K-means baseline's features
# (Table 1) and the supervised CNN baseline.


rule svm_fit:
    input:
        unpack(svm_inputs),
    output:
        "results/svm/{protocol}.json",
    log:
        "logs/results/svm/{protocol}.log",
    benchmark:
        "logs/benchmarks/svm/{protocol}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,  # svm.solver torch runs on the configured device (a GPU when there is one)
        runtime=6 * 60,
        mem_mb=features_mem_mb,
    params:
        protocol=lambda w: w.protocol,
        svm=config["svm"],
        common=common_params(),
        # the D whose feature length the files must have (None: not D features, e.g. the K-means baseline)
        feature_model=lambda w: svm_feature_model(w.protocol),
        feature_pool=config["features"]["pool"],
    script:
        "../scripts/svm_fit.py"


rule svm_supervised_cnn:
    """Table 2 baseline: the SVHN D architecture trained on the same 1000 labels, random search."""
    input:
        dataset_dir("svhn"),
    output:
        "results/svm/supervised_cnn_svhn_1000.json",
    log:
        "logs/results/svm/supervised_cnn_svhn_1000.log",
    benchmark:
        "logs/benchmarks/svm/supervised_cnn.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        runtime=12 * 60,
        mem_mb=16000,
    params:
        supervised_cnn=config["supervised_cnn"],
        svm=config["svm"],
        run=config["runs"]["svhn"],
        common=common_params(),
    script:
        "../scripts/svm_supervised_cnn.py"
