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


def autocast(device, precision: str = "fp32"):
    """bf16 autocast context for 'bf16' (CUDA, or CPUs with AMX); a no-op for 'fp32'."""
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    return contextlib.nullcontext()


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
    """Common start of every workflow script: log into the rule's log, use the job's threads."""
    logger = setup_logging(smk.log[0] if len(smk.log) else None)
    set_threads(getattr(smk, "threads", None))
    logger.info("rule %s: inputs=%s outputs=%s", smk.rule, list(smk.input), list(smk.output))
    return logger
