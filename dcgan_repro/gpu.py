"""GPUs for workflow jobs: whether CUDA is usable (and if not, why), and one GPU per job on a multi-GPU machine.

**Usable CUDA.** A job that holds a GPU (rule resource ``gpu=1``) and finds no usable CUDA must stop with the
reason, not train on the CPU for a day. :func:`cuda_facts` gathers what decides it (the torch build, the driver,
each visible GPU's architecture); :func:`cuda_problem` is the pure decision: the reason CUDA is unusable, or None.
The pinned torch wheel (requirements.txt: torch 2.14.1, CUDA 13.0) needs NVIDIA driver 580 or newer and has
kernels for sm_75 (Turing) and newer only; older GPUs or drivers need a torch build for CUDA 12
(docs/PAPER_SCALE.md says how).

**One GPU per job.** Snakemake's ``--resources gpu=N`` caps how many GPU jobs run at once, but gives a job no GPU
id, so on a machine with several GPUs every job would use ``cuda:0``. :func:`claim_gpu` takes the first free one
of the visible GPUs by an exclusive ``flock`` on ``<lock_dir>/gpu<id>.lock``, held until the process exits
(the kernel releases it even after a kill), and sets ``CUDA_VISIBLE_DEVICES`` to it before CUDA starts.
:func:`pin_job` is meant as the one call a job makes at its start (from ``runtime.rule_context``, with the rule's
``resources.gpu``; not wired in yet): a job given no GPU sees none, a job under a scheduler that already chose its
GPU (SLURM ``--gpus``) keeps that choice.

Only the standard library is imported at module level; torch is imported by :func:`cuda_facts` alone.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

# Oldest Linux driver for each CUDA major version of a torch build (NVIDIA's CUDA toolkit release notes, table
# "CUDA Toolkit and Minimum Required Driver Version": minor-version compatibility within a major version).
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
# How to install a torch build for an older driver or GPU: the same release built for CUDA 12 from PyTorch's own
# index (docs/PAPER_SCALE.md, "GPUs"; which CUDA builds a release has is listed at pytorch.org).
OLDER_BUILD_HINT = ("install the same torch release built for CUDA 12 (driver 525.60.13 or newer), e.g. pip install "
                    "--force-reinstall torch==2.14.1 torchvision==0.29.1 --index-url "
                    "https://download.pytorch.org/whl/cu126 (docs/PAPER_SCALE.md, 'GPUs')")
LOCK_DIR_ENV = "DCGAN_GPU_LOCK_DIR"


@dataclass(frozen=True)
class CudaFacts:
    """What decides whether CUDA is usable in this process (see :func:`cuda_facts`)."""

    torch_version: str
    build_cuda: str | None                   # torch.version.cuda; None for a CPU-only build
    available: bool                          # torch.cuda.is_available()
    driver: str | None = None                # the NVIDIA kernel driver, e.g. "580.65.06"; None if none is found
    devices: tuple[tuple[str, tuple[int, int]], ...] = ()   # (name, (major, minor) capability) per visible GPU
    arch_list: tuple[str, ...] = ()          # torch.cuda.get_arch_list(), e.g. ("sm_75", ..., "compute_120")
    visible: str | None = None               # CUDA_VISIBLE_DEVICES as the process sees it
    init_error: str | None = None            # what initialising CUDA raised, if it did


def parse_proc_driver(text: str) -> str | None:
    """The driver version in /proc/driver/nvidia/version's text, e.g. "580.65.06" from
    "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.65.06  Sun Jul 27 07:09:29 UTC 2025"."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def driver_version() -> str | None:
    """The NVIDIA kernel driver version from /proc (no subprocess), else from nvidia-smi; None when neither says."""
    try:
        found = parse_proc_driver(Path("/proc/driver/nvidia/version").read_text())
        if found:
            return found
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()[:1]
    return first[0].strip() if out.returncode == 0 and first else None


