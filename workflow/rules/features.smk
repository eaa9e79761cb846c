# Stage: discriminator feature extraction (Sec. 5.1; dcgan_repro.features): 28672-d for the ImageNet D.


rule extract_features:
    input:
        model=lambda w: model_path(FEATURE_SETS[w.dataset]),
        data=lambda w: dataset_dir(w.dataset),
    output:
        "results/features/{dataset}/{split}.npy",
    wildcard_constraints:
        dataset="|".join(FEATURE_SETS),
    params:
        features=config["features"],
        common=common_params(),
    log:
        "logs/results/features/{dataset}/{split}.log",
    benchmark:
        "logs/benchmarks/features/{dataset}_{split}.tsv"
    threads: 4
    resources:
        gpu=1,
        runtime=120,
        mem_mb=16000,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/extract_features.py"
