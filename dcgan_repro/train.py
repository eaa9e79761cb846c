"""DCGAN training (paper Sec. 3-4; docs/REFERENCE.md Sec. 2), resumable at any step.

Objective: BCE on D's logits; D maximises log D(x) + log(1 - D(G(z))) (code: ``d_cost = bce(p_real, 1) +
bce(p_gen, 0)``, a sum); G minimises the non-saturating ``bce(D(G(z)), 1)``. Optimiser: Adam(lr, betas=(beta1,
0.999)) with the L2 penalty added to the gradient before Adam (``torch.optim.Adam(weight_decay=...)``, as the
code's ``Regularizer(l2=...)``; not AdamW). Learning rate: constant, then over the last ``decay_epochs`` epochs
``lr * (epochs - e) / decay_epochs`` in (0-based) epoch e, which is the code's per-epoch decrement
``lrt -= lr / niter_decay`` step for step.

Recipes (``run["recipe"]``):

- ``paper`` (Newmu/dcgan_code ``train_*.py``): one update per minibatch, G and D alternating, G first
  (``if n_updates % (k+1) == 0: _train_g else: _train_d`` with k = 1). So D sees every other real minibatch;
  G steps read only the labels of their minibatch (conditional nets are conditioned on real labels).
- ``pytorch_examples`` (pytorch/examples dcgan/main.py): per minibatch a D step on real and G(z).detach(),
  then a G step on the same G(z) through the updated D.

Data path: the training split is a memory-mapped uint8 .npy (``io.read_dataset``). Each epoch's order is a
permutation that is a pure function of (seed, epoch), so resuming needs only the step count. A minibatch is
one fancy-indexed read of sorted row indices from the memmap (into pinned memory on CUDA), moved as uint8 and
scaled on the device; one background thread reads the next minibatches while the current one trains. No
torch DataLoader: there is no decoding or augmentation to parallelise, and worker processes would each map the
file and add start-up time that dominates the small runs.

Outputs: ``model.pt`` and ``epochNNN.pt`` snapshots (docs/CONTRACTS.md "Models"), ``stats.jsonl`` (one JSON
line per ``log_every`` steps) and ``samples/stepNNNNNNN.png`` (a grid from a fixed z every ``sample_every``
steps) next to model.pt, and the train summary JSON. Resumable checkpoints (nets, optimisers, step, all RNG states)
go to ``checkpoint_dir`` every ``checkpoint_minutes`` of wall time, every ``checkpoint_every`` steps and at each
epoch end where that is > 0, and at once on SIGTERM / SIGUSR1 / Ctrl-C, after which the run stops
(:mod:`dcgan_repro.preemption`); a rerun resumes from the newest one that loads (:mod:`dcgan_repro.resumable`), and
on CPU ends with bitwise the same weights as an uninterrupted run (tests/test_train.py). One that does not load
(cut short by a crash or a full disk) is renamed to ``stepNNNNNNNNN.pt.corrupt`` with a warning and the next older
one is tried; old ones are pruned only after a new one is in place. Checkpoints are removed once all epochs are
done (so a forced rerun retrains); a ``max_steps`` stop keeps them,
so raising ``max_steps`` (or setting 0) continues the same run.

Speed (benchmarks/bench_train.py against a plain pytorch/examples dcgan/main.py loop with the same nets, batch
and updates; benchmarks/bench_runs.py per run of config.yaml, with the FLOP efficiency against the step's own
layers): nets and images in channels_last on every device (same maths, faster oneDNN/cuDNN convolutions), G's
step with D's weights frozen (no D weight gradients), no ``.item()`` per step, the memmap data path, Adam's
multi-tensor (foreach) kernel, and glibc told to keep freed memory for reuse (``runtime.tune_allocator``: no
page faults per step); the fp32 results on the CPU are bitwise those of the plain loop (tests/test_train_speed.py).
On a GPU nothing in a step waits for the device: z and labels go up from pinned memory, and the stats sums come
back by an asynchronous copy, read when they have arrived (at a checkpoint at the latest). ``compile: true`` in
``common`` adds torch.compile, falling back to eager where it fails (:func:`compiled_step`). The measured numbers,
and what was tried and dropped, are in benchmarks/README.md.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm import tqdm

from . import io, models, preemption, resumable, runtime
from .images import image_grid

log = logging.getLogger(__name__)

CHECKPOINT_MINUTES = 20.0     # for run dicts built by hand (tests, benchmarks); workflow runs set checkpoint_minutes
PREFETCH = 2                  # minibatches read ahead by the loader thread
# Collapse detector: D's loss (real + fake BCE) averaged over a logging window below this floor, for this many
# consecutive steps, means D separates real from generated perfectly and G's gradient has vanished.
D_LOSS_FLOOR = 1e-3
COLLAPSE_STEPS = 2000
STAT_NAMES = ("loss_d", "n_d", "loss_g", "n_g", "d_real", "d_fake")


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss or D has won outright for many steps."""


