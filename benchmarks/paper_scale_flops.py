"""GPU-hours of each paper-scale training run, estimated from FLOP counts (not a timing: nothing here is measured).

For every run of config.yaml (``runs.<name>`` merged with ``run_defaults``) it builds the nets, counts the
matrix-multiply and convolution FLOPs of one D step and one G step of the training step itself
(:class:`dcgan_repro.train.GanStep`, forward and backward, with ``torch.utils.flop_counter``), and multiplies by
the schedule: the ``paper`` recipe alternates G and D minibatches, so an epoch of N images is N / batch_size steps,
half of each kind. Elementwise work (batchnorm, activations, Adam) is not counted. GPU-hours follow from an assumed
sustained throughput (``--tflops``, default 15 TFLOP/s: an A100-class GPU running these small convolutions in
TF32 at a tenth of its peak); rescale by the measured rate once a GPU run records it (train_summary.json).

    .venv/bin/python benchmarks/paper_scale_flops.py            # the table in docs/PAPER_SCALE.md
    .venv/bin/python benchmarks/paper_scale_flops.py --tflops 50 --json flops.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcgan_repro import config as cfg_mod  # noqa: E402
from dcgan_repro import models, train  # noqa: E402

# Training images per run at paper scale: official split sizes; LSUN and the faces before dedup / detection
# (upper bounds: dedup removes a few per cent, detection keeps one crop per CelebA photo at most, about).
TRAIN_IMAGES = {"lsun": 3_033_042, "faces": 202_599, "imagenet": 1_281_167, "svhn": 73_257, "mnist": 50_000}


def step_flops(run: dict) -> tuple[int, int]:
    """(FLOPs of one paper D step, FLOPs of one paper G step) at the run's batch size, on the CPU."""
    torch.manual_seed(0)
    netG, netD = models.build_models(run)
    optG, optD = train.make_optimizers(netG, netD, run)
    step = train.GanStep(netG, netD, optG, optD, paper=run["recipe"] == "paper", device=torch.device("cpu"),
                         precision="fp32")
    bs = run["batch_size"]
    c, h, w = netG.image_shape
    real = torch.rand(bs, c, h, w) * 2 - 1                               # (bs, C, H, W)
    z = torch.rand(bs, netG.nz) * 2 - 1                                  # (bs, nz)
    y = torch.randint(0, netG.n_classes, (bs,)) if netG.n_classes else None
    counts = []
    for s in (1, 0):                                                     # paper: step 1 is D's, step 0 is G's
        with FlopCounterMode(display=False) as fc:
            step(s, real, z, y)
        counts.append(fc.get_total_flops())
    return counts[0], counts[1]


def estimate(tflops: float) -> list[dict]:
    config = cfg_mod.expand_runs(yaml.safe_load((REPO / "config.yaml").read_text()))
    rows = []
    for name, run in config["runs"].items():
        d, g = step_flops(run)
        n = TRAIN_IMAGES[run["dataset"]]
        steps = n // run["batch_size"] * run["epochs"]
        per_step = (d + g) / 2 if run["recipe"] == "paper" else d + g    # paper: half D steps, half G steps
        total = per_step * steps
        rows.append({"run": name, "model": run["model"], "images": n, "batch_size": run["batch_size"],
                     "epochs": run["epochs"], "steps": steps, "gflop_d_step": round(d / 1e9, 2),
                     "gflop_g_step": round(g / 1e9, 2), "pflop_total": round(total / 1e15, 1),
                     "gpu_hours": round(total / (tflops * 1e12) / 3600, 1)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflops", type=float, default=15.0, help="assumed sustained TFLOP/s of one GPU")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = estimate(args.tflops)
    print(f"| run | model | images x epochs | steps | GFLOP per D / G step | PFLOP | GPU-hours at {args.tflops:g} "
          "TFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['model']} | {r['images']:,} x {r['epochs']} | {r['steps']:,} | "
              f"{r['gflop_d_step']} / {r['gflop_g_step']} | {r['pflop_total']} | {r['gpu_hours']} |")
    print(f"| total | | | | | {sum(r['pflop_total'] for r in rows):.1f} | "
          f"{sum(r['gpu_hours'] for r in rows):.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
