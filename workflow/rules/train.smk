# Stage: DCGAN training (Sec. 3, 4; dcgan_repro.train). Resumes from resources/checkpoints/{run} after a kill.


rule train_gan:
    input:
        lambda w: train_dataset_dir(w.run),
    output:
        model="results/models/{run}/model.pt",
        summary="results/models/{run}/train_summary.json",
    log:
        "logs/results/models/{run}/train.log",
    benchmark:
        "logs/benchmarks/train/{run}.tsv"
    conda:
        "../../envs/torch.yaml"
    # On a GPU a few CPU threads feed it; on the CPU (demo) the nets are too small for intra-op threads to pay
    # (measured: 2 threads slower than 1 on a loaded 2-core box), so runs go one thread each, side by side.
    threads: 1 if config["device"] == "cpu" else 4
    resources:
        gpu=1,
        runtime=24 * 60,  # within common partition limits; a retry resumes from the newest checkpoint
        mem_mb=lambda w, input: sizing.train_mem_mb(config, input[0]),  # 6 GB + the memory-mapped array
    params:
        run=lambda w: config["runs"][w.run],
        name=lambda w: w.run,
        checkpoint_dir=lambda w: f"resources/checkpoints/{w.run}",
        common=common_params(),
        holdout=lambda w: mnist_holdout(w.run),
    script:
        "../scripts/train_gan.py"
