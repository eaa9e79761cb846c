"""Process-level plumbing shared by every rule script: logging, seeding, device and precision choice."""

from __future__ import annotations

import contextlib
import logging
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("dcgan_repro")


def setup_logging(log_path: str | Path | None, level: int = logging.INFO) -> logging.Logger:
    """Send log records (and uncaught tracebacks) to the rule's ``log:`` file and to stderr."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)

    def _excepthook(exc_type, exc, tb):
        log.error("uncaught exception", exc_info=(exc_type, exc, tb))

    sys.excepthook = _excepthook
    return log


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices). Seeds always come from config, never from the clock."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def resolve_device(name: str = "auto"):
    """'auto' -> cuda when available, else cpu. 'cuda' without a GPU is an error that says so."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config device: 'cuda' was requested but torch sees no GPU; use 'auto' or 'cpu'")
    return torch.device(name)


PRECISIONS = ("fp32", "bf16", "auto")  # config key ``precision``


def native_bf16(device) -> bool:
    """Whether ``device`` does bf16 arithmetic in hardware: a CUDA GPU with bf16 support, or a CPU with
    AVX512-BF16 or AMX. Elsewhere oneDNN emulates it, far slower than fp32 (measured on an AVX2-only 2-core AMD
    EPYC, MNIST DCGAN step at batch 128: 1.22 s fp32, 18 s bf16; a 2048^3 bf16 matmul 0.2 GFLOP/s vs 56 fp32)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if all(c is None for c in checks):  # older torch: oneDNN's own test (also true for emulation on AVX512)
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return any(bool(c()) for c in checks if c is not None)


def native_int8(device) -> bool:
    """Whether a CPU has int8 dot-product instructions (AVX512-VNNI or AMX), which ``torch._int_mm`` needs to beat
    fp32 (without them it was 13x slower than an fp32 matmul, measured: mnist_eval.search.resolve_search). CUDA: False
    (not measured)."""
    import torch

    if torch.device(device).type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, n, None) for n in ("_is_vnni_supported", "_is_amx_tile_supported")]
    return any(bool(c()) for c in checks if c is not None)


def resolve_precision(precision: str, device) -> str:
    """Config ``precision`` -> the one a job runs in: ``auto`` -> bf16 where :func:`native_bf16`, else fp32.
    ``bf16`` on a device that would only emulate it is refused (a 10-15x slower run is never what was meant)."""
    if precision not in PRECISIONS:
        raise ValueError(f"config key 'precision' must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return precision
    native = native_bf16(device)
    if precision == "auto":
        return "bf16" if native else "fp32"
    if not native:
        raise RuntimeError(
            f"config key 'precision' is 'bf16', but this {device} has no native bf16 arithmetic (CPU: no AVX512-BF16 "
            "or AMX), so it would be emulated, 10-15x slower than fp32 (measured on an AVX2-only CPU); set precision "
            "to 'auto' (bf16 where native, else fp32) or 'fp32' (allowed values: fp32, bf16, auto)")
    return precision


def job_precision(common: dict[str, Any], device) -> str:
    """The precision a rule's job runs in, from its ``common`` params (see :func:`resolve_precision`); logged
    when ``auto`` chose it."""
    asked = common.get("precision", "fp32")
    got = resolve_precision(asked, device)
    if asked != got:
        log.info("precision %s -> %s on %s", asked, got, device)
    return got


def autocast(device, precision: str = "fp32"):
    """bf16 autocast context for 'bf16' (CUDA, or CPUs with AVX512-BF16 / AMX); a no-op for 'fp32'."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return contextlib.nullcontext()


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3           # glibc mallopt parameters (malloc.h)
KEEP_FREED_BYTES = 1 << 30                            # freed heap memory kept for reuse before it goes back
HEAP_UP_TO_BYTES = 256 << 20                          # allocations up to this size come from the reusable heap
_allocator_tuned: bool | None = None


