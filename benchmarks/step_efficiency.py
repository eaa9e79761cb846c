"""Shared by the training benchmarks: what one training step computes, how fast this machine runs that work, and
where the rest of the step's time goes.

- :func:`count_flops`: FLOPs of one real step, counted by ``torch.utils.flop_counter.FlopCounterMode`` (every
  convolution, its backward with only the gradients it needs, every matmul; 2 FLOPs per multiply-add).
- :func:`layer_limit`: the machine's own limit for that work: each conv / conv-transpose / linear call the step
  makes, replayed in isolation (same module, input shape, memory format, precision, threads, and the same
  gradients asked for: weights and/or input, or none under ``no_grad``), timed, and summed. ``efficiency`` =
  achieved FLOP/s of the whole step / this limit = (isolated layer time) / (step time): 1.0 would mean the step
  spends all its time in its layers at their isolated speed; the rest is normalisation, activations, losses,
  Adam, copies between memory formats and per-op overhead.
- :func:`gemm_gflops`: a square fp32/bf16 GEMM in the same process, a second, shape-free reference.
- :class:`Mark` / :class:`Span` / :class:`StepMarks`: wall, CPU (``getrusage``: user + system, all threads, and
  finished children) and the main thread's run-queue wait (``/proc/thread-self/schedstat``: runnable but not
  running, i.e. taken by other jobs). Main-thread ``wall - on-CPU - run-queue wait`` is time the training loop
  waited for something (I/O, a lock, the loader thread, a sleep): on an idle machine with one thread, wall = CPU
  plus that.
- :func:`run_child`: each timed variant runs in a fresh process, so allocator settings, thread pools and caches of
  one never reach another.
- :func:`machine`: CPU model, the vector/matrix extensions that decide fp32/bf16 speed, threads, load average.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


# --- the machine ---------------------------------------------------------------------------------------------


def cpu_model() -> str:
    """``model name`` of /proc/cpuinfo (platform.processor() elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_extensions() -> str:
    """The CPU flags that decide training speed: AVX2 / AVX-512 (fp32), AVX512-BF16 / AMX (native bf16)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split("flags", 1)[1].split("\n", 1)[0].split())
    except (OSError, IndexError):
        return "flags unknown"
    shown = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return "+".join(shown) or "no AVX2"


def machine(device: torch.device | str = "cpu") -> str:
    """One line: device (CPU model and extensions, or GPU name), torch threads, load average, torch version."""
    dev = torch.device(device)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    what = (torch.cuda.get_device_name(dev) if dev.type == "cuda"
            else f"{cpu_model()} ({cpu_extensions()}, {os.cpu_count()} CPUs)")
    return f"{what}; torch {torch.__version__}, {torch.get_num_threads()} threads; load average {load}"


# --- clocks --------------------------------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads) and of its finished children (loader workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main_thread_schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the calling thread; zeros where the kernel has
    no schedstat."""
    try:
        on, wait = Path("/proc/thread-self/schedstat").read_text().split()[:2]
        return int(on) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return 0.0, 0.0


@dataclass(frozen=True)
class Mark:
    """A point in time: wall, process CPU (of it system), minor page faults, and the calling (main) thread's
    on-CPU and run-queue seconds."""

    wall: float
    cpu: float
    sys: float
    faults: float
    on_cpu: float
    runqueue: float

    @staticmethod
    def now(sync: Callable[[], None] = lambda: None) -> "Mark":
        sync()
        own = resource.getrusage(resource.RUSAGE_SELF)
        return Mark(time.perf_counter(), cpu_seconds(), own.ru_stime, own.ru_minflt, *main_thread_schedstat())


@dataclass(frozen=True)
class Span:
    """What happened between two marks. ``idle`` = main thread's wall time neither on a CPU nor queued for one:
    it waited for something (I/O, a lock, the loader thread, a sleep). On an idle machine wall = on-CPU + idle;
    on a shared one the run-queue wait is time other jobs took."""

    wall: float
    cpu: float
    sys: float
    faults: float
    on_cpu: float
    runqueue: float

    @staticmethod
    def between(a: Mark, b: Mark) -> "Span":
        return Span(*(getattr(b, k) - getattr(a, k) for k in Mark.__dataclass_fields__))

    @property
    def idle(self) -> float:
        return max(0.0, self.wall - self.on_cpu - self.runqueue) if self.on_cpu else float("nan")

    def scaled(self, k: float) -> "Span":
        return Span(*(getattr(self, f) * k for f in Span.__dataclass_fields__))

    def describe(self) -> str:
        return (f"wall {self.wall:.2f} s, CPU {self.cpu:.2f} s (wall/CPU {self.wall / max(self.cpu, 1e-9):.2f}); "
                f"main thread: run-queue wait {self.runqueue:.2f} s, idle {self.idle:.2f} s")


class StepMarks:
    """``train._after_step`` hook: a :class:`Mark` after every training step (synchronising a GPU only at the
    steps in ``sync_at``, so the timed loop keeps its asynchrony)."""

    def __init__(self, sync: Callable[[], None] = lambda: None, sync_at: frozenset[int] = frozenset()) -> None:
        self.sync, self.sync_at = sync, sync_at
        self.marks: dict[int, Mark] = {}

    def __call__(self, step: int) -> None:
        self.marks[step] = Mark.now(self.sync if step in self.sync_at else (lambda: None))

    def span(self, first: int, last: int) -> Span:
        return Span.between(self.marks[first], self.marks[last])


def cuda_sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def run_child(argv: list[str], *, timeout: float | None = None) -> dict[str, Any]:
    """Run ``python <argv>`` in a fresh process (own allocator state, thread pool and caches) and return the JSON
    object it prints on its last stdout line; its stderr goes to ours."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, *argv], stdout=subprocess.PIPE, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {argv} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# --- FLOPs of a step and the limit of its layers -------------------------------------------------------------


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call of ``fn`` (total, and per aten op) counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        fn()
    per_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), per_op


@dataclass(frozen=True)
class LayerCall:
    """One call of a conv / conv-transpose / linear layer inside a step, as the step made it."""

    module: nn.Module
    shape: tuple[int, ...]
    channels_last: bool
    grad_input: bool        # the step's backward needs d loss / d input
    grad_weight: bool       # ... and d loss / d weight
    autocast: bool

    def key(self) -> tuple[Any, ...]:
        return id(self.module), self.shape, self.channels_last, self.grad_input, self.grad_weight, self.autocast

    def label(self) -> str:
        m = self.module
        kind = type(m).__name__.replace("Transpose", "T")
        if isinstance(m, nn.Linear):
            what = f"{kind} {m.in_features}->{m.out_features}"
        else:
            what = f"{kind} {m.in_channels}->{m.out_channels} k{m.kernel_size[0]}s{m.stride[0]}"
        grads = "+".join(g for g, on in (("dx", self.grad_input), ("dw", self.grad_weight)) if on) or "fwd only"
        return f"{what} in {'x'.join(map(str, self.shape))} [{grads}]"


def record_layer_calls(nets: list[nn.Module], fn: Callable[[], Any]) -> list[LayerCall]:
    """Every conv / conv-transpose / linear call of ``nets`` during one call of ``fn``, in order."""
    calls: list[LayerCall] = []

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0]
        grad = torch.is_grad_enabled()
        calls.append(LayerCall(module, tuple(x.shape), x.dim() == 4 and x.is_contiguous(
            memory_format=torch.channels_last) and not x.is_contiguous(), grad and x.requires_grad,
            grad and module.weight.requires_grad, torch.is_autocast_enabled(x.device.type)))

    handles = [m.register_forward_pre_hook(hook) for net in nets for m in net.modules() if isinstance(m, LAYERS)]
    try:
        fn()
    finally:
        for h in handles:
            h.remove()
    return calls


@dataclass
class LayerTime:
    call: LayerCall
    n: int                  # calls per step
    flops: int              # per call
    seconds: float          # per call (best of the timed repeats)


def _replay(call: LayerCall, device: torch.device) -> Callable[[], Any]:
    """A closure that runs ``call`` in isolation: a copy of the layer, a fresh input of the same shape and memory
    format, forward (under autocast when the step used it) and the backward for the same gradients."""
    m = copy.deepcopy(call.module).to(device)
    m.weight.requires_grad_(call.grad_weight)
    x = torch.randn(call.shape, device=device)
    if call.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(call.grad_input)
    leaves = [t for t in (x, m.weight) if t.requires_grad]
    with torch.no_grad():
        out_shape = m(x.detach()).shape
    gy = torch.randn(out_shape, device=device)
    if call.channels_last and len(out_shape) == 4:
        gy = gy.contiguous(memory_format=torch.channels_last)

    def run() -> None:
        for t in leaves:
            t.grad = None
        with torch.set_grad_enabled(bool(leaves)), torch.autocast(device.type, torch.bfloat16, enabled=call.autocast):
            y = m(x)
        if leaves:
            y.backward(gy.to(y.dtype))   # only the gradients the step asks for: the others' requires_grad is off

    return run


def layer_limit(calls: list[LayerCall], device: torch.device, *, repeats: int = 5,
                min_seconds: float = 0.05) -> list[LayerTime]:
    """Time every distinct layer call of a step in isolation (best of ``repeats`` runs of at least
    ``min_seconds``, after one warm-up)."""
    sync = cuda_sync(device)
    grouped: dict[tuple[Any, ...], list[LayerCall]] = {}
    for c in calls:
        grouped.setdefault(c.key(), []).append(c)
    out = []
    for group in grouped.values():
        run = _replay(group[0], device)
        flops, _ = count_flops(run)
        run()
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        k = max(1, int(min_seconds / max(time.perf_counter() - t0, 1e-6)))
        best = float("inf")
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            for _ in range(k):
                run()
            sync()
            best = min(best, (time.perf_counter() - t0) / k)
        out.append(LayerTime(group[0], len(group), flops, best))
    return out


def gemm_gflops(n: int = 2048, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                repeats: int = 5) -> float:
    """GFLOP/s of an n x n x n matmul (best of ``repeats``), same threads as the caller."""
    device = torch.device(device)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    sync = cuda_sync(device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def layer_table(times: list[LayerTime], step_seconds: float, steps: int = 1) -> list[str]:
    """Lines: per distinct layer call, its calls per step, GFLOP/s in isolation and share of the step's time."""
    lines = []
    for t in sorted(times, key=lambda t: -t.n * t.seconds):
        lines.append(f"    {t.call.label():<62} x{t.n / steps:<4g} {t.flops / t.seconds / 1e9:7.1f} GFLOP/s "
                     f"{1e3 * t.seconds:8.2f} ms  {100 * t.n * t.seconds / steps / step_seconds:5.1f} % of step")
    return lines


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- where the rest goes -------------------------------------------------------------------------------------


def profile_ops(fn: Callable[[], Any], *, top: int = 12,
                sync: Callable[[], None] = lambda: None) -> tuple[float, list[tuple[str, float, int]]]:
    """Run ``fn`` under torch.profiler (CPU): (wall seconds, [(op, self CPU seconds, calls)] for the ``top`` aten
    ops by self time, then their sum over all aten ops). The gap between the wall time and the summed op time is
    Python, the autograd engine, dispatch and waits. (On a GPU the op times are launch times.)"""
    from torch.profiler import ProfilerActivity, profile

    sync()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
        sync()
    wall = time.perf_counter() - t0
    rows = [(e.key, e.self_cpu_time_total / 1e6, e.count) for e in prof.key_averages()
            if e.key.startswith("aten::")]
    rows.sort(key=lambda r: -r[1])
    return wall, rows[:top] + [("(all aten ops)", sum(r[1] for r in rows), sum(r[2] for r in rows))]