def cuda_facts() -> CudaFacts:
    """Probe torch and the driver (imports torch; initialises CUDA when a GPU is visible)."""
    import torch

    available, devices, error = False, [], None
    try:
        available = torch.cuda.is_available()
        for i in range(torch.cuda.device_count() if available else 0):
            devices.append((torch.cuda.get_device_name(i), tuple(torch.cuda.get_device_capability(i))))
    except Exception as e:  # noqa: BLE001 - any failure to initialise CUDA is the answer, reported as such
        error = f"{type(e).__name__}: {e}"
    return CudaFacts(torch_version=torch.__version__, build_cuda=torch.version.cuda, available=available,
                     driver=driver_version(), devices=tuple(devices),
                     arch_list=tuple(torch.cuda.get_arch_list()) if torch.version.cuda else (),
                     visible=os.environ.get("CUDA_VISIBLE_DEVICES"), init_error=error)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text))


def arch_supported(capability: tuple[int, int], arch_list: tuple[str, ...]) -> bool:
    """Whether a build with ``arch_list`` runs on a GPU of ``capability``: a cubin of the same major version and
    no newer minor (sm_80 code runs on sm_86), or PTX (``compute_XY``) no newer than the GPU, which the driver
    compiles for it."""
    major, minor = capability
    for arch in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", arch)
        if not m:
            continue
        kind, a_major, a_minor = m.group(1), int(m.group(2)), int(m.group(3))
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def cuda_problem(facts: CudaFacts) -> str | None:
    """Why CUDA is unusable for a job that was given a GPU, naming the driver, architecture or torch build at fault
    and the fix; None when it is usable."""
    build = f"torch {facts.torch_version}"
    if facts.build_cuda is None:
        return (f"{build} is a CPU-only build, so the GPU this job holds goes unused: install a CUDA build "
                f"(pip install -r requirements.txt gives the CUDA 13.0 one, or {OLDER_BUILD_HINT})")
    if facts.visible is not None and facts.visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return (f"CUDA_VISIBLE_DEVICES={facts.visible!r} hides every GPU from this job although it asked for one "
                "(resources gpu=1): check what sets it (a job script, the scheduler's GPU binding)")
    cuda_major = _version(facts.build_cuda)[0]
    need = MIN_DRIVER.get(cuda_major)
    if facts.driver is None and not facts.available:
        return (f"no NVIDIA driver found (no /proc/driver/nvidia/version, no nvidia-smi): {build} is built for CUDA "
                f"{facts.build_cuda}, which needs driver {need or 'a recent one'} or "
                "newer; is this a GPU node, and is the driver loaded?")
    if facts.driver is not None and need and _version(facts.driver) < _version(need):
        return (f"NVIDIA driver {facts.driver} is older than the {need} that {build} (built for "
                f"CUDA {facts.build_cuda}) needs: update the driver, or {OLDER_BUILD_HINT}")
    if not facts.available or not facts.devices:
        why = f" ({facts.init_error})" if facts.init_error else ""
        return (f"{build} (CUDA {facts.build_cuda}) sees no usable GPU{why}; driver {facts.driver}, "
                f"CUDA_VISIBLE_DEVICES={facts.visible!r}")
    bad = [f"GPU {i} {name} (sm_{cap[0]}{cap[1]})" for i, (name, cap) in enumerate(facts.devices)
           if not arch_supported(cap, facts.arch_list)]
    if bad:
        return (f"{', '.join(bad)}: {build} has no kernels for this architecture (it has "
                f"{', '.join(facts.arch_list)}): {OLDER_BUILD_HINT}")
    return None


def require_cuda(facts: CudaFacts | None = None) -> None:
    """Raise RuntimeError with :func:`cuda_problem`'s reason unless CUDA is usable (for jobs given a GPU)."""
    problem = cuda_problem(facts if facts is not None else cuda_facts())
    if problem:
        raise RuntimeError(f"this job was given a GPU but cannot use it: {problem}")


# ------------------------------------------------------------------------------------------------------------
# one GPU per job
# ------------------------------------------------------------------------------------------------------------