@dataclass
class _State:
    """Everything besides nets and optimisers that decides the rest of the run (saved in checkpoints)."""

    step: int = 0                                  # minibatches done (global, over all epochs)
    snapshots: dict[int, str] = field(default_factory=dict)
    low_d_steps: int = 0                           # consecutive steps with D loss below D_LOSS_FLOOR
    train_time_s: float = 0.0                      # training wall time summed over resumed sessions
    resumed_from: int | None = None


def _after_step(step: int) -> None:
    """Hook called after every completed step (tests replace it to inject a crash at a chosen step)."""


# --- data ----------------------------------------------------------------------------------------------------


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The shuffled order of epoch ``epoch``: a pure function of (seed, epoch), nothing to save on resume."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


class _Minibatches:
    """Reads minibatch ``step`` = rows ``order[b*bs:(b+1)*bs]`` of epoch ``step // steps_per_epoch``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, pin: bool,
                 need_images: Callable[[int], bool]) -> None:
        self.x, self.y, self.bs, self.seed, self.pin, self.need_images = x, y, batch_size, seed, pin, need_images
        self.steps_per_epoch = len(x) // batch_size     # the last partial minibatch is dropped (BN on a tiny
        self._order: tuple[int, np.ndarray] | None = None  # batch is noisy); it differs every epoch

    def load(self, step: int) -> tuple[int, Tensor | None, Tensor]:
        epoch, b = divmod(step, self.steps_per_epoch)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.seed, epoch, len(self.x)))
        idx = np.sort(self._order[1][b * self.bs:(b + 1) * self.bs])    # sorted: near-sequential memmap reads
        yb = torch.from_numpy(self.y[idx])                               # (bs,) int64
        xb = None
        if self.need_images(step):
            xb = torch.from_numpy(self.x[idx])                           # (bs, H, W, C) uint8, one read
        if self.pin:   # pinned: the copy to the GPU is asynchronous (from pageable memory it syncs the stream)
            yb, xb = yb.pin_memory(), None if xb is None else xb.pin_memory()
        return step, xb, yb

    def iterate(self, steps: Iterable[int], depth: int = PREFETCH) -> Iterator[tuple[int, Tensor | None, Tensor]]:
        """Minibatches for ``steps`` in order, read ``depth`` ahead by one background thread."""
        steps = iter(steps)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="minibatches") as pool:
            pending = collections.deque(pool.submit(self.load, s) for s in itertools.islice(steps, depth))
            while pending:
                fut = pending.popleft()
                nxt = next(steps, None)
                if nxt is not None:
                    pending.append(pool.submit(self.load, nxt))
                yield fut.result()


def _load_data(data_dir: io.PathLike, run: dict[str, Any], name: str, netG: nn.Module,
               holdout: dict[str, Any] | None = None):
    x, y = io.read_dataset(data_dir, "train")
    if holdout:
        # MNIST (mnist/train_cond_dcgan.py): train on the 50k split only; the last 10k after the seed-42 shuffle
        # are the validation images that model selection in Table 3 uses, so they must stay unseen.
        from .splits import validation_split

        keep, _ = validation_split(len(x), holdout["validation_size"], holdout["split_seed"])
        keep = np.sort(keep)
        x, y = np.asarray(x[keep]), np.asarray(y[keep])
        log.info("run %s: training on %d of %d images (validation split of %d held out, seed %d)", name,
                 len(x), len(keep) + holdout["validation_size"], holdout["validation_size"], holdout["split_seed"])
    c, h, w = netG.image_shape
    if x.ndim != 4 or x.shape[1:] != (h, w, c):
        raise ValueError(f"run {name!r}: model {run['model']!r} needs {h}x{w}x{c} images, but "
                         f"{Path(data_dir) / 'train_x.npy'} holds {' x '.join(map(str, x.shape[1:]))} "
                         f"(check runs.{name}.dataset / runs.{name}.model)")
    if len(x) < 2:
        raise ValueError(f"run {name!r}: {Path(data_dir) / 'train_x.npy'} holds {len(x)} images; training "
                         f"needs at least 2 (batchnorm uses batch statistics)")
    if netG.n_classes and (y.min() < 0 or y.max() >= netG.n_classes):
        raise ValueError(f"run {name!r}: model {run['model']!r} is class-conditional and needs labels in "
                         f"[0, {netG.n_classes}), but {Path(data_dir) / 'train_y.npy'} holds "
                         f"[{y.min()}, {y.max()}]")
    return x, y, io.read_meta(data_dir)


# --- schedule, losses, health --------------------------------------------------------------------------------


def lr_at(run: dict[str, Any], epoch: int) -> float:
    """Learning rate of 0-based epoch ``epoch``: constant, then linear to 0 over the last ``decay_epochs``."""
    d = run["decay_epochs"]
    return run["lr"] * (min(1.0, (run["epochs"] - epoch) / d) if d > 0 else 1.0)


def _bce(logits: Tensor, target: float) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits, target, dtype=torch.float))


def _check_health(name: str, window: dict[str, Any], state: _State) -> None:
    """Stop on a non-finite loss, or when D's loss stays below D_LOSS_FLOOR for COLLAPSE_STEPS steps."""
    losses = [window[k] for k in ("loss_d", "loss_g") if window[k] is not None]
    if not all(math.isfinite(v) for v in losses):
        raise TrainingDiverged(
            f"run {name!r}: non-finite loss (loss_d={window['loss_d']}, loss_g={window['loss_g']}) in steps "
            f"{window['step'] - window['steps']}..{window['step']}; training diverged. The last good checkpoint "
            f"is kept; lower runs.{name}.lr or change runs.{name}.seed, then rerun.")
    if window["loss_d"] is not None and window["loss_d"] < D_LOSS_FLOOR:
        state.low_d_steps += window["steps"]
    elif window["loss_d"] is not None:
        state.low_d_steps = 0
    if state.low_d_steps >= COLLAPSE_STEPS:
        raise TrainingDiverged(
            f"run {name!r}: D's loss has stayed below {D_LOSS_FLOOR} for {state.low_d_steps} steps (up to step "
            f"{window['step']}: D(x)={window['d_real']:.4f}, D(G(z))={window['d_fake']:.4f}); D rejects every "
            f"sample and G gets no gradient: the run has collapsed. Change runs.{name}.seed or lower "
            f"runs.{name}.lr and rerun.")


