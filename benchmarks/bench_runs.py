"""Benchmark: seconds per epoch, images/s and FLOP efficiency of ``train.train_gan`` for runs of config.yaml.

Default: run ``mnist_dcgan`` (Table 3's model: ``mnist_cond_dcgan``, recipe paper, batch 128, ngf = ndf = 64), whose
epoch is 50,000 images (MNIST's 60,000 less the 10,000-image validation split) = 390 steps, on 1 and 2 torch
threads. For every (threads, variant) a fresh child process of this script

- trains ``--steps`` steps with ``train.train_gan`` itself (memory-mapped data, loader thread, stats lines, the
  final checkpoint) on random pixels of the run's shape, timing every step through the ``train._after_step`` hook;
  seconds per step = the steady state after ``--warmup`` steps; seconds per epoch = steps per epoch x that + the
  writes at the end (resumable checkpoint, model.pt, sample grid: what an epoch end costs at most);
- times the calls of ``train.GanStep`` inside that loop: the rest of a loop step is per-step host work (loader
  hand-over, z, scaling the minibatch, stats);
- counts the FLOPs of two steps (a D and a G step in the paper recipe) with FlopCounterMode and, for the first
  variant, replays every conv / linear call of those steps in isolation (same shapes, memory format, precision,
  threads, gradients) to get the machine's limit for this work, times a 2048^3 GEMM, and profiles two steps
  (top aten ops and the gap between op time and step time). Efficiency = achieved FLOP/s / that limit, on the
  step's busy time (wall less the main thread's run-queue wait, i.e. time other jobs took).

Variants (``--variants``): ``now`` (train_gan as it runs), ``before`` (the three CPU changes off: glibc's default
allocator thresholds instead of ``runtime.tune_allocator``, Adam's per-parameter loop instead of foreach, the NCHW
concatenation of the label maps; same fp32 results), ``-alloc`` / ``-foreach`` / ``-cat`` (one of them off),
``fused`` (Adam's fused kernel: different rounding, not taken), ``compile`` (``compile: true``, torch.compile with
inductor; about a minute of compiling first, not taken on CPUs).

    python benchmarks/bench_runs.py            # ~2.5 min on 2 idle CPU cores (mnist_dcgan, 1 and 2 threads)
    python benchmarks/bench_runs.py --threads 1 --variants=now,before,-alloc,-foreach,-cat,fused --repeats 2
    python benchmarks/bench_runs.py --runs all --device cuda --steps 200 --warmup 50     # steps/s and images/s per run
    python benchmarks/bench_runs.py --runs mnist_dcgan --steps 390 --warmup 10 --threads 2   # one real epoch

On a GPU, per run: steps/s, images/s, seconds per epoch where the epoch size is known (MNIST), and the
efficiency against the run's own layers on that GPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_efficiency as se  # noqa: E402
from dcgan_repro import config as configuration, io, models, runtime, train  # noqa: E402

SHAPES = {"dcgan64": (64, 64, 3), "imagenet32": (32, 32, 3), "svhn32": (32, 32, 3), "mnist_cond_dcgan": (28, 28, 1),
          "mnist_cond_mlp": (28, 28, 1)}
VARIANTS = ("now", "before", "-alloc", "-foreach", "-cat", "fused", "compile")
MAX_DATA_BYTES = 64 << 20       # synthetic data up to this size holds a whole epoch, else just the timed steps


# --- the run and its data ------------------------------------------------------------------------------------


def config_runs(path: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """``runs`` of a config file as training sees them (run_defaults merged in), and the whole config."""
    cfg = configuration.expand_runs(yaml.safe_load(path.read_text()))
    return cfg["runs"], cfg


def epoch_images(run: dict[str, Any], cfg: dict[str, Any]) -> int | None:
    """Training images per epoch where config.yaml fixes it: MNIST 60,000 less the validation split."""
    if run["dataset"] == "mnist":
        return 60000 - int(cfg["mnist_eval"]["validation_size"])
    return None


def write_data(out: Path, run: dict[str, Any], n: int, seed: int = 0) -> Path:
    """``n`` random uint8 images of the run's shape (labels 0-9) in the training .npy layout."""
    rng = np.random.default_rng(seed)
    io.write_dataset(out, "train", rng.integers(0, 256, (n, *SHAPES[run["model"]]), dtype=np.uint8),
                     rng.integers(0, 10, n))
    io.write_json(out / "meta.json", {"name": "bench", "stand_in": "random pixels (benchmark)"})
    return out


