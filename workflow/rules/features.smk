# Stage: discriminator feature extraction (Sec. 5.1; dcgan_repro.features): 28672-d for the ImageNet D.


rule features_extract:
    input:
        model=lambda w: model_path(FEATURE_SETS[w.dataset]),
        data=lambda w: dataset_dir(w.dataset),
    output:
        "results/features/{dataset}/{split}.npy",
    log:
        "logs/results/features/{dataset}/{split}.log",
    benchmark:
        "logs/benchmarks/features/{dataset}_{split}.tsv"
    wildcard_constraints:
        dataset="|".join(FEATURE_SETS),
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=16000,
    params:
        features=config["features"],
        common=common_params(),
    script:
        "../scripts/features_extract.py"


rule features_kmeans:
    """Table 1 baseline: single-layer K-means features of CIFAR-10 (Coates et al. 2011), 4k dims."""
    input:
        data=dataset_dir("cifar10"),
    output:
        train=f"results/features/{KMEANS_FEATURES}/train.npy",
        test=f"results/features/{KMEANS_FEATURES}/test.npy",
        dictionary=f"results/features/{KMEANS_FEATURES}/dictionary.npz",
    log:
        f"logs/results/features/{KMEANS_FEATURES}/kmeans.log",
    benchmark:
        f"logs/benchmarks/features/{KMEANS_FEATURES}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=16000,
    params:
        kmeans=config["kmeans"],
        common=common_params(),
    script:
        "../scripts/features_kmeans.py"