def memory_format(run: dict[str, Any]) -> torch.memory_format | None:
    """channels_last for every conv net, on every device and precision: same maths, oneDNN/cuDNN pick faster conv
    kernels (per-net step times in benchmarks/README.md). None for the MLP, which has no convs."""
    return torch.channels_last if run["model"] != "mnist_cond_mlp" else None

# --- optimisers ----------------------------------------------------------------------------------------------

ADAM_IMPLS = ("foreach", "single", "fused")
ADAM_IMPL = "foreach"


def set_adam_impl(opt: torch.optim.Optimizer, impl: str | None = None) -> None:
    """Which of torch's Adam kernels ``opt`` runs: ``foreach`` (multi-tensor; bitwise equal to ``single``, the
    per-parameter loop that torch picks for CPU tensors; fewer temporaries, so far fewer fresh pages per step: an
    MNIST DCGAN G update took 34 ms against 64 ms (median, one thread, glibc's default allocator) and about the
    same once :func:`dcgan_repro.runtime.tune_allocator` is in force) or ``fused`` (one kernel, 6-9 ms, but it
    rounds differently, so the same seed gives other fp32 weights: benchmarks only, benchmarks/README.md).
    None: ``ADAM_IMPL``."""
    impl = impl or ADAM_IMPL
    if impl not in ADAM_IMPLS:
        raise ValueError(f"Adam implementation must be one of {', '.join(ADAM_IMPLS)}, got {impl!r}")
    for group in opt.param_groups:
        group["foreach"], group["fused"] = impl == "foreach", impl == "fused"


