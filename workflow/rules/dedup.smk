# Stage: LSUN de-duplication with a denoising-autoencoder semantic hash (Sec. 4.1.1; dcgan_repro.dedup).


rule dedup_train_autoencoder:
    input:
        dataset_dir("lsun_raw"),
    output:
        "results/dedup/autoencoder.pt",
    log:
        "logs/results/dedup/autoencoder.log",
    benchmark:
        "logs/benchmarks/dedup/train_autoencoder.tsv"
    conda:
        "../../envs/torch.yaml"
    # Small linear layers: on the CPU (demo) one thread each is fastest on a shared box; a GPU run feeds it with 4.
    threads: 1 if config["device"] == "cpu" else 4
    resources:
        gpu=1,
        runtime=6 * 60,
        mem_mb=16000,
    params:
        dedup=config["dedup"],
        common=common_params(),
    script:
        "../scripts/dedup_train_autoencoder.py"


rule dedup_hash_shard:
    """Scatter: binary codes for one contiguous shard of the collection."""
    input:
        data=dataset_dir("lsun_raw"),
        model="results/dedup/autoencoder.pt",
    output:
        "results/dedup/shards/{shard}.npz",
    log:
        "logs/results/dedup/shards/{shard}.log",
    benchmark:
        "logs/benchmarks/dedup/hash_{shard}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 1 if config["device"] == "cpu" else 2
    resources:
        gpu=1,  # device auto: the autoencoder runs on a GPU where there is one
        runtime=15,  # one shard, seconds of work at paper scale (profiles/slurm runs 16 in one job)
        mem_mb=4000,
    params:
        shard=lambda w: int(w.shard),
        shards=config["dedup"]["shards"],
        dedup=config["dedup"],
        common=common_params(),
    script:
        "../scripts/dedup_hash_shard.py"


rule dedup_gather:
    """Gather: bucket equal codes, keep one image per bucket, write the de-duplicated dataset."""
    input:
        data=dataset_dir("lsun_raw"),
        shards=expand("results/dedup/shards/{shard}.npz", shard=shard_ids("dedup")),
    output:
        data=directory(dataset_dir("lsun")),
        summary="results/dedup/summary.json",
        kept="results/dedup/kept.txt",
        removed="results/dedup/removed.csv",
        sheet="results/dedup/collisions.png",
    log:
        "logs/results/dedup/gather.log",
    benchmark:
        "logs/benchmarks/dedup/gather.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        runtime=120,
        mem_mb=8000,  # codes (16 bytes per image) in memory; the images are copied in chunks
    params:
        dedup=config["dedup"],
        preset=config["preset"],
    script:
        "../scripts/dedup_gather.py"


rule dedup_check:
    """The hash of config dedup on real photos with planted duplicates: precision, recall, false-positive rate."""
    input:
        config["checks"]["dedup"]["photos"] or [],
    output:
        "results/dedup/check.json",
    log:
        "logs/results/dedup/check.log",
    benchmark:
        "logs/benchmarks/dedup/check.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: 2
    resources:
        runtime=60,
        mem_mb=8000,
    params:
        dedup=config["dedup"],
        check=config["checks"]["dedup"],
        common=common_params(),
    script:
        "../scripts/dedup_check.py"
