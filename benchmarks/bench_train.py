"""Benchmark: our DCGAN training loop (dcgan_repro.train) against a plain pytorch/examples dcgan/main.py loop.

Both train the same 64x64 net (``dcgan64`` with ``recipe: pytorch_examples`` = main.py's 4x4-kernel G and D) on
the same images for the same number of steps, with the same batch, optimiser and per-batch updates (a D step on
real and G(z).detach(), then a G step on the same G(z) through the updated D), so the maths is the same:

- reference (what main.py does): ``nn.Sequential`` G and D (D ends in ``nn.Sigmoid``, loss ``nn.BCELoss``),
  images decoded from JPEG files by ``torchvision.datasets.ImageFolder`` with ``Resize``, ``CenterCrop``,
  ``ToTensor``, ``Normalize`` through a ``DataLoader`` (shuffle, ``--workers`` processes, main.py's default 2),
  D's real and fake halves backpropagated separately, a ``.item()`` per loss and per D output per step and the
  progress line printed every step (sent to a null stream), G's step also accumulating D's weight gradients.
- ours: ``train.train_gan`` (the function rule ``train_gan`` runs), reading the same images ingested once into a
  memory-mapped uint8 .npy (same Resize + CenterCrop: ``images.resize_center_crop``) by one prefetch thread,
  scaled on the device; nets and images in channels_last memory format (same maths, faster oneDNN/cuDNN
  convolutions); BCE on logits; G's step with D's weights frozen (no D weight gradients); losses and
  D(x), D(G(z)) summed on the device and read once per ``log_every`` steps; plus everything the real run writes
  (stats.jsonl, a sample grid, a resumable checkpoint and model.pt at the end).

Images/s = steps * batch / time of the whole training call (model building, data start-up, every step and the
final writes), both per wall-clock second and per CPU second (user + system time of the process and of the
DataLoader worker processes, ``getrusage``). On a machine shared with other jobs the CPU-second figure is the
stable one: with one torch thread it is what the wall clock would show on an idle machine, and it charges the
reference for its decoding workers. Every timed run is a fresh child process of this script (no allocator state,
thread pool or cache carries over from one variant to the next); variants run interleaved, ``--repeats`` times
each; the best of each is reported. The ingest into .npy is a one-off cost, printed separately.
An extra line runs ours with bf16 autocast (+ channels_last as always; not identical maths: bf16 rounding).

Efficiency (ours): the FLOPs of a step (FlopCounterMode on ``train.GanStep``, the step train_gan runs) over the
steady-state step time inside the real loop (steps after ``--warmup``, timed through ``train._after_step``, less
the main thread's run-queue wait), against the machine's limit for that work measured in the same child: every
conv / conv-transpose call of the step replayed in isolation at its shapes, memory format, precision, threads
and gradients (benchmarks/step_efficiency.py); plus a 2048^3 GEMM. The printout names the CPU model, threads and
load average, the wall/CPU ratio and the main thread's run-queue wait and idle time (time waiting on anything
but a CPU).

    python benchmarks/bench_train.py                        # ~4 min on 2 CPU cores (ngf = ndf = 32)
    python benchmarks/bench_train.py --ngf 64 --ndf 64 --steps 30 --repeats 1           # ~4 min, the 64x64 net
    python benchmarks/bench_train.py --images ../shared/data/faces/lfw_crops90 --ngf 64 --ndf 64
    python benchmarks/bench_train.py --device cuda --ngf 64 --ndf 64 --batch-size 128 --steps 300

Without ``--images`` it writes ``--n-images`` 90x90 JPEG crops of scikit-image's sample photos to a temporary
folder (real photographs; LFW-crop-sized files).
"""

from __future__ import annotations

import argparse
import io as _io
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import step_efficiency as se  # noqa: E402
from bench_runs import bare_step  # noqa: E402
from dcgan_repro import images, io, runtime, train  # noqa: E402
from dcgan_repro.data import demo  # noqa: E402

log = logging.getLogger("bench_train")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


# --- the images ---------------------------------------------------------------------------------------------