def make_optimizers(netG: nn.Module, netD: nn.Module, run: dict[str, Any],
                    impl: str | None = None) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam(lr, betas=(beta1, 0.999)) for G and for D, with the L2 penalty added to the gradient (module
    docstring); ``impl`` as in :func:`set_adam_impl`."""
    adam = dict(lr=run["lr"], betas=(run["beta1"], 0.999), weight_decay=run["weight_decay"])
    optG, optD = torch.optim.Adam(netG.parameters(), **adam), torch.optim.Adam(netD.parameters(), **adam)
    for opt in (optG, optD):
        set_adam_impl(opt, impl)                    # before the first step, which creates the state it decides
    return optG, optD


# --- one training step ---------------------------------------------------------------------------------------


class GanStep:
    """One minibatch update of :func:`train_gan`: the recipe's D step and/or G step (module docstring, "Recipes").

    ``gan_step(step, real, z, y)`` updates the nets and returns that step's contribution to the running stats,
    (len(STAT_NAMES),) on the device: loss_d, n_d, loss_g, n_g, mean D(x), mean D(G(z)) (zeros for the half a paper
    step skips). Nothing in it waits for the device. ``real`` (bs, C, H, W) may be None on a paper G step; ``y``
    (bs,) int64 labels for a class-conditional net, else None. A callable of its own so that the benchmarks time,
    count and profile exactly the step that training runs.
    """

    def __init__(self, netG: nn.Module, netD: nn.Module, optG: torch.optim.Optimizer, optD: torch.optim.Optimizer,
                 *, paper: bool, device: torch.device, precision: str) -> None:
        self.netG, self.netD, self.optG, self.optD = netG, netD, optG, optD
        self.paper, self.device, self.precision = paper, device, precision
        self.one, self.zero = torch.ones((), device=device), torch.zeros((), device=device)

    def updates(self, step: int) -> tuple[bool, bool]:
        """(D step, G step) of minibatch ``step``: paper alternates G first; pytorch_examples does both."""
        return (not self.paper or step % 2 == 1), (not self.paper or step % 2 == 0)

    def __call__(self, step: int, real: Tensor | None, z: Tensor, y: Tensor | None) -> Tensor:
        netG, netD, device, precision = self.netG, self.netD, self.device, self.precision
        stats = [self.zero] * len(STAT_NAMES)
        d_step, g_step = self.updates(step)
        fake = None
        if d_step:   # D: maximise log D(x) + log(1 - D(G(z)))
            with runtime.autocast(device, precision):
                if self.paper:
                    with torch.no_grad():
                        fake = netG(z, y)                                          # (bs, C, H, W)
                else:
                    fake = netG(z, y)                                              # reused by the G step
                logit_real = netD(real, y)                                         # (bs,)
                logit_fake = netD(fake.detach(), y)                                # (bs,)
            loss_d = _bce(logit_real, 1.0) + _bce(logit_fake, 0.0)
            self.optD.zero_grad(set_to_none=True)
            loss_d.backward()
            self.optD.step()
            stats[0], stats[1] = loss_d.detach(), self.one
            stats[4] = torch.sigmoid(logit_real.detach().float()).mean()
            stats[5] = torch.sigmoid(logit_fake.detach().float()).mean()
        if g_step:   # G: minimise -log D(G(z)) (non-saturating), gradients through D into G only
            with models.frozen(netD), runtime.autocast(device, precision):
                if fake is None:
                    fake = netG(z, y)
                loss_g = _bce(netD(fake, y), 1.0)
            self.optG.zero_grad(set_to_none=True)
            loss_g.backward()
            self.optG.step()
            stats[2], stats[3] = loss_g.detach(), self.one
        return torch.stack(stats)


def _probe_batch(x: np.ndarray, y: np.ndarray, bs: int, netG: nn.Module, dist: str, seed: int,
                 device: torch.device, mem: torch.memory_format | None) -> tuple[Tensor, Tensor, Tensor | None]:
    """(real, z, y) of the first ``bs`` training images, for :func:`compiled_step`'s trial (own z generator)."""
    real = models.to_model_input(torch.from_numpy(np.array(x[:bs])).to(device), netG.output_range)  # a copy
    z = models.sample_z(bs, netG.nz, dist, torch.Generator().manual_seed(seed + 2), device)
    yd = torch.from_numpy(np.array(y[:bs])).to(device) if netG.n_classes else None
    return (real if mem is None else real.contiguous(memory_format=mem)), z, yd


