# Stage: data download / ingest into the common .npy training format (dcgan_repro.data).


rule data_ingest:
    """Download (or read a user-supplied copy of, or build the demo stand-in for) one dataset."""
    output:
        directory(f"{DATA}/{{dataset}}"),
    log:
        f"logs/{DATA}/{{dataset}}.log",
    benchmark:
        f"logs/benchmarks/data/{{dataset}}.tsv"
    wildcard_constraints:
        dataset="|".join(INGESTED_DATASETS),
    conda:
        "../../envs/torch.yaml"
    # image decoding threads for real LSUN / ImageNet / face folders (capped at --cores); demo sources need one
    threads: lambda w: 1 if ingest_cfg(w.dataset)["source"] == "demo" else 8
    resources:
        runtime=24 * 60,
        mem_mb=16000,
    params:
        data=lambda w: ingest_cfg(w.dataset),
        seed=config["data"]["seed"],
    script:
        "../scripts/data_ingest.py"
