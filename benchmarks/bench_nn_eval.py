"""Benchmark: our exact streamed 1-NN (dcgan_repro.nn_eval) against scikit-learn's KNeighborsClassifier(1).

Table 3's "@10M" column classifies 10,000 real MNIST test images (plus 10,000 validation images) with a 1-NN
fitted on 10 million generated samples. This script streams a generated-size reference set of MNIST-like
digits (real MNIST training digits, randomly shifted by up to 1 px with 8-bit noise, standing in for generator
output; scikit-learn's 8x8 digits upscaled when no MNIST copy is given) through our search, and runs sklearn's
brute-force 1-NN on a prefix both can hold. It prints reference images/s, the speed ratio at the shared size,
peak RSS, and checks that both give the same predictions (and the same neighbours and distances).

    python benchmarks/bench_nn_eval.py                                   # ~1 min on 2 shared CPU cores
    python benchmarks/bench_nn_eval.py --n-ref 10000000 --n-sklearn 0    # the full @10M size (GPU advised)
    python benchmarks/bench_nn_eval.py --mnist-root ../shared/data/mnist --n-ref 200000

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
from dcgan_repro import nn_eval, runtime  # noqa: E402

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


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_ours(query: np.ndarray, chunks, device: torch.device, search: str) -> tuple[nn_eval.NNResult, float, float]:
    """(result, seconds inside the search, seconds producing the reference chunks)."""
    nn = nn_eval.StreamingNN(query, device, search=search)
    t_search = t_data = 0.0
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
    return nn.result(), t_search, t_data


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-ref", type=int, default=200_000, help="generated-size reference images streamed (10M: "
                    "the paper's column)")
    ap.add_argument("--n-query", type=int, default=10_000, help="real test images classified")
    ap.add_argument("--n-sklearn", type=int, default=20_000, help="references for the sklearn comparison (0: skip)")
    ap.add_argument("--chunk", type=int, default=65_536, help="references per streamed chunk (mnist_eval.chunk)")
    ap.add_argument("--search", default="auto", choices=["auto", "fp32", "bf16"])
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
    search = nn_eval.resolve_search(args.search, device)
    train_x, train_y, test_x, test_y, source = load_digits_28(args.mnist_root)
    n_q = min(args.n_query, len(test_x))
    query = test_x[:n_q].reshape(n_q, -1).astype(np.float32) / np.float32(255)  # (Q, 784)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu x {torch.get_num_threads()} threads"
    log.info("data: %s; %d queries; device %s; %s candidate pass; peak RSS before the search %.0f MB", source, n_q,
             name, search, peak_rss_mb())

    # 1) our exact streamed 1-NN at generated size
    res, t_search, t_data = run_ours(query, synthetic_generated(train_x, train_y, args.n_ref, args.chunk, args.seed),
                                     device, search)
    rate = args.n_ref / t_search
    log.info("ours   : %d refs x %d queries in %.2f s search (+%.2f s making the references): %.0f reference "
             "images/s, %.3g pair distances/s; test error %.2f%%; %s", args.n_ref, n_q, t_search, t_data, rate,
             rate * n_q, np.mean(res.label != test_y[:n_q]) * 100, res.stats)
    log.info("ours   : peak RSS so far %.0f MB", peak_rss_mb())
    log.info("ours   : extrapolated to 10M references x %d queries: %.1f min (x2 with the validation queries)",
             n_q, 1e7 / rate / 60)

    # 2) sklearn KNeighborsClassifier(1) against ours on the same prefix
    if args.n_sklearn > 0:
        from sklearn.neighbors import KNeighborsClassifier

        xs, ys = map(np.concatenate, zip(*synthetic_generated(train_x, train_y, args.n_sklearn, args.chunk,
                                                              args.seed)))
        res_s, t_ours, _ = run_ours(query, [(xs[i:i + args.chunk], ys[i:i + args.chunk])
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