def compiled_step(gan_step: GanStep, probe: tuple[Tensor, Tensor, Tensor | None], name: str,
                  zgen: torch.Generator) -> GanStep:
    """``gan_step`` with its nets through ``torch.compile`` (inductor), or ``gan_step`` itself where compiling
    fails here (torch without it, no C++ compiler, an unsupported op), with a warning: the run then trains
    exactly as without ``compile``.

    The compiled step is tried on ``probe`` = (real, z, y) for every kind of step the recipe makes, then nets,
    optimisers and RNGs are put back bitwise, so the trial leaves no trace in the run. Checkpoints keep using the
    eager nets (same parameters, plain state_dict keys). Measured on an AVX2 CPU: slower than eager and a minute
    to compile (benchmarks/README.md); meant for GPUs.
    """
    netG, netD, optG, optD = gan_step.netG, gan_step.netD, gan_step.optG, gan_step.optD
    saved = resumable.training_state(netG, netD, optG, optD, zgen)
    try:
        fast = GanStep(torch.compile(netG), torch.compile(netD), optG, optD, paper=gan_step.paper,
                       device=gan_step.device, precision=gan_step.precision)
        for step in ((0, 1) if gan_step.paper else (0,)):       # a paper G step, then a D step
            fast(step, *probe)
    except MemoryError:
        raise
    except Exception as e:   # noqa: BLE001 - whatever stops compiling means: train eagerly
        log.warning("run %s: compile requested but torch.compile fails here (%s); training without it",
                    name, resumable.error_text(e))
        fast = gan_step
    finally:
        resumable.restore_training_state(saved, netG, netD, optG, optD, zgen)
        for opt in (optG, optD):
            opt.zero_grad(set_to_none=True)
    return fast


# --- progress: stats.jsonl, sample grids, tqdm into the log --------------------------------------------------


