"""How many processes train, how many threads each may use, and the torchrun launcher.

torchrun and SageMaker describe the process group through environment variables (``RANK``,
``WORLD_SIZE``, ``OMP_NUM_THREADS``); reading them in one place keeps a single process, a
DDP run and a sweep running jobs side by side from fighting over the same cores.
"""

from __future__ import annotations

import os
import subprocess
import sys

from mlclf_utils.errors import MlclfError, check_positive_int

ENTRY_MODULE = "mlclf_utils.modeling.train"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only rank 0 saves the model and prints: the others hold the same weights."""
    return int(os.environ.get("RANK", "0")) == 0


def available_cores() -> int:
    """The cores this process may run on (a container or taskset may allow fewer than exist)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return cores or 1


def default_threads() -> int:
    """OMP_NUM_THREADS when a launcher set it (torchrun, a sweep running jobs side by side),
    else this process's share of the cores it may run on."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    return max(1, available_cores() // world_size())


def set_threads(threads: int) -> None:
    """0 means this process's share (:func:`default_threads`): more threads than cores only
    make the processes preempt each other."""
    import torch

    torch.set_num_threads(threads or default_threads())


def launch_torchrun(nproc_per_node: int, argv: list[str]) -> None:
    """Run the training entry point with ``argv`` under ``torchrun --standalone``, one process
    per CPU core group or GPU, and wait; a failed launch is an error with the command."""
    check_positive_int("nproc_per_node", nproc_per_node)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc_per_node}", "-m", ENTRY_MODULE, *argv]
    completed = subprocess.run(command)
    if completed.returncode != 0:
        raise MlclfError(f"torchrun exited with code {completed.returncode}: {' '.join(command)}")