def tune_allocator() -> bool:
    """Let glibc reuse freed memory for tensors instead of returning it to the OS after every step.

    By default glibc serves large blocks with fresh ``mmap`` pages and unmaps them when freed (or trims them off
    the heap), so every training step pays page faults, and the kernel zeroing pages, again for the same
    activations, gradients and Adam temporaries: on the MNIST DCGAN step (batch 128, one thread) 11,000-17,000
    faults and 31-45 ms of system time per step. Raising the mmap and trim thresholds (``mallopt``) keeps those
    blocks in the heap for reuse: 200-300 faults and 0.5-2.5 ms (benchmarks/bench_runs.py, benchmarks/README.md).
    Changes no arithmetic; peak memory about the same. Process-wide and lasting; a no-op (False) where the C
    library has no ``mallopt`` (not glibc). Returns whether it is in force.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        import ctypes

        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):
            _allocator_tuned = False
        else:
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            _allocator_tuned = bool(mallopt(M_MMAP_THRESHOLD, HEAP_UP_TO_BYTES)
                                    and mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
            log.debug("glibc mallopt: mmap threshold %d, trim threshold %d: %s", HEAP_UP_TO_BYTES,
                      KEEP_FREED_BYTES, "set" if _allocator_tuned else "refused")
    return _allocator_tuned


def set_threads(n: int | None) -> None:
    """Match the intra-op threads of torch / OpenCV (whichever the job loaded) to the cores Snakemake gave it.

    Imports neither: rules that never use torch (faces, tables) run in environments without it.
    """
    if not n:
        return
    n = max(1, int(n))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if "cv2" in sys.modules:
        sys.modules["cv2"].setNumThreads(n)


def rule_context(smk: Any) -> logging.Logger:
    """Common start of every workflow script: log into the rule's log, use the job's threads, and hand io the
    settings in force that differ from config.yaml (:func:`record_overrides`), so every provenance record of the
    job carries them."""
    logger = setup_logging(smk.log[0] if len(smk.log) else None)
    set_threads(getattr(smk, "threads", None))
    place_job(getattr(smk, "config", None), getattr(smk, "resources", None))
    logger.info("rule %s: inputs=%s outputs=%s", smk.rule, list(smk.input), list(smk.output))
    overrides = record_overrides(getattr(smk, "config", None))
    if overrides is not None:
        logger.info("settings that differ from config.yaml: %s", overrides or "none")
    return logger


def place_job(config: dict[str, Any] | None, resources: Any) -> None:
    """Before anything starts CUDA: the GPU a workflow job runs on (:mod:`dcgan_repro.gpu`).

    With config ``device`` cpu, or outside a Snakemake job (no ``resources``), nothing changes. A job whose rule
    declares no ``gpu`` resource sees no GPU. A job declaring ``gpu=1`` gets a GPU of its own (the scheduler's
    choice under SLURM, else the first free one on this machine) and stops at once, with the reason, when CUDA is
    unusable there (driver, GPU architecture, torch build), instead of training on the CPU for a day. Only
    ``device: auto`` on a machine without any NVIDIA GPU runs such a job on the CPU, with a warning."""
    from dcgan_repro import gpu

    device = (config or {}).get("device")
    if resources is None or device in (None, "cpu"):
        return
    wanted = int(resources.get("gpu", 0) or 0)
    if wanted and device == "auto" and not gpu.visible_gpus():
        log.warning("device auto: this machine has no GPU, so this job runs on the CPU")
        return
    gpu.pin_job(wanted)
    if wanted:
        gpu.require_cuda()


def record_overrides(config: dict[str, Any] | None) -> dict[str, Any] | None:
    """Set ``io.PROVENANCE_OVERRIDES`` to ``config.overrides(config)`` (the job's config against config.yaml) and
    return it; a job without a config (a script run by hand) records none."""
    from dcgan_repro import config as configuration, io

    io.PROVENANCE_OVERRIDES = configuration.overrides(config) if config else None
    return io.PROVENANCE_OVERRIDES
