# Stage: data download (where the network is) and ingest into the common .npy training format (dcgan_repro.data).
# Downloads are local rules: under SLURM they run on the submit host, since compute nodes often have no internet.
# `snakemake --until data_download` fetches everything first (e.g. on a login node); ingest reads local files only.


localrules:
    data_download,


rule data_download:
    """Fetch one dataset into its data.<name>.path (adding files, never deleting), verify each file, record it."""
    output:
        download_record("{name}"),
    log:
        f"logs/{DATA}/checksums/download_{{name}}.log",
    wildcard_constraints:
        name="|".join(DOWNLOADS) or "(?!)",
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=2000,
    params:
        # what decides the files (changing max_images or image_size must not fetch or verify again)
        data=lambda w: {k: v for k, v in config["data"][w.name].items() if k in ("source", "path", "category")},
        ledger=f"{DATA}/checksums/lsun_raw.json",  # LSUN's first-seen sha256 ledger, shared with data_ingest
    script:
        "../scripts/data_download.py"


rule data_ingest:
    """Read a downloaded (verified) or user-supplied copy of one dataset, or build its demo stand-in."""
    input:
        unpack(ingest_inputs),
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
    threads: ingest_threads  # 8 decode LSUN, ImageNet or a folder of faces (capped at --cores); else 1
    resources:
        runtime=24 * 60,
        mem_mb=16000,
    params:
        data=lambda w: ingest_cfg(w.dataset),
        seed=config["data"]["seed"],
    script:
        "../scripts/data_ingest.py"