# --- one child: one variant at one thread count ----------------------------------------------------------------


def _cond_maps_before(h: torch.Tensor, y1h: torch.Tensor) -> torch.Tensor:
    """models._cond_maps before it kept channels_last: always an NCHW result (the next conv converts it back)."""
    n, _, hh, ww = h.shape
    return torch.cat([h, y1h[:, :, None, None].expand(n, y1h.shape[1], hh, ww).to(h.dtype)], dim=1)


CHANGES = ("alloc", "foreach", "cat")   # what ``before`` turns off; ``-<change>`` turns off one of them


def apply_variant(variant: str) -> None:
    """Undo, in this process, the CPU changes a variant leaves out (``now`` keeps them all)."""
    off = set(CHANGES) if variant == "before" else {variant[1:]} if variant.startswith("-") else set()
    if "foreach" in off:
        train.ADAM_IMPL = "single"
    if "cat" in off:
        models._cond_maps = _cond_maps_before
    if "alloc" in off:
        runtime.tune_allocator = lambda: False
    if variant == "fused":
        train.ADAM_IMPL = "fused"


def bare_step(run: dict[str, Any], device: torch.device, precision: str,
              seed: int = 0) -> tuple[tuple[torch.nn.Module, torch.nn.Module], Callable[[int, int], None]]:
    """((netG, netD), steps): ``steps(first, n)`` runs ``train.GanStep`` for steps first .. first + n - 1 on one
    fixed minibatch (fresh z each step), built as train_gan builds it: the step without the loop around it."""
    runtime.seed_everything(run["seed"])
    netG, netD = models.build_models(run)
    mem = train.memory_format(run)
    for net in (netG, netD):
        net.to(device, memory_format=mem or torch.contiguous_format).train()
    optG, optD = train.make_optimizers(netG, netD, run)
    gan_step = train.GanStep(netG, netD, optG, optD, paper=run["recipe"] == "paper", device=device,
                             precision=precision)
    bs, shape = run["batch_size"], SHAPES[run["model"]]
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (bs, *shape), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (bs,), generator=g).to(device) if netG.n_classes else None
    real = models.to_model_input(x, netG.output_range)
    real = real if mem is None else real.contiguous(memory_format=mem)
    dist = models.z_dist(run)

    def steps(first: int, n: int) -> None:
        for i in range(first, first + n):
            gan_step(i, real, models.sample_z(bs, netG.nz, dist, g, device), y)

    return (netG, netD), steps


