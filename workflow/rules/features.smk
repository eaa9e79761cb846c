# Stage: features for the L2-SVM (Sec. 5.1; dcgan_repro.features): a discriminator's (28672-d for the ImageNet D),
# trained here or released by the authors; raw pixels; and Table 1's K-means baseline (dcgan_repro.kmeans).


rule features_extract:
    """{source}: trained (this workflow's run), released (the authors' D, verified first) or pixels."""
    input:
        unpack(feature_inputs),
    output:
        features="results/features/{dataset}_{source}/{split}.npy",
        about="results/features/{dataset}_{source}/{split}.json",
    log:
        "logs/results/features/{dataset}_{source}/{split}.log",
    benchmark:
        "logs/benchmarks/features/{dataset}_{source}_{split}.tsv"
    wildcard_constraints:
        dataset="|".join(FEATURE_RUNS),
        source="|".join(registry.EXTRACTED),
    conda:
        "../../envs/torch.yaml"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=16000,
    params:
        source=lambda w: w.source,
        features=extraction_settings(),
        run=lambda w: FEATURE_RUNS[w.dataset],
        epoch=lambda w: config["features"]["trained_epoch"][w.dataset] if w.source == registry.TRAINED else 0,
        released=lambda w: released_d(w.dataset) if w.source == registry.RELEASED else None,
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
        runtime=4 * 60,
        mem_mb=16000,
    params:
        kmeans=config["kmeans"],
        common=common_params(),
    script:
        "../scripts/features_kmeans.py"
