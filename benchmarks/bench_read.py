"""Benchmark: read rate of the training format (memory-mapped uint8 .npy) against decoding JPEG files.

Every dataset is ingested once into ``<split>_x.npy`` (uint8 N x H x W x C, docs/CONTRACTS.md) so the GPU never
waits for JPEG decoding. This measures, in one run on the same images, random-minibatch read rates in images/s:

- ours: the training loop's read (dcgan_repro.train): a sorted random minibatch fancy-indexed from the memmap
  into a uint8 tensor, and then also :func:`dcgan_repro.models.to_model_input` on the CPU (float NCHW in
  [-1, 1]; training does this on the GPU), which the ratios use;
- baseline A: torchvision ``ImageFolder`` of 64x64 JPEGs (quality 75) + ``ToTensor`` + ``Normalize``, shuffled
  ``DataLoader`` (decoding only, the cheapest JPEG pipeline);
- baseline B: ``ImageFolder`` of 256x256 JPEGs (LSUN's stored size, quality 75) + ``Resize(64)`` +
  ``CenterCrop(64)``: the pytorch/examples DCGAN LSUN pipeline, which decodes and resizes every image every epoch;
- both baselines with ``num_workers`` 0 and 2 (this box has 2 cores; a GPU box has more workers and more
  images to feed per second, the ratio is what carries over).

Images are crops of real photos (``../shared/data/scenes/scenes256.npz`` when present, else photos shipped with
scikit-image), so JPEG sizes are realistic. The .npy is read warm (in the page cache, as it is after the first
epoch on a machine with enough RAM), so treat it as the ceiling; the JPEG folders are warm too.

Measured on the 2-core development box (``python benchmarks/bench_read.py``, 17 s): memmap minibatches 620,000
images/s as uint8, 42,000 images/s with the float conversion on the CPU; ImageFolder 64 px JPEGs 2,546 / 2,954
images/s (0 / 2 workers, 16.5x / 14.2x slower); the pytorch/examples 256 px JPEG + resize pipeline 953 / 2,321
images/s (44x / 18x slower).

    python benchmarks/bench_read.py                 # ~20 s on 2 shared CPU cores
    python benchmarks/bench_read.py --n-npy 100000 --n-jpeg 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dcgan_repro import io, models  # noqa: E402

SCENES = Path(__file__).resolve().parents[2] / "shared" / "data" / "scenes" / "scenes256.npz"


def photos() -> tuple[list[np.ndarray], str]:
    if SCENES.is_file():
        return list(np.load(SCENES)["images"]), f"{SCENES.name} (267 real photos)"
    import skimage.data as sd

    names = ("astronaut", "chelsea", "coffee", "rocket", "retina", "immunohistochemistry", "hubble_deep_field")
    return [np.ascontiguousarray(getattr(sd, n)()[..., :3]) for n in names], "scikit-image photos"


def crops(src: list[np.ndarray], n: int, size: int, seed: int) -> np.ndarray:
    """n random square crops (side 50-100 % of the short side) of the photos, area-resized to size x size."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        p = src[int(rng.integers(len(src)))]
        h, w = p.shape[:2]
        s = int(rng.integers(min(h, w) // 2, min(h, w) + 1))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out[i] = cv2.resize(p[y:y + s, x:x + s], (size, size), interpolation=cv2.INTER_AREA)
    return out


def write_jpeg_folder(root: Path, x: np.ndarray, quality: int = 75) -> int:
    """ImageFolder layout (10 class folders); returns the total bytes written."""
    total = 0
    for i, img in enumerate(x):
        d = root / f"c{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
        (d / f"{i:07d}.jpg").write_bytes(buf)
        total += len(buf)
    return total


def rate_npy(path: Path, batch: int, steps: int, seed: int, to_float: bool) -> float:
    x = io.load_npy(path, mmap=True)  # (N, 64, 64, 3) uint8 memmap
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = np.sort(rng.choice(len(x), batch, replace=False))  # as dcgan_repro.train reads a minibatch
        xb = torch.from_numpy(x[idx])  # (B, 64, 64, 3) uint8: what the training loader thread hands over
        if to_float:
            xb = models.to_model_input(xb, "tanh")  # (B, 3, 64, 64) float in [-1, 1] (on the GPU in training)
    dt = time.perf_counter() - t0
    assert len(xb) == batch
    return steps * batch / dt


def rate_folder(root: Path, resize: bool, batch: int, steps: int, workers: int, seed: int) -> float:
    from torchvision import datasets, transforms

    tf = [transforms.Resize(64), transforms.CenterCrop(64)] if resize else []
    tf += [transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    ds = datasets.ImageFolder(str(root), transform=transforms.Compose(tf))
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, generator=g,
                                         drop_last=True, persistent_workers=False)
    it = iter(loader)
    next(it)  # worker start-up is not counted
    t0 = time.perf_counter()
    n = 0
    for _ in range(steps):
        try:
            xb, _ = next(it)
        except StopIteration:
            it = iter(loader)
            xb, _ = next(it)
        n += len(xb)
    dt = time.perf_counter() - t0
    assert xb.shape == (batch, 3, 64, 64)
    return n / dt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-npy", type=int, default=20_000, help="images in the .npy")
    ap.add_argument("--n-jpeg", type=int, default=2_000, help="JPEG files per baseline folder")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--npy-steps", type=int, default=300)
    ap.add_argument("--jpeg-steps", type=int, default=10)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads in this process")
    ap.add_argument("--workdir", default=None, help="where to write the test files (default: a temp folder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    src, what = photos()
    with tempfile.TemporaryDirectory(dir=args.workdir) as d:
        d = Path(d)
        t0 = time.time()
        x64 = crops(src, args.n_npy, 64, seed=0)
        io.write_dataset(d / "npy", "train", x64)
        jbytes64 = write_jpeg_folder(d / "jpeg64", x64[:args.n_jpeg])
        jbytes256 = write_jpeg_folder(d / "jpeg256", crops(src, args.n_jpeg, 256, seed=1))
        npy_bytes = (d / "npy" / "train_x.npy").stat().st_size
        print(f"data: crops of {what}; {args.n_npy} images in train_x.npy ({npy_bytes / 2**20:.0f} MiB), "
              f"{args.n_jpeg} JPEGs q75 per folder (64 px: {jbytes64 / args.n_jpeg / 1024:.1f} KiB each, 256 px: "
              f"{jbytes256 / args.n_jpeg / 1024:.1f} KiB each); made in {time.time() - t0:.0f} s; batch {args.batch}, "
              f"torch threads {args.threads}")
        raw = rate_npy(d / "npy" / "train_x.npy", args.batch, args.npy_steps, seed=0, to_float=False)
        print(f"{'memmap .npy, sorted random minibatch -> uint8 tensor (ours)':62s} {raw:10.0f} images/s")
        ours = rate_npy(d / "npy" / "train_x.npy", args.batch, args.npy_steps, seed=1, to_float=True)
        print(f"{'  ... + float NCHW in [-1, 1] on the CPU (the ratios use this)':62s} {ours:10.0f} images/s")
        for name, folder, resize in (("ImageFolder 64 px JPEG, ToTensor+Normalize", "jpeg64", False),
                                     ("ImageFolder 256 px JPEG, Resize(64)+CenterCrop (pytorch/examples)",
                                      "jpeg256", True)):
            for w in args.workers:
                r = rate_folder(d / folder, resize, args.batch, args.jpeg_steps, w, seed=0)
                print(f"{name + f', workers {w}':62s} {r:10.0f} images/s   ours is {ours / r:6.1f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