@dataclass
class GpuClaim:
    """A GPU this process holds: its id (as ``CUDA_VISIBLE_DEVICES`` names it) and the open, locked lock file."""

    gpu: str
    lock_path: Path | None
    _fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give the GPU back (the process exiting does the same)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_HELD: list[GpuClaim] = []  # claims live as long as the process: their lock files stay locked


def default_lock_dir() -> Path:
    """``$DCGAN_GPU_LOCK_DIR``, else a per-user folder in the system temp folder (shared by every workflow the
    user runs on this machine, so two runs never share a GPU)."""
    env = os.environ.get(LOCK_DIR_ENV)
    return Path(env) if env else Path(tempfile.gettempdir()) / f"dcgan-repro-gpus-{os.getuid()}"


def visible_gpus() -> list[str]:
    """The GPU ids jobs may use: the entries of ``CUDA_VISIBLE_DEVICES`` when it is set, else every GPU the driver
    lists (/proc/driver/nvidia/gpus, else ``nvidia-smi -L``), numbered 0..n-1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip()]
    try:
        n = len([p for p in Path("/proc/driver/nvidia/gpus").iterdir() if p.is_dir()])
    except OSError:
        n = 0
    if not n:
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
            n = len([line for line in out.stdout.splitlines() if line.startswith("GPU ")])
        except (OSError, subprocess.SubprocessError):
            n = 0
    return [str(i) for i in range(n)]


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def claim_gpu(gpus: list[str] | None = None, lock_dir: str | os.PathLike | None = None, *,
              timeout_s: float | None = None, poll_s: float = 1.0) -> GpuClaim:
    """Take the first free GPU of ``gpus`` (default :func:`visible_gpus`), waiting while all are taken, and set
    ``CUDA_VISIBLE_DEVICES`` (and ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, so ids mean what nvidia-smi shows) to it.

    Call it before anything initialises CUDA. Snakemake's ``--resources gpu=N`` keeps at most N GPU jobs running,
    so with N no more than the GPUs a wait is short; ``timeout_s`` (None = wait for ever) bounds it, then
    TimeoutError names the lock files.
    """
    gpus = visible_gpus() if gpus is None else list(gpus)
    if not gpus:
        raise RuntimeError("no GPU to claim: CUDA_VISIBLE_DEVICES is empty and the driver lists none")
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    start, waited = time.monotonic(), False
    while True:
        for gpu in gpus:
            path = folder / f"gpu{gpu}.lock"
            fd = _try_lock(path)
            if fd is not None:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
                os.environ["CUDA_VISIBLE_DEVICES"] = gpu
                claim = GpuClaim(gpu, path, fd)
                _HELD.append(claim)
                log.info("using GPU %s (lock %s)%s", gpu, path,
                         f" after waiting {time.monotonic() - start:.0f} s" if waited else "")
                return claim
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"every GPU of {gpus} stayed taken for {timeout_s:.0f} s (locks in {folder}): is "
                               "--resources gpu=N larger than the number of GPUs?")
        if not waited:
            log.info("all GPUs %s are taken; waiting for one (locks in %s)", gpus, folder)
            waited = True
        time.sleep(poll_s)


def pin_job(gpus_requested: int, lock_dir: str | os.PathLike | None = None) -> GpuClaim | None:
    """Give a workflow job the GPUs its rule declares (``resources: gpu``): none -> ``CUDA_VISIBLE_DEVICES=""``
    (``device: auto`` then runs on the CPU); one -> :func:`claim_gpu`, unless a scheduler already bound the job to
    its GPUs (SLURM sets ``SLURM_JOB_ID`` and ``CUDA_VISIBLE_DEVICES``), which is kept. More than one GPU per job
    is not used by any rule and is refused."""
    if gpus_requested <= 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return None
    if gpus_requested > 1:
        raise ValueError(f"resources gpu={gpus_requested}: a job uses one GPU; declare gpu=1")
    if os.environ.get("SLURM_JOB_ID") and os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return GpuClaim(os.environ["CUDA_VISIBLE_DEVICES"], None)
    return claim_gpu(lock_dir=lock_dir)