class _LogStream:
    """File-like object that sends tqdm's bar to the logger (the rule's log file), one line per refresh."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger

    def write(self, s: str) -> None:
        s = s.strip("\r\n ")
        if s:
            self.logger.info(s)

    def flush(self) -> None:
        pass


def save_grid(path: io.PathLike, images: np.ndarray, cols: int) -> None:
    """Write uint8 (N, H, W, C) images as one PNG sheet, atomically: (rows*(H+2), cols*(W+2)[, C]), each image in
    a 1-pixel black frame, so 2-pixel black gaps between images (:func:`dcgan_repro.images.image_grid`)."""
    sheet = image_grid(images, cols, pad=2, pad_value=0, border=1)  # (rows*(H+2), cols*(W+2), C)
    with io.atomic_path(path) as tmp:
        Image.fromarray(sheet[..., 0] if sheet.shape[2] == 1 else sheet).save(tmp, format="PNG")


def _trim_stats(path: Path, step: int) -> None:
    """On resume keep only the stats lines up to the resumed step (the steps after it are redone). A line cut
    short by a kill in mid-append is dropped too."""
    if not path.exists():
        return
    keep = []
    for ln in path.read_text().splitlines():
        try:
            rec = json.loads(ln)
        except ValueError:
            continue                                   # torn line (killed while appending) or blank
        if rec["step"] <= step:
            keep.append(ln)
    io.write_text(path, "".join(ln + "\n" for ln in keep))


# --- the training run ----------------------------------------------------------------------------------------


def train_gan(run: dict[str, Any], name: str, data_dir: io.PathLike, out_model: io.PathLike,
              out_summary: io.PathLike, checkpoint_dir: io.PathLike, common: dict[str, Any],
              holdout: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train one DCGAN run (config.yaml ``runs.<name>``) and write model.pt, snapshots and a summary JSON.

    ``common`` = {"preset", "device", "precision"[, "compile"]}; ``compile: true`` runs the step's nets through
    ``torch.compile`` where that works (:func:`compiled_step`). ``holdout`` = {"validation_size", "split_seed"} keeps a
    validation split out of training (MNIST, Table 3). Returns the summary written to ``out_summary``.
    """
    t0 = time.time()
    runtime.tune_allocator()
    device = runtime.resolve_device(common.get("device", "auto"))
    precision = runtime.job_precision(common, device)
    runtime.seed_everything(run["seed"])
    netG, netD = models.build_models(run)
    x, y, data_meta = _load_data(data_dir, run, name, netG, holdout)
    conditional = netG.n_classes > 0
    paper = run["recipe"] == "paper"
    bs, seed, epochs = min(run["batch_size"], len(x)), run["seed"], run["epochs"]
    if bs < run["batch_size"]:
        log.warning("run %s: only %d training images in %s, fewer than runs.%s.batch_size = %d: every step "
                    "uses all %d images as one minibatch", name, len(x), data_dir, name, run["batch_size"], bs, bs)
    log_every = run["log_every"]
    dist = models.z_dist(run)

    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    mem = memory_format(run)
    netG.to(device, memory_format=mem or torch.contiguous_format).train()
    netD.to(device, memory_format=mem or torch.contiguous_format).train()
    optG, optD = make_optimizers(netG, netD, run)
    zgen = torch.Generator().manual_seed(seed)      # z of every step, drawn on the CPU (same z on every device)

    batches = _Minibatches(x, y, bs, seed, pin=cuda, need_images=lambda s: not paper or s % 2 == 1)
    spe = batches.steps_per_epoch
    total = epochs * spe
    stop = min(total, run["max_steps"]) if run.get("max_steps") else total

    state = _State()
    ckpt_dir = Path(checkpoint_dir)
    fingerprint = resumable.fingerprint_of(run, x)
    resumable.load_newest(ckpt_dir, name, netG, netD, optG, optD, zgen, state, fingerprint)
    for opt in (optG, optD):
        set_adam_impl(opt)                          # a loaded state_dict brings the saving run's setting back
    out_dir = Path(out_model).parent
    stats_path, samples_dir = out_dir / "stats.jsonl", out_dir / "samples"
    if state.resumed_from is None:
        stats_path.unlink(missing_ok=True)
        shutil.rmtree(samples_dir, ignore_errors=True)
    else:
        _trim_stats(stats_path, state.step)
    log.info("run %s: %s/%s recipe, %d images %s, %d steps/epoch x %d epochs (stop at step %d), batch %d, "
             "device %s, %s, G %d params, D %d params", name, run["model"], run["recipe"], len(x),
             "x".join(map(str, x.shape[1:])), spe, epochs, stop, bs, device, precision,
             models.n_params(netG), models.n_params(netD))

    # fixed z (and labels) for the sample grids: the same across the whole run and across resumes
    n_fixed, cols = (100, 10) if conditional else (64, 8)
    fixed_z = models.sample_z(n_fixed, netG.nz, dist, torch.Generator().manual_seed(seed + 1), device)
    fixed_y = (torch.arange(n_fixed) % 10).to(device) if conditional else None

    def provenance(extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return io.provenance(config=run, seed=seed, inputs={"data": data_dir}, started=t0,
                             extra={"run": name, "preset": common.get("preset"), "precision": precision,
                                    "recipe": run["recipe"], **(extra or {})})

    def write_samples(step: int) -> None:
        with torch.no_grad(), runtime.autocast(device, precision):
            imgs = models.to_uint8(netG(fixed_z, fixed_y), netG.output_range)
        save_grid(samples_dir / f"step{step:07d}.png", imgs, cols)

    gan_step = GanStep(netG, netD, optG, optD, paper=paper, device=device, precision=precision)
    if common.get("compile"):
        gan_step = compiled_step(gan_step, _probe_batch(x, y, bs, netG, dist, seed, device, mem), name, zgen)
    acc = torch.zeros(len(STAT_NAMES), device=device)   # running sums on the device: no per-step sync
    window_start, window_t = state.step, time.time()
    bar = tqdm(total=stop, initial=state.step, desc=name, file=_LogStream(log), mininterval=10, ascii=True,
               ncols=110, unit="step")
    # closed stats windows whose sums are still on their way from the GPU: (step, steps, seconds, lr, sums, event)
    pending: collections.deque[tuple[int, int, float, float, Tensor, Any]] = collections.deque()

    def write_window(step: int, steps: int, dt: float, lr: float, sums: Tensor, _ready: Any) -> None:
        v = dict(zip(STAT_NAMES, sums.tolist()))
        rec = {"step": step, "epoch": step / spe, "lr": lr,
               "loss_d": v["loss_d"] / v["n_d"] if v["n_d"] else None,
               "loss_g": v["loss_g"] / v["n_g"] if v["n_g"] else None,
               "d_real": v["d_real"] / v["n_d"] if v["n_d"] else None,
               "d_fake": v["d_fake"] / v["n_d"] if v["n_d"] else None,
               "steps": steps, "steps_per_s": steps / max(dt, 1e-9), "images_per_s": steps * bs / max(dt, 1e-9)}
        with open(stats_path, "a") as f:                # append-only log; trimmed on resume
            f.write(json.dumps(rec) + "\n")
        shown = (("loss_D", "loss_d"), ("loss_G", "loss_g"), ("D(x)", "d_real"), ("D(G(z))", "d_fake"))
        bar.set_postfix_str(" ".join(f"{label}={rec[k]:.3f}" for label, k in shown if rec[k] is not None),
                            refresh=False)
        _check_health(name, rec, state)

    def flush(step: int, wait: bool) -> None:
        """Close the stats window that ends at ``step`` and write the lines of the closed windows whose sums have
        reached the host; ``wait``: all of them (before a checkpoint, so stats.jsonl matches it on resume). On a
        GPU the sums come back by an asynchronous copy, so a logging step does not wait for the GPU to drain; on
        the CPU every line is written at once."""
        nonlocal window_start, window_t
        if step != window_start:
            now, ready = time.time(), None
            if cuda:
                sums = acc.to("cpu", non_blocking=True)  # into pinned memory; read once ``ready`` has passed
                ready = torch.cuda.Event()
                ready.record()
            else:
                sums = acc.clone()
            acc.zero_()
            pending.append((step, step - window_start, now - window_t, optG.param_groups[0]["lr"], sums, ready))
            window_start, window_t = step, now
        while pending and (wait or pending[0][5] is None or pending[0][5].query()):
            window = pending.popleft()
            if window[5] is not None:
                window[5].synchronize()
            write_window(*window)

    stats_path.parent.mkdir(parents=True, exist_ok=True)
    session_t0 = time.time()
    epoch_lr = None
    clock = preemption.CheckpointClock(run["checkpoint_every"], run.get("checkpoint_minutes", CHECKPOINT_MINUTES))
    with preemption.StopRequest() as stop_request:    # SIGTERM / SIGUSR1 / Ctrl-C: checkpoint, then stop
        for step, xb, yb in batches.iterate(range(state.step, stop)):
            epoch = step // spe
            if epoch != epoch_lr:
                for opt in (optG, optD):
                    for group in opt.param_groups:
                        group["lr"] = lr_at(run, epoch)
                epoch_lr = epoch
            yd = yb.to(device, non_blocking=True) if conditional else None
            z = models.sample_z(bs, netG.nz, dist, zgen)                              # (bs, nz), on the CPU
            if cuda:     # pinned, so the copy does not wait for the GPU to finish the previous step
                z = z.pin_memory().to(device, non_blocking=True)
            real = None
            if xb is not None:
                real = models.to_model_input(xb.to(device, non_blocking=True), netG.output_range)  # (bs, C, H, W)
                if mem is not None:
                    real = real.contiguous(memory_format=mem)
            acc.add_(gan_step(step, real, z, yd))

            state.step = done = step + 1
            bar.update(1)
            epoch_end = done % spe == 0
            keep = clock.due(done, epoch_end) or done == stop or stop_request.requested
            if done % log_every == 0 or keep:
                flush(done, wait=keep)
            if done % run["sample_every"] == 0 or done == stop:
                write_samples(done)
            if epoch_end and done // spe in run["snapshot_epochs"]:
                e = done // spe
                path = out_dir / f"epoch{e:03d}.pt"
                state.snapshots[e] = str(path)
                models.save_checkpoint(path, netG, netD, name=name, run=run, epoch=e, step=done,
                                       snapshots=state.snapshots, data_meta=data_meta, provenance=provenance())
                log.info("run %s: snapshot after epoch %d -> %s", name, e, path)
            if keep:
                state.train_time_s += time.time() - session_t0
                session_t0 = time.time()
                resumable.save(ckpt_dir, netG, netD, optG, optD, zgen, state, fingerprint)
                clock.saved()
            if stop_request.requested and done < stop:
                bar.close()
                raise preemption.TrainingInterrupted(
                    f"run {name}: stopped by {stop_request.signal_name} after step {done} of {stop}; the checkpoint "
                    f"{ckpt_dir}/step{done:09d}.pt is written and a rerun resumes from it")
            _after_step(done)
    bar.close()
    state.train_time_s += time.time() - session_t0

    finished = state.step >= total
    stopped_early = not finished
    epoch_done = state.step // spe
    prov = provenance({"resumed_from_step": state.resumed_from})
    models.save_checkpoint(out_model, netG, netD, name=name, run=run, epoch=epoch_done, step=state.step,
                           snapshots=state.snapshots, data_meta=data_meta, provenance=prov,
                           stopped_early=stopped_early, z_dist=dist)
    last = _last_stats(stats_path)
    summary = {
        "run": name, "model": run["model"], "recipe": run["recipe"], "dataset": data_meta.get("name"),
        "stand_in": data_meta.get("stand_in"), "n_images": len(x), "image_shape": list(x.shape[1:]),
        "epochs": epochs, "epochs_completed": epoch_done, "steps": state.step, "steps_per_epoch": spe,
        "batch_size_used": bs,
        "stopped_early": stopped_early, "resumed_from_step": state.resumed_from, "z_dist": dist,
        "params_g": models.n_params(netG), "params_d": models.n_params(netD),
        "train_time_s": round(state.train_time_s, 3),
        "images_per_s": round(state.step * bs / max(state.train_time_s, 1e-9), 1),
        "final_stats": last, "snapshots": {str(k): v for k, v in sorted(state.snapshots.items())},
        "stats": str(stats_path), "samples": str(samples_dir), "device": str(device), "precision": precision,
        "provenance": prov,
    }
    io.write_json(out_summary, summary)
    if finished:   # crash-recovery state is no longer needed; a forced rerun must retrain, not reload
        for f in resumable.files(ckpt_dir):
            f.unlink()
    log.info("run %s: %s after %d steps (%d epochs), %.1f s training, %s images/s -> %s", name,
             "finished" if finished else "stopped at max_steps", state.step, epoch_done, state.train_time_s,
             summary["images_per_s"], out_model)
    return summary


def _last_stats(path: Path) -> dict[str, Any] | None:
    lines = path.read_text().splitlines() if path.exists() else []
    return json.loads(lines[-1]) if lines else None
