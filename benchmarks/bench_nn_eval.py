"""Benchmark: our exact streamed 1-NN (dcgan_repro.mnist_eval.search) against scikit-learn's KNeighborsClassifier(1).

Table 3's "@10M" column classifies 10,000 real MNIST test images (plus 10,000 validation images) with a 1-NN
fitted on 10 million generated samples. Target: 10M generated x 10k test, generation included, in
under 20 minutes on 2 CPU cores with peak memory under 4 GB. This script generates the reference set exactly
as rule ``mnist_eval_generated`` does (``--generator dcgan``: the MNIST conditional DCGAN, ``--model`` a trained
model.pt or a seeded untrained one of the paper's size, batches of 128, balanced labels, ``--precision``
autocast, 8-bit samples), or streams MNIST-like digits (``--generator synthetic``: real training digits shifted
by up to 1 px with 8-bit noise), through our exact search, and runs scikit-learn's
``KNeighborsClassifier(n_neighbors=1)`` on a prefix both can hold. It prints generation and search time
separately and per 1M references, the total and its extrapolation to 10M at the measured thread count (and, on
1 thread, the ideal 2-thread figure, marked as not measured), the speed ratio at the shared size, peak RSS, and
checks that both give the same predictions (and the same neighbours and distances). ``--plain-generation``
samples through the module forward instead of ``mnist_eval.sampler``, to time the difference.

With the DCGAN generator in fp32 it also prints the floor generation sets: the sampler's multiply-adds per sample
(33.8 MFLOP at the paper's size) times 10M, at the fp32 matmul rate measured in the same run on fc2's shape.

``--compare fp32,int8`` (the default) then times the search part alone for each precision on the same first
``--n-compare`` references, back to back, and prints the speed ratio and whether the neighbours agree.

Measured (1 thread of a 2-core Xeon with AVX512-BF16, no AMX, the other core running someone else's job, so
absolute numbers drift by up to ~1.5x between runs; 32,768 samples x 10k queries, the runs back to back):
module forward in bf16 + bf16 candidate pass (the old defaults) 732 us/sample + 317 us/reference, 176 min
extrapolated to 10M; CondDCGANSampler in fp32 + fp32 candidate pass 454 + 224 us, 114 min. Now (int8 search, the
CPU default) two runs gave 413 + 51 and 454 + 46 us, 78 and 84 min extrapolated to 10M on 1 thread (~40 min on
2 only if scaling were perfect: not measured); in the same runs the search part alone took 47.5 and 44.8
us/reference in int8 against 172 and 179 in fp32 (3.6x, 4.0x), the same neighbour for all 10k queries. The
target (< 20 min on 2 cores) is not met: generation is ~90% of the time, and its fp32 floor on this CPU
(fp32 matmuls of fc2's shape: 92 GFLOP/s on 1 thread, 172 on 2, quiet) is 61 / 33 min for 10M samples. The
workflow's own 10M run (2 threads, 20k queries) took 48.5 min. Peak RSS 1.3-1.5 GB. sklearn brute force on 20k
references: ours 12x faster, same predictions and neighbours.
On a 2-core AVX2-only AMD EPYC (no VNNI, no native bf16; 2026-12-02, ``--threads 2 --n-ref 32768``, int8 forced
by the then-default ``auto``): search 4,251 us/reference in int8 against 330 in fp32 (``--compare``: 5,341 vs 330,
same neighbour for all 10k queries), generation 808 us/sample in fp32; 844 min extrapolated to 10M. Since then
``auto`` picks int8 only on CPUs with VNNI or AMX (``runtime.native_int8``), fp32 elsewhere: (808 + 330) us x 10M =
~190 min on such a CPU, still far from the target; its generation floor there is 92 min (61 GFLOP/s fp32).
On a 2-core Xeon with AMX (2026-12-05, ``--threads 2 --n-ref 10000000 --model`` the 80-epoch MNIST DCGAN, bf16
generation as ``precision: auto`` picks there): the full 10M x 10k in 16.2 min (generation 83 us/sample, int8
search 15 us/reference), peak RSS 2.0 GB: the target is met on such a CPU; sklearn 16.8x slower on 20k references,
same neighbours; int8 search 4.7x faster than fp32. Paired 50K check, same z and labels: test error 3.86 % (fp32
generation) vs 3.85 % (bf16).

    python benchmarks/bench_nn_eval.py --threads 1 --n-ref 32768          # ~1 min on one core
    python benchmarks/bench_nn_eval.py --n-ref 10000000 --n-sklearn 0    # the full @10M size
    python benchmarks/bench_nn_eval.py --generator synthetic --n-ref 200000   # search alone

The GPU is used when present (``--device auto``).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dcgan_repro import runtime  # noqa: E402
from dcgan_repro.mnist_eval import protocol  # noqa: E402
from dcgan_repro.mnist_eval import search as nn_search  # noqa: E402

log = logging.getLogger("bench_nn_eval")


def load_digits_28(mnist_root: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """(train_x (n, 28, 28) uint8, train_y, test_x, test_y, description) from MNIST or sklearn's digits."""
    if mnist_root and Path(mnist_root).is_dir():
        from torchvision.datasets import MNIST

        tr, te = MNIST(mnist_root, train=True, download=False), MNIST(mnist_root, train=False, download=False)
        return tr.data.numpy(), tr.targets.numpy(), te.data.numpy(), te.targets.numpy(), f"MNIST ({mnist_root})"
    import cv2
    from sklearn.datasets import load_digits

    dg = load_digits()
    big = np.stack([cv2.resize(im * (255 / 16), (20, 20), interpolation=cv2.INTER_CUBIC) for im in dg.images])
    x = np.pad(np.clip(np.rint(big), 0, 255).astype(np.uint8), ((0, 0), (4, 4), (4, 4)))  # (1797, 28, 28)
    return x[:1497], dg.target[:1497], x[1497:], dg.target[1497:], "sklearn load_digits upscaled to 28x28"


