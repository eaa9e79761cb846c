"""When a long training job writes its resumable checkpoint: on a clock, on a step grid, and when told to stop.

A scheduler ends a job with a signal: SLURM sends SIGTERM at a time limit, a preemption or ``scancel`` (and SIGKILL
``KillWait`` seconds later, 30 by default), and ``--signal=USR1@300`` asks for SIGUSR1 five minutes before the limit.
:class:`StopRequest` turns SIGTERM, SIGUSR1 and SIGINT (Ctrl-C) into a flag the training loop reads after each
step: it writes a checkpoint at once and stops with :class:`TrainingInterrupted`, so the job fails, Snakemake's
``--retries`` (or SLURM's requeue) starts it again and it resumes from that step. A second Ctrl-C stops at once.

:class:`CheckpointClock` decides the regular checkpoints: every ``checkpoint_minutes`` of wall time (so their cost
stays the same share of a run on any hardware: a 413 MiB LSUN checkpoint every 500 steps is every few seconds on a
fast GPU), and, where ``checkpoint_every`` > 0, every that many steps and at each epoch end (small CPU runs, tests).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Callable

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after writing a resumable checkpoint; a rerun continues from it."""


class StopRequest:
    """Context manager: while active, SIGTERM / SIGUSR1 / SIGINT set :attr:`signal_name` instead of killing the
    process; the previous handlers come back on exit. Outside the main thread (where Python cannot install signal
    handlers) it does nothing and the signals keep their usual effect."""

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self.signal_name: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt          # a second Ctrl-C: stop now, without waiting for the step to end
        if self.signal_name is None:
            self.signal_name = name
            log.warning("%s received: writing a checkpoint after this step, then stopping", name)

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    @property
    def requested(self) -> bool:
        return self.signal_name is not None


class CheckpointClock:
    """Whether the step just done ends with a resumable checkpoint: ``minutes`` of wall time since the last one, or
    (``every_steps`` > 0) a multiple of ``every_steps`` or an epoch end. Call :meth:`saved` after each checkpoint."""

    def __init__(self, every_steps: int, minutes: float, clock: Callable[[], float] = time.monotonic):
        if every_steps < 0 or minutes <= 0:
            raise ValueError(f"checkpoint_every must be >= 0 and checkpoint_minutes > 0, got {every_steps}, {minutes}")
        self.every_steps, self.seconds, self.clock = every_steps, 60.0 * minutes, clock
        self.last = clock()

    def due(self, step: int, epoch_end: bool) -> bool:
        by_steps = self.every_steps > 0 and (step % self.every_steps == 0 or epoch_end)
        return by_steps or self.clock() - self.last >= self.seconds

    def saved(self) -> None:
        self.last = self.clock()
