# Stage: DCGAN training (Sec. 3, 4; dcgan_repro.train). Resumes from resources/checkpoints/{run} after a kill.


rule train_gan:
    input:
        lambda w: train_dataset_dir(w.run),
    output:
        model="results/models/{run}/model.pt",
        summary="results/models/{run}/train_summary.json",
    params:
        run=lambda w: config["runs"][w.run],
        name=lambda w: w.run,
        checkpoint_dir=lambda w: f"resources/checkpoints/{w.run}",
        common=common_params(),
    log:
        "logs/results/models/{run}/train.log",
    benchmark:
        "logs/benchmarks/train/{run}.tsv"
    threads: 4
    resources:
        gpu=1,
        runtime=lambda w, attempt: 24 * 60 * attempt,
        mem_mb=32000,
    script:
        "../scripts/train_gan.py"