def child(a: dict[str, Any]) -> dict[str, Any]:
    """Time one variant at one thread count; everything this process measured, as a JSON-able dict."""
    torch.set_num_threads(a["threads"])
    apply_variant(a["variant"])
    device = runtime.resolve_device(a["device"])
    precision = runtime.resolve_precision(a["precision"], device)
    sync = se.cuda_sync(device)
    run = {**a["run"], "max_steps": a["steps"], "checkpoint_every": 10**9, "sample_every": 10**9}
    warm, stop = a["warmup"], a["steps"]
    last = warm + 2 * ((stop - 1 - warm) // 2)                  # an even number of timed steps (paper: D, G pairs)
    marks = se.StepMarks(sync, frozenset({warm, last, stop}))
    train._after_step = marks
    in_step: dict[int, float] = {}                               # seconds inside GanStep per step (GPU: launching)
    step_call = train.GanStep.__call__

    def timed_step(self: train.GanStep, step: int, *args: Any) -> torch.Tensor:
        t = time.perf_counter()
        out = step_call(self, step, *args)
        in_step[step] = time.perf_counter() - t
        return out

    train.GanStep.__call__ = timed_step
    work = Path(a["work"]) / f"{a['variant']}_{a['threads']}_{a['repeat']}"
    t0 = se.Mark.now(sync)
    summary = train.train_gan(run, "bench", a["data"], work / "model.pt", work / "summary.json", work / "ck",
                              {"preset": "bench", "device": a["device"], "precision": a["precision"],
                               "compile": a["variant"] == "compile"})
    whole = se.Span.between(t0, se.Mark.now(sync))
    loop = marks.span(warm, last).scaled(1 / (last - warm))
    step_mid = statistics.median(marks.marks[i + 1].wall - marks.marks[i].wall for i in range(warm, last))
    writes = max(0.0, marks.marks[stop].wall - marks.marks[stop - 1].wall - step_mid)
    out: dict[str, Any] = {"variant": a["variant"], "threads": torch.get_num_threads(), "precision": precision,
                           "machine": se.machine(device), "loop": loop.__dict__, "whole": whole.__dict__,
                           "writes_s": writes, "steps_run": summary["steps"], "timed_steps": last - warm,
                           "maxrss_mib": se.peak_rss_mib(),
                           "host_s": loop.wall - sum(in_step[i] for i in range(warm, last)) / (last - warm)}
    train.GanStep.__call__ = step_call
    nets, steps = bare_step(run, device, precision)
    flops, per_op = se.count_flops(lambda: steps(0, 2))
    out["flops_per_step"], out["flops_per_op"] = flops / 2, {k: v / 2 for k, v in per_op.items()}
    if a["limit"]:
        calls = se.record_layer_calls(list(nets), lambda: steps(0, 2))
        times = se.layer_limit(calls, device)
        out["limit"] = {"flops": sum(t.n * t.flops for t in times) / 2,
                        "seconds": sum(t.n * t.seconds for t in times) / 2,
                        "table": se.layer_table(times, busy(loop.__dict__), steps=2)}
        out["gemm_gflops"] = se.gemm_gflops(2048, torch.bfloat16 if precision == "bf16" else torch.float32, device)
        wall, rows = se.profile_ops(lambda: steps(0, 2 * a["profile_pairs"]), sync=sync)
        out["profile"] = {"wall": wall / (2 * a["profile_pairs"]), "steps": 2 * a["profile_pairs"],
                          "rows": [(k, v / (2 * a["profile_pairs"]), n / (2 * a["profile_pairs"])) for k, v, n in rows]}
    return out


# --- the parent: run the children, print the tables ---------------------------------------------------------


def busy(span: dict[str, float]) -> float:
    """Seconds of a span the main thread was not waiting for a CPU (wall less run-queue wait)."""
    return span["wall"] - span["runqueue"]


def report(name: str, run: dict[str, Any], results: list[dict[str, Any]], n_epoch: int | None,
           device: torch.device) -> None:
    bs = run["batch_size"]
    spe = n_epoch // bs if n_epoch else None
    first = results[0]
    print(f"\nrun {name}: {run['model']}, recipe {run['recipe']}, batch {bs}, ngf={run['ngf']} ndf={run['ndf']} "
          f"nz={run['nz']}, {first['precision']}; "
          + (f"epoch = {n_epoch:,} images = {spe} steps" if spe else "epoch size: not fixed by config.yaml"))
    print(f"  machine: {first['machine']}")
    print(f"  FLOPs per step (FlopCounterMode, mean of a D and a G step): {first['flops_per_step'] / 1e9:.2f} GFLOP "
          + ", ".join(f"{k} {v / 1e9:.2f}" for k, v in first["flops_per_op"].items()))
    limits = {r["threads"]: r for r in results if "limit" in r}
    head = (f"  {'threads':>7} {'variant':<8} {'s/step':>7} {'steps/s':>7} {'img/s':>7} {'img/CPU-s':>9} "
            f"{'s/epoch':>8} {'wall/CPU':>8} {'idle s':>6} {'runq s':>6} {'sys ms':>6} {'faults':>6} {'GFLOP/s':>7} "
            f"{'limit':>6} {'eff':>5} {'GEMM':>5} {'host ms':>7}")
    print(head)
    by_key: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in results:
        by_key.setdefault((r["threads"], r["variant"]), []).append(r)
    best: dict[tuple[int, str], dict[str, Any]] = {}
    for key, rs in by_key.items():
        r = min(rs, key=lambda r: busy(r["loop"]))
        best[key] = r
        loop = r["loop"]
        s_step = busy(loop)
        lim = limits.get(r["threads"])
        achieved = r["flops_per_step"] / s_step / 1e9
        limit = lim["limit"]["flops"] / lim["limit"]["seconds"] / 1e9 if lim else float("nan")
        epoch = f"{spe * s_step + r['writes_s']:8.1f}" if spe else f"{'-':>8}"
        host = 1e3 * r["host_s"]
        print(f"  {r['threads']:>7} {r['variant']:<8} {s_step:7.3f} {1 / s_step:7.2f} {bs / s_step:7.1f} "
              f"{bs / loop['cpu']:9.1f} {epoch} {loop['wall'] / loop['cpu']:8.2f} {loop_idle(loop):6.3f} "
              f"{loop['runqueue']:6.3f} {1e3 * loop['sys']:6.1f} {loop['faults']:6.0f} {achieved:7.1f} {limit:6.1f} "
              f"{achieved / limit:5.2f} "
              f"{lim['gemm_gflops'] if lim else float('nan'):5.0f} {host:7.1f}")
    print("  (per step; s/step = busy wall: wall less the main thread's run-queue wait; img/CPU-s on all CPU time; "
          "s/epoch adds the end-of-run writes; host ms = loop time outside GanStep: loader, z, minibatch scaling, "
          "stats; best of the repeats)")
    for threads in sorted({k[0] for k in best}):
        now = best.get((threads, "now"))
        for other in ("before", "-alloc", "-foreach", "-cat"):
            o = best.get((threads, other))
            if now and o:
                med = (statistics.median(busy(r["loop"]) for r in by_key[(threads, other)])
                       / statistics.median(busy(r["loop"]) for r in by_key[(threads, "now")]))
                print(f"  {threads} thread(s): now / {other} = {o['loop']['cpu'] / now['loop']['cpu']:.3f}x per "
                      f"CPU-second, {busy(o['loop']) / busy(now['loop']):.3f}x busy wall (best of each), "
                      f"{med:.3f}x (medians of {len(by_key[(threads, other)])}); peak RSS "
                      f"{o['maxrss_mib']:.0f} -> {now['maxrss_mib']:.0f} MiB")
        for other in ("fused", "compile"):
            o = best.get((threads, other))
            if now and o:
                print(f"  {threads} thread(s): {other} / now = {now['loop']['cpu'] / o['loop']['cpu']:.3f}x per "
                      f"CPU-second, {busy(now['loop']) / busy(o['loop']):.3f}x busy wall")
    for threads, r in sorted(limits.items()):
        lim = r["limit"]
        print(f"  limit at {threads} thread(s): the step's layers in isolation, {lim['flops'] / 1e9:.2f} GFLOP in "
              f"{1e3 * lim['seconds']:.1f} ms per step = {lim['flops'] / lim['seconds'] / 1e9:.1f} GFLOP/s "
              f"(loop step {1e3 * busy(r['loop']):.1f} ms busy)")
        for line in lim["table"]:
            print(line)
        prof = r["profile"]
        ops = sum(v for k, v, _ in prof["rows"] if k == "(all aten ops)")
        print(f"  profile at {threads} thread(s), {prof['steps']} bare steps: {1e3 * prof['wall']:.1f} ms per step, "
              f"aten ops {1e3 * ops:.1f} ms -> gap (Python, autograd engine, dispatch) "
              f"{1e3 * (prof['wall'] - ops):.1f} ms ({100 * (1 - ops / prof['wall']):.1f} %)")
        for k, v, n in prof["rows"][:-1]:
            print(f"    {k:<36} {1e3 * v:8.2f} ms/step {n:6.1f} calls/step")


def loop_idle(span: dict[str, float]) -> float:
    return se.Span(**span).idle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="mnist_dcgan", help="comma-separated runs of the config, or 'all'")
    p.add_argument("--config", default=str(configuration.CONFIG_PATH), help="config file (default config.yaml)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--precision", default="auto", help="fp32 | bf16 | auto (bf16 where native, else fp32)")
    p.add_argument("--threads", default=None,
                   help="comma-separated torch thread counts (default: 1,2 on a CPU, 4 on a GPU, as rule train_gan)")
    p.add_argument("--variants", default=None,
                   help=f"comma-separated, of {', '.join(VARIANTS)} (default: now,before on a CPU, now on a GPU)")
    p.add_argument("--steps", type=int, default=40, help="training steps per child (train_gan max_steps)")
    p.add_argument("--warmup", type=int, default=6, help="first steps left out of the steady state")
    p.add_argument("--profile-pairs", type=int, default=1, help="D+G step pairs profiled")
    p.add_argument("--repeats", type=int, default=1, help="children per (threads, variant), interleaved; best kept")
    p.add_argument("--no-limit", action="store_true", help="skip the layer limit, GEMM and profile")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        runtime.setup_logging(None, level=logging.WARNING)
        print(json.dumps(child(json.loads(a.child))))
        return 0
    device = runtime.resolve_device(a.device)
    variants = (a.variants or ("now" if device.type == "cuda" else "now,before")).split(",")
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise SystemExit(f"--variants: {bad} not allowed; allowed: {', '.join(VARIANTS)}")
    if a.steps < a.warmup + 4:
        raise SystemExit(f"--steps {a.steps} must exceed --warmup {a.warmup} by at least 4")
    threads = [int(t) for t in (a.threads or ("4" if device.type == "cuda" else "1,2")).split(",")]
    runs, cfg = config_runs(Path(a.config))
    names = list(runs) if a.runs == "all" else a.runs.split(",")
    unknown = [n for n in names if n not in runs]
    if unknown:
        raise SystemExit(f"--runs: {unknown} not in {a.config}; runs there: {', '.join(runs)}")
    with tempfile.TemporaryDirectory(prefix="bench_runs_") as tmp:
        for name in names:
            run = copy.deepcopy(runs[name])
            n_epoch = epoch_images(run, cfg)
            bs = run["batch_size"]
            row_bytes = int(np.prod(SHAPES[run["model"]]))
            n = n_epoch if n_epoch and n_epoch * row_bytes <= MAX_DATA_BYTES else bs * (a.steps + 2)
            data = write_data(Path(tmp) / f"data_{name}", run, n)
            results = []
            for rep in range(a.repeats):
                for t in threads:
                    for i, v in enumerate(variants):
                        args = {"run": run, "data": str(data), "work": str(Path(tmp) / name), "device": a.device,
                                "precision": a.precision, "threads": t, "variant": v, "repeat": rep,
                                "steps": a.steps, "warmup": a.warmup,
                                "profile_pairs": a.profile_pairs, "limit": not a.no_limit and rep == 0 and i == 0}
                        results.append(se.run_child([__file__, "--child", json.dumps(args)]))
            report(name, run, results, n_epoch, device)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
