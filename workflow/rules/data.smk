# Stage: data download / ingest into the common .npy training format (dcgan_repro.data).


rule ingest:
    """Download (or read a user-supplied copy of, or build the demo stand-in for) one dataset."""
    output:
        directory(f"{DATA}/{{dataset}}"),
    wildcard_constraints:
        dataset="mnist|cifar10|svhn|lsun_raw|imagenet|faces_raw",
    params:
        data=lambda w: config["data"][
            {"lsun_raw": "lsun", "faces_raw": "faces"}.get(w.dataset, w.dataset)
        ],
        seed=0,
    log:
        f"logs/{DATA}/{{dataset}}.log",
    benchmark:
        f"logs/benchmarks/ingest/{{dataset}}.tsv"
    threads: 8  # image decoding threads (LSUN, ImageNet, face folders); Snakemake caps it at --cores
    resources:
        runtime=24 * 60,
        mem_mb=16000,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/ingest.py"