def synthetic_generated(base_x: np.ndarray, base_y: np.ndarray, n: int, chunk: int,
                        seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream n MNIST-like "generated" digits: base digits shifted by up to 1 px, +-12 grey levels of noise."""
    for k, start in enumerate(range(0, n, chunk)):
        m = min(chunk, n - start)
        rng = np.random.default_rng([seed, k])
        idx = rng.integers(0, len(base_x), m)
        shift = rng.integers(-1, 2, (m, 2))
        x = base_x[idx].astype(np.int16)  # (m, 28, 28)
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                sel = (shift[:, 0] == dy) & (shift[:, 1] == dx)
                x[sel] = np.roll(x[sel], (dy, dx), axis=(1, 2))
        x += rng.integers(-12, 13, x.shape, dtype=np.int16)
        x = np.clip(x, 0, 255).astype(np.uint8)
        yield x.reshape(m, -1).astype(np.float32) / np.float32(255), base_y[idx]


def dcgan_generated(model: str | None, n: int, chunk: int, seed: int, device: torch.device,
                    precision: str, fast: bool = True) -> tuple[Iterator[tuple[np.ndarray, np.ndarray]], str]:
    """Stream n class-conditional samples of the MNIST DCGAN exactly as ``protocol.evaluate_generated`` does."""
    from dcgan_repro import models

    if model:
        netG, _, ckpt = models.load_checkpoint(model, device)
        run, what = ckpt["run"], f"trained G {model} (epoch {ckpt['epoch']})"
    else:
        run = {"model": "mnist_cond_dcgan", "recipe": "paper", "nz": 100, "ngf": 64, "ndf": 64, "batch_size": 128}
        torch.manual_seed(seed)
        netG, _ = models.build_models(run)
        what = "untrained mnist_cond_dcgan G of the paper's size (same cost as a trained one)"
    labels = protocol.balanced_labels(n, netG.n_classes, seed)
    chunks = protocol._generated_chunks(netG.to(device).eval(), labels, z_dist=models.z_dist(run), seed=seed,
                                        batch_size=int(run["batch_size"]), chunk=chunk, device=device,
                                        precision=precision, fast=fast)
    return chunks, what


def sampler_macs(ngf: int = 64, nz: int = 100, n_classes: int = 10) -> int:
    """Multiply-adds per sample of mnist_eval.sampler.CondDCGANSampler (y maps precomputed): fc1, fc2, deconv1,
    deconv2."""
    fc, c2 = 16 * ngf, 2 * ngf  # 1024 hidden units, 128 channels at 7 x 7 (ngf = 64)
    return ((nz + n_classes) * fc + fc * c2 * 49 + 49 * c2 * ngf * 25 + 196 * ngf * 25)


def matmul_flops(device: torch.device, seconds: float = 2.0) -> float:
    """Measured fp32 matmul rate (FLOP/s) at the current thread count, on fc2's shape at a large batch."""
    a = torch.rand(4096, 1024, device=device)
    b = torch.rand(1024, 6272, device=device)
    a @ b  # warm-up
    sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    sync(device)
    return 2.0 * 4096 * 1024 * 6272 * n / (time.perf_counter() - t0)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(query: np.ndarray, chunks, device: torch.device, search: str,
             keep: int = 0) -> tuple[nn_search.NNResult, float, float, list]:
    """(result, seconds inside the search, seconds producing the reference chunks, the first ``keep`` references
    as (x, y) chunks, for :func:`compare_searches`)."""
    nn = nn_search.make_nn(query, device, search=search)
    t_search = t_data = 0.0
    kept, n_kept = [], 0
    it = iter(chunks)
    while True:
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            break
        t1 = time.perf_counter()
        nn.update(x, y)
        sync(device)
        t2 = time.perf_counter()
        t_data += t1 - t0
        t_search += t2 - t1
        if n_kept < keep:
            kept.append((x[:keep - n_kept], y[:keep - n_kept]))
            n_kept += len(kept[-1][0])
    return nn.result(), t_search, t_data, kept


def compare_searches(query: np.ndarray, kept: list, device: torch.device, searches: list[str]) -> None:
    """Time the search part alone for each precision on the same held references, back to back; check that the
    decisions agree (int8 is exact on the grey levels, fp32 / bf16 on their fp32 roundings: see mnist_eval.search)."""
    n = sum(len(x) for x, _ in kept)
    res, us = {}, {}
    for search in searches:
        nn = nn_search.make_nn(query, device, search=search)
        t0 = time.perf_counter()
        for x, y in kept:
            nn.update(x, y)
        sync(device)
        us[search] = (time.perf_counter() - t0) / n * 1e6
        res[search] = nn.result()
        log.info("search : %s alone on the same %d references x %d queries: %.1f us/reference", search, n,
                 len(query), us[search])
    base = searches[0]
    for search in searches[1:]:
        same_i = int((res[search].index == res[base].index).sum())
        same_y = int((res[search].label == res[base].label).sum())
        log.info("search : distance part %s / %s: %.2fx faster (%.1f against %.1f us/reference, same run); same "
                 "neighbour for %d / %d queries, same label for %d; max |sqdist difference| %.2e", search, base,
                 us[base] / us[search], us[search], us[base], same_i, len(query), same_y,
                 float(np.abs(res[search].sqdist - res[base].sqdist).max()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-ref", type=int, default=200_000, help="generated-size reference images streamed (10M: "
                    "the paper's column)")
    ap.add_argument("--n-query", type=int, default=10_000, help="real test images classified")
    ap.add_argument("--n-sklearn", type=int, default=20_000, help="references for the sklearn comparison (0: skip)")
    ap.add_argument("--chunk", type=int, default=65_536, help="references per streamed chunk (mnist_eval.chunk)")
    ap.add_argument("--generator", default="dcgan", choices=["dcgan", "synthetic"],
                    help="reference source: the MNIST DCGAN (generation timed) or shifted real digits")
    ap.add_argument("--model", default=None, help="model.pt of a trained MNIST run (default: untrained G)")
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                    help="generation autocast (auto: bf16 where the device has native bf16 (AMX, AVX512-BF16, "
                         "CUDA), else fp32: what the workflow does under config precision: auto)")
    ap.add_argument("--plain-generation", action="store_true",
                    help="sample through the module forward netG(z, y) instead of mnist_eval.sampler "
                         "(what the protocol uses), to time the difference")
    ap.add_argument("--search", default="auto", choices=["auto", "fp32", "bf16", "int8"],
                    help="1-NN search (auto: int8 on a CPU, bf16 on CUDA; mnist_eval.search.resolve_search)")
    ap.add_argument("--compare", default="fp32,int8",
                    help="comma-separated searches timed alone, back to back, on the first --n-compare references "
                         "(held in memory); the first is the baseline of the printed ratios ('' to skip)")
    ap.add_argument("--n-compare", type=int, default=32_768, help="references held for --compare")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=0, help="torch / BLAS threads (0: library default)")
    ap.add_argument("--mnist-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"),
                    help="torchvision MNIST root; sklearn digits are used when it is absent")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = runtime.resolve_device(args.device)
    search = nn_search.resolve_search(args.search, device)
    train_x, train_y, test_x, test_y, source = load_digits_28(args.mnist_root)
    n_q = min(args.n_query, len(test_x))
    query = test_x[:n_q].reshape(n_q, -1).astype(np.float32) / np.float32(255)  # (Q, 784)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x {torch.get_num_threads()} threads"
    log.info("data: %s; %d queries; device %s; %s search; peak RSS before the search %.0f MB", source, n_q,
             name, search, peak_rss_mb())

    # 1) our exact streamed 1-NN at generated size, generation included
    precision = args.precision
    if precision == "auto":  # as the workflow's jobs under config precision: auto (presets/mnist_cpu.yaml)
        precision = runtime.resolve_precision("auto", device)
    if args.generator == "dcgan":
        chunks, what = dcgan_generated(args.model, args.n_ref, args.chunk, args.seed, device, precision,
                                       fast=not args.plain_generation)
        log.info("references: %s, %s generation through %s", what, precision,
                 "the module forward" if args.plain_generation else "mnist_eval.sampler.CondDCGANSampler")
    else:
        chunks = synthetic_generated(train_x, train_y, args.n_ref, args.chunk, args.seed)
        log.info("references: real training digits shifted by up to 1 px with 8-bit noise (no generation)")
    t_total = time.perf_counter()
    compare = [c for c in args.compare.split(",") if c]
    for c in compare:
        nn_search.resolve_search(c, device, setting="--compare")  # refuse a bad name before the long run
    res, t_search, t_data, kept = run_ours(query, chunks, device, search, keep=args.n_compare if compare else 0)
    t_total = time.perf_counter() - t_total
    rate = args.n_ref / t_search
    threads = torch.get_num_threads()
    log.info("ours   : %d refs x %d queries: %.2f s search + %.2f s making the references = %.2f s total; search "
             "%.0f reference images/s (%.3g pair distances/s), references %.0f images/s; test error %.2f%%; %s",
             args.n_ref, n_q, t_search, t_data, t_total, rate, rate * n_q, args.n_ref / t_data,
             np.mean(res.label != test_y[:n_q]) * 100, res.stats)
    per_m = 1e6 / args.n_ref
    log.info("ours   : per 1M references (%d thread(s)): making them %.1f s (%.0f us/sample), search %.1f s "
             "(%.0f us/reference at %d queries)", threads, t_data * per_m, t_data / args.n_ref * 1e6,
             t_search * per_m, t_search / args.n_ref * 1e6, n_q)
    log.info("ours   : peak RSS so far %.0f MB (target < 4096 MB)", peak_rss_mb())
    scale = 1e7 / args.n_ref
    log.info("ours   : extrapolated to 10M references x %d queries, generation included, %d thread(s) (measured "
             "rate): %.1f min (search %.1f + references %.1f); target < 20 min on 2 cores%s", n_q, threads,
             t_total * scale / 60, t_search * scale / 60, t_data * scale / 60,
             " (measured at full size)" if args.n_ref >= 10_000_000 else "")
    if threads == 1:
        log.info("ours   : 2 threads NOT measured here: %.1f min if both stages scaled perfectly (an upper bound "
                 "on the speed-up, not a measurement; rerun with --threads 2 on a quiet machine)",
                 t_total * scale / 120)
    if args.generator == "dcgan" and precision == "fp32":
        flop, rate_mm = 2.0 * sampler_macs(), matmul_flops(device)
        log.info("floor  : the generator is %.1f MFLOP per sample (its matmuls and deconvs); at this run's measured "
                 "fp32 matmul rate (%.0f GFLOP/s on %d thread(s), fc2's shape) generating 10M samples takes at least "
                 "%.1f min before any search: %.0f%% of that rate is what generation achieved here", flop / 1e6,
                 rate_mm / 1e9, threads, 1e7 * flop / rate_mm / 60, 100 * flop * args.n_ref / t_data / rate_mm)
    if compare:
        compare_searches(query, kept, device, compare)
        del kept

    # 2) sklearn KNeighborsClassifier(1) against ours on the same prefix
    if args.n_sklearn > 0:
        from sklearn.neighbors import KNeighborsClassifier

        xs, ys = map(np.concatenate, zip(*synthetic_generated(train_x, train_y, args.n_sklearn, args.chunk,
                                                              args.seed)))
        res_s, t_ours, _, _ = run_ours(query, [(xs[i:i + args.chunk], ys[i:i + args.chunk])
                                            for i in range(0, len(xs), args.chunk)], device, search)
        t0 = time.perf_counter()
        knn = KNeighborsClassifier(n_neighbors=1, algorithm="brute").fit(xs, ys)
        dist_sk, idx_sk = knn.kneighbors(query)
        pred_sk = knn.predict(query)
        t_sk = time.perf_counter() - t0
        same_pred = bool((pred_sk == res_s.label).all())
        same_idx = int((idx_sk[:, 0] == res_s.index).sum())
        max_dd = float(np.abs(dist_sk[:, 0] - res_s.dist).max())
        log.info("sklearn: %d refs x %d queries in %.2f s (%.0f reference images/s); ours on the same: %.2f s "
                 "(%.0f images/s): speed ratio %.1fx", len(xs), n_q, t_sk, len(xs) / t_sk, t_ours,
                 len(xs) / t_ours, t_sk / t_ours)
        log.info("sklearn: same predictions: %s; same neighbour index for %d / %d queries; max |distance "
                 "difference| %.2e (sklearn expands ||q||^2 - 2 q.x + ||x||^2 in float64 without a re-check)",
                 same_pred, same_idx, n_q, max_dd)
        log.info("sklearn: peak RSS after sklearn %.0f MB (its reference set held in memory)", peak_rss_mb())
        if not same_pred:
            log.error("predictions differ on %d queries", int((pred_sk != res_s.label).sum()))
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
