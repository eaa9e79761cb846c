"""Rule ``ablation_score``: the metrics of one variant x seed run (docs/ABLATIONS.md).

- MNIST runs (class-conditional): Table 3's 1-NN test error, with the epoch chosen on the validation split exactly
  as for Table 3 (``mnist_eval.protocol.select_epoch``, then ``evaluate_generated`` on ``ablation.nn_samples``
  samples), and the Frechet distance in the workflow's MNIST classifier's features (:mod:`.frechet`) of that epoch;
- 64x64 runs: FID of the final generator through torch-fidelity (:mod:`.fid`);
- every run: the stability measures of its training (:mod:`.stability`, computed by rule ``ablation_train``).

A run the training health checks stopped has no generator to score: its metrics are null and its status says why.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from dcgan_repro import io, models, runtime
from dcgan_repro.ablation import fid as fid_mod
from dcgan_repro.ablation import frechet
from dcgan_repro.ablation.plan import kind_of

log = logging.getLogger(__name__)


def score_run(*, train_json: io.PathLike, data_dir: io.PathLike, out_json: io.PathLike, run: dict[str, Any],
              eval_cfg: dict[str, Any], ablation: dict[str, Any], common: dict[str, Any],
              classifier: io.PathLike | None = None, classifier_json: io.PathLike | None = None,
              fid_weights: io.PathLike | None = None) -> dict[str, Any]:
    t0 = time.time()
    outcome = io.read_json(train_json)
    out_dir = Path(out_json).parent
    kind = kind_of(run)
    rec: dict[str, Any] = {k: outcome[k] for k in ("variant", "seed", "run_name", "change", "change_text", "claim",
                                                    "status", "train_time_s", "stability")}
    rec.update(kind=kind, nn_test_error_pct=None, nn_validation_error_pct=None, epoch=None, fd=None, fid=None,
               classifier_test_accuracy_pct=None, classifier_accuracy_on_samples_pct=None)
    device = runtime.resolve_device(common["device"])
    inputs: dict[str, Any] = {"train": train_json}
    if outcome["status"] == "finished" and kind == "mnist":
        from dcgan_repro.mnist_eval import protocol

        model, summary = outcome["model"], outcome["summary"]
        sel_path, nn_path = out_dir / "selection.json", out_dir / "nn.json"
        protocol.select_epoch(model, summary, data_dir, eval_cfg, sel_path, common, run=run)
        nn = protocol.evaluate_generated(model, data_dir, int(ablation["nn_samples"]), eval_cfg, nn_path, common,
                                         column="ablation", run=run, selection=sel_path)
        netG, _, ckpt = models.load_checkpoint(protocol.selected_model(sel_path), device, run=run)
        fd = frechet.fd_of_generator(netG, models.z_dist(ckpt["run"]), frechet.load_classifier(classifier), data_dir,
                                     int(ablation["fd_samples"]), int(eval_cfg["seed"]), int(run["batch_size"]),
                                     device)
        cls = io.read_json(classifier_json)
        rec.update(nn_test_error_pct=nn["test_error_pct"], nn_validation_error_pct=nn["validation_error_pct"],
                   epoch=nn["epoch"], epochs_trained=nn["epochs_trained"], fd=fd["fd"],
                   classifier_test_accuracy_pct=cls["test_accuracy_pct"],
                   classifier_accuracy_on_samples_pct=fd["classifier_accuracy_on_samples_pct"],
                   nn_result=str(nn_path), selection=str(sel_path), selected_model=protocol.selected_model(sel_path))
        inputs.update(model=model, classifier=classifier)
    elif outcome["status"] == "finished":
        w = fid_mod.ensure_weights(fid_weights)
        netG, _, ckpt = models.load_checkpoint(outcome["model"], device, run=run)
        n = int(ablation["fid"]["samples"])
        gen = models.generate(netG, n, z_dist=models.z_dist(ckpt["run"]), seed=int(eval_cfg["seed"]),
                              batch_size=int(run["batch_size"]), device=device)
        real, _ = io.read_dataset(data_dir, "train")
        real = np.asarray(real[:n])
        rec.update(fid=fid_mod.fid(gen, real, weights=w["path"], batch_size=int(ablation["fid"]["batch_size"]),
                                   cuda=device.type == "cuda"),
                   fid_weights=w, n_generated=n, n_real=len(real), epoch=int(ckpt["epoch"]),
                   selected_model=outcome["model"])
        inputs.update(model=outcome["model"])
    rec["stand_in"] = io.read_meta(data_dir).get("stand_in")
    rec["provenance"] = io.provenance(config={"run": run, "ablation": ablation, "mnist_eval": eval_cfg,
                                              "common": common}, seed=int(outcome["seed"]), inputs=inputs, started=t0)
    io.write_json(out_json, rec)
    log.info("variant %s seed %s: %s, 1-NN error %s, FD %s, FID %s", rec["variant"], rec["seed"], rec["status"],
             rec["nn_test_error_pct"], rec["fd"], rec["fid"])
    return rec
