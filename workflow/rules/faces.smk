# Stage: face detection and cropping with OpenCV's Haar cascade (Sec. 4.2; dcgan_repro.faces).
# conda: envs/opencv.yaml (OpenCV < 5, NumPy, Pillow): the face rules never import torch.


rule faces_detect_shard:
    """Scatter: detect faces in one shard of the source images; boxes JSON + 64x64 crops."""
    input:
        dataset_dir("faces_raw"),
    output:
        boxes="results/faces/shards/{shard}.json",
        crops="resources/faces_shards/{shard}.npy",
    log:
        "logs/results/faces/shards/{shard}.log",
    benchmark:
        "logs/benchmarks/faces/detect_{shard}.tsv"
    conda:
        "../../envs/opencv.yaml"
    resources:
        runtime=20,  # one shard (CelebA: ~3,200 photos, about a minute; profiles/slurm runs 16 in one job)
        mem_mb=4000,
    params:
        shard=lambda w: int(w.shard),
        shards=config["faces"]["shards"],
        faces=config["faces"],
    script:
        "../scripts/faces_detect_shard.py"


rule faces_gather:
    """Gather: concatenate crops into the faces training set; counts and reasons in a summary."""
    input:
        source=dataset_dir("faces_raw"),
        boxes=expand("results/faces/shards/{shard}.json", shard=shard_ids("faces")),
        crops=expand("resources/faces_shards/{shard}.npy", shard=shard_ids("faces")),
    output:
        data=directory(dataset_dir("faces")),
        summary="results/faces/summary.json",
    log:
        "logs/results/faces/gather.log",
    conda:
        "../../envs/opencv.yaml"
    resources:
        runtime=60,
        mem_mb=crops_mem_mb,
    params:
        faces=config["faces"],
        preset=config["preset"],
    script:
        "../scripts/faces_gather.py"


rule faces_check:
    """The detector of config faces on images with a known face box: recall and false detections."""
    input:
        config["checks"]["faces"]["composites"] or [],
    output:
        "results/faces/check.json",
    log:
        "logs/results/faces/check.log",
    conda:
        "../../envs/opencv.yaml"
    resources:
        runtime=30,
        mem_mb=4000,
    params:
        faces=config["faces"],
        common=common_params(),
    script:
        "../scripts/faces_check.py"