def make_jpeg_folder(root: Path, n: int, seed: int, side: int = 90) -> Path:
    """``n`` random ``side``x``side`` JPEG crops of scikit-image's colour sample photos in ``root/all/``."""
    from PIL import Image

    photos = [demo.demo_photo(k) for k in ("astronaut", "coffee", "chelsea", "rocket", "china", "flower")]
    rng = np.random.default_rng(seed)
    out = root / "all"
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        p = photos[i % len(photos)]
        s = int(rng.integers(side, min(p.shape[:2]) // 2))
        y, x = int(rng.integers(0, p.shape[0] - s)), int(rng.integers(0, p.shape[1] - s))
        crop = Image.fromarray(p[y:y + s, x:x + s]).resize((side, side), Image.BILINEAR)
        crop.save(out / f"{i:06d}.jpg", quality=90)
    return root


def image_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def ingest_npy(files: list[Path], out_dir: Path, size: int) -> float:
    """Our one-off ingest: decode + Resize + CenterCrop into train_x.npy (uint8 N x size x size x 3). Seconds."""
    t0 = time.perf_counter()
    x = np.stack([images.resize_center_crop(images.decode_image(f, pillow_only=True)[0], size)
                  for f in files])  # (N, S, S, 3)
    io.write_dataset(out_dir, "train", x)
    io.write_json(out_dir / "meta.json", {"name": "bench", "stand_in": "benchmark images"})
    return time.perf_counter() - t0


# --- the reference: pytorch/examples dcgan/main.py ---------------------------------------------------------


class RefGenerator(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
            # state size. (nc) x 64 x 64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class RefDiscriminator(nn.Module):
    def __init__(self, ndf: int, nc: int = 3) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 32 x 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 16 x 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def weights_init(m: nn.Module) -> None:
    """main.py ``weights_init`` (by module type here rather than by class-name string; same effect)."""
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def reference_loop(root: Path, *, steps: int, batch_size: int, nz: int, ngf: int, ndf: int, workers: int,
                   device: torch.device, seed: int) -> float:
    """main.py's training loop for ``steps`` minibatches; returns wall seconds (models, loader and steps)."""
    import torchvision.datasets as dset
    import torchvision.transforms as transforms

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    dataset = dset.ImageFolder(root=str(root), transform=transforms.Compose([
        transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))]))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    netG, netD = RefGenerator(nz, ngf).to(device), RefDiscriminator(ndf).to(device)
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_label, fake_label = 1, 0
    sink = _io.StringIO()
    done = 0
    while done < steps:
        for i, batch in enumerate(dataloader, 0):
            ############################
            # (1) Update D network: maximize log(D(x)) + log(1 - D(G(z)))
            ###########################
            netD.zero_grad()
            real_cpu = batch[0].to(device)
            b = real_cpu.size(0)
            label = torch.full((b,), real_label, dtype=real_cpu.dtype, device=device)
            output = netD(real_cpu)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()
            noise = torch.randn(b, nz, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            optimizerD.step()
            ############################
            # (2) Update G network: maximize log(D(G(z)))
            ###########################
            netG.zero_grad()
            label.fill_(real_label)
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optimizerG.step()
            print("[%d/%d] Loss_D: %.4f Loss_G: %.4f D(x): %.4f D(G(z)): %.4f / %.4f"
                  % (done, steps, errD.item(), errG.item(), D_x, D_G_z1, D_G_z2), file=sink)
            done += 1
            if done == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


# --- ours ---------------------------------------------------------------------------------------------------


def bench_run(*, steps: int, batch_size: int, nz: int, ngf: int, ndf: int, seed: int) -> dict:
    """The run config ``train.train_gan`` gets: dcgan64, pytorch_examples recipe, nothing written until the end."""
    return {"dataset": "faces", "model": "dcgan64", "recipe": "pytorch_examples", "ngf": ngf, "ndf": ndf, "nz": nz,
            "batch_size": batch_size, "lr": 2e-4, "beta1": 0.5, "weight_decay": 0.0, "epochs": 10**6,
            "decay_epochs": 0, "snapshot_epochs": [10**6], "checkpoint_every": 10**6, "sample_every": 10**6,
            "log_every": 50, "max_steps": steps, "seed": seed}


def our_loop(data_dir: Path, work: Path, run: dict, *, device: str, precision: str, tag: str) -> None:
    """``train.train_gan`` for ``run["max_steps"]`` minibatches (pytorch_examples recipe)."""
    out = work / tag
    train.train_gan(run, "bench", data_dir, out / "model.pt", out / "summary.json", out / "ck",
                    {"preset": "bench", "device": device, "precision": precision})


def child(a: dict) -> dict:
    """One timed run in this (fresh) process: the reference loop or ours; ours also measures the steady-state
    step (after ``warmup`` steps), and with ``limit`` the step's FLOPs, its layers in isolation and a GEMM."""
    if a["threads"]:
        torch.set_num_threads(a["threads"])
    device = runtime.resolve_device(a["device"])
    sync = se.cuda_sync(device)
    out = {"variant": a["variant"], "threads": torch.get_num_threads(), "machine": se.machine(device)}
    if a["variant"] == "reference":
        t0 = se.Mark.now(sync)
        reference_loop(Path(a["root"]), steps=a["steps"], batch_size=a["batch_size"], nz=a["nz"], ngf=a["ngf"],
                       ndf=a["ndf"], workers=a["workers"], device=device, seed=a["seed"])
        out["whole"] = se.Span.between(t0, se.Mark.now(sync)).__dict__
        return out
    precision = "bf16" if a["variant"] == "ours_bf16" else "fp32"
    run = bench_run(steps=a["steps"], batch_size=a["batch_size"], nz=a["nz"], ngf=a["ngf"], ndf=a["ndf"],
                    seed=a["seed"])
    warm, last = a["warmup"], a["steps"] - 1
    marks = se.StepMarks(sync, frozenset({warm, last}))
    train._after_step = marks
    t0 = se.Mark.now(sync)
    our_loop(Path(a["data"]), Path(a["work"]), run, device=device.type, precision=precision,
             tag=f"{a['variant']}_{a['repeat']}")
    out["whole"] = se.Span.between(t0, se.Mark.now(sync)).__dict__
    out["loop"] = marks.span(warm, last).scaled(1 / (last - warm)).__dict__
    nets, steps = bare_step(run, device, precision)
    flops, _ = se.count_flops(lambda: steps(0, 2))
    out["flops_per_step"] = flops / 2
    if a["limit"]:
        times = se.layer_limit(se.record_layer_calls(list(nets), lambda: steps(0, 2)), device)
        out["limit"] = {"flops": sum(t.n * t.flops for t in times) / 2,
                        "seconds": sum(t.n * t.seconds for t in times) / 2,
                        "table": se.layer_table(times, out["loop"]["wall"] - out["loop"]["runqueue"], steps=2)}
        out["gemm_gflops"] = se.gemm_gflops(2048, torch.bfloat16 if precision == "bf16" else torch.float32, device)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", help="folder of images (searched recursively); default: generated JPEG crops")
    p.add_argument("--n-images", type=int, default=4096, help="generated images when --images is not given")
    p.add_argument("--steps", type=int, default=60, help="minibatches per timed run")
    p.add_argument("--warmup", type=int, default=5, help="first steps left out of ours' steady-state step time")
    p.add_argument("--batch-size", type=int, default=64, help="main.py default: 64")
    p.add_argument("--nz", type=int, default=100)
    p.add_argument("--ngf", type=int, default=32, help="G width (paper/main.py: 64-128; 32 keeps CPU time short)")
    p.add_argument("--ndf", type=int, default=32, help="D width")
    p.add_argument("--workers", type=int, default=2, help="reference DataLoader workers (main.py default: 2)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (1 = what rule train_gan uses on a CPU; 0 = torch's default)")
    p.add_argument("--repeats", type=int, default=2, help="timed runs of each variant (best reported)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--no-bf16", action="store_true", help="skip the extra bf16 + channels_last line")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    runtime.setup_logging(None, level=logging.WARNING)
    if a.child:
        print(json.dumps(child(json.loads(a.child))))
        return 0
    if a.steps < a.warmup + 3:
        raise SystemExit(f"--steps {a.steps} must exceed --warmup {a.warmup} by at least 3")
    device = runtime.resolve_device(a.device)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        if a.images:
            root = Path(a.images)
            source = f"{len(image_files(root))} images from {root}"
        else:
            root = make_jpeg_folder(tmp / "jpeg", a.n_images, a.seed)
            source = f"{a.n_images} 90x90 JPEG crops of scikit-image sample photos"
        files = image_files(root)
        if len(files) < a.batch_size:
            raise SystemExit(f"--images {root}: {len(files)} images, fewer than --batch-size {a.batch_size}")
        if a.images and not any(p.is_dir() for p in root.iterdir()):
            raise SystemExit(f"--images {root}: ImageFolder needs the images inside sub-folders of it")
        ingest_s = ingest_npy(files, tmp / "npy", 64)
        names = ["reference", "ours"]
        if not a.no_bf16 and not runtime.native_bf16(device):
            print(f"bench_train: no bf16 line: {device} has no native bf16 (it would be emulated; precision bf16 is "
                  "refused there)")
        elif not a.no_bf16:
            names.append("ours_bf16")
        common = {"root": str(root), "data": str(tmp / "npy"), "work": str(tmp), "steps": a.steps,
                  "warmup": a.warmup, "batch_size": a.batch_size, "nz": a.nz, "ngf": a.ngf, "ndf": a.ndf,
                  "workers": a.workers, "threads": a.threads, "device": a.device, "seed": a.seed}
        res: dict[str, list[dict]] = {k: [] for k in names}
        for k in range(a.repeats):
            for name in names:
                limit = k == 0 and name.startswith("ours")
                res[name].append(se.run_child([__file__, "--child",
                                               json.dumps({**common, "variant": name, "repeat": k, "limit": limit})]))
    ips = {n: a.steps * a.batch_size / min(r["whole"]["wall"] for r in rs) for n, rs in res.items()}
    ips_cpu = {n: a.steps * a.batch_size / min(r["whole"]["cpu"] for r in rs) for n, rs in res.items()}
    first = res["ours"][0]
    print(f"bench_train: dcgan64 pytorch_examples net, ngf={a.ngf} ndf={a.ndf} nz={a.nz}, batch {a.batch_size}, "
          f"{a.steps} steps (D step + G step each), device {device}, torch threads {first['threads']}, "
          f"reference DataLoader workers {a.workers}; data: {source}; best of {a.repeats}, each run in a fresh process")
    print(f"  machine: {first['machine']}")
    print(f"  one-off ingest into .npy (ours, not in the timings): {len(files)} images in {ingest_s:.1f} s")
    print(f"  {'':<10} {'images/s (wall)':>16} {'images/CPU-s':>14}   whole call per run: wall s / CPU s "
          "(wall/CPU; main-thread run-queue wait, idle)")
    for name, rs in res.items():
        spans = [se.Span(**r["whole"]) for r in rs]
        runs = ", ".join(f"{w.wall:.1f}/{w.cpu:.1f} ({w.wall / w.cpu:.2f}; {w.runqueue:.1f}, {w.idle:.1f})"
                         for w in spans)
        print(f"  {name:<10} {ips[name]:16.1f} {ips_cpu[name]:14.1f}   {runs}")
    print(f"  ratio ours / reference (fp32, same maths): {ips['ours'] / ips['reference']:.2f}x wall, "
          f"{ips_cpu['ours'] / ips_cpu['reference']:.2f}x per CPU-second (target >= 1.25x)")
    if "ours_bf16" in ips:
        print(f"  extra: ours bf16 autocast + channels_last / reference fp32: "
              f"{ips['ours_bf16'] / ips['reference']:.2f}x wall, "
              f"{ips_cpu['ours_bf16'] / ips_cpu['reference']:.2f}x per CPU-second")
    for name in names[1:]:
        best = min(res[name], key=lambda r: r["loop"]["wall"] - r["loop"]["runqueue"])
        lim = next(r for r in res[name] if "limit" in r)
        loop, s_step = best["loop"], best["loop"]["wall"] - best["loop"]["runqueue"]
        achieved = best["flops_per_step"] / s_step / 1e9
        limit = lim["limit"]["flops"] / lim["limit"]["seconds"] / 1e9
        whole = min(r["whole"]["wall"] - r["whole"]["runqueue"] for r in res[name])
        print(f"  {name} efficiency: {best['flops_per_step'] / 1e9:.2f} GFLOP per step (FlopCounterMode); steady "
              f"step {1e3 * s_step:.1f} ms busy ({1e3 * loop['wall']:.1f} wall, {1e3 * loop['cpu']:.1f} CPU; "
              f"wall/CPU {loop['wall'] / loop['cpu']:.2f}, idle {1e3 * se.Span(**loop).idle:.1f} ms) = "
              f"{achieved:.1f} GFLOP/s; limit (the step's layers in isolation) {limit:.1f} GFLOP/s -> efficiency "
              f"{achieved / limit:.2f} (target >= 0.8); whole call incl. start-up and final writes "
              f"{best['flops_per_step'] * a.steps / whole / 1e9 / limit:.2f}; 2048^3 GEMM "
              f"{lim['gemm_gflops']:.1f} GFLOP/s")
        for line in lim["limit"]["table"]:
            print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
