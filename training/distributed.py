"""Data-parallel training of one job over several processes (PyTorch DDP, one process per GPU).

Who starts the processes, and where rank / world size / rendezvous come from:

- ``torchrun --nproc_per_node=N sweep/run.py ...``: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
  MASTER_PORT (torch's ``env://`` contract).
- SLURM through submitit (``hydra.launcher.tasks_per_node=N``, ``hydra.launcher.nodes=M``) or
  a plain ``srun``: every task runs the whole Hydra job; rank = SLURM_PROCID, world size =
  SLURM_STEP_NUM_TASKS (SLURM_NTASKS), local rank = SLURM_LOCALID. The master is MASTER_ADDR
  when the launcher profile exports it, else the first host of ``scontrol show hostnames
  $SLURM_JOB_NODELIST`` (127.0.0.1 on a single node); the port is MASTER_PORT, else
  ``20000 + job id % 20000`` (the same in every task, different for concurrent jobs).
- submitit's local executor (``hydra/launcher=submitit_local hydra.launcher.tasks_per_node=N``,
  one machine, no SLURM): SUBMITIT_LOCAL_GLOBALID / _NTASKS / _LOCALID, master 127.0.0.1,
  port ``20000 + job id % 20000``.
- Anything else is one process: no process group, every helper here is a no-op.

The backend is NCCL on GPUs (each process on ``cuda:LOCAL_RANK``) and gloo on CPUs; the
collectives time out after ``trainer.dist_timeout_s`` so a dead or stuck rank fails the job
instead of hanging it.

Batches: ``trainer.batch_size`` is the *global* batch. Every rank draws the same permutation
and augments the same global batch from the shared seed, then keeps its contiguous slice
(``DistEnv.shard``); the loss is scaled so that DDP's gradient average equals the gradient of
the global batch mean. So 1 x 384 and 4 x 96 are the same batch_size=384, the same linear-rule
learning rate and the same schedule, and N processes compute the one-process trajectory up to
floating-point summation order.
"""

from __future__ import annotations

import atexit
import datetime
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
import torch.nn as nn
from torch import Tensor

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: rank r of world_size, on ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    launcher: str = "single"  # single | torchrun | slurm | submitit_local

    @property
    def enabled(self) -> bool:
        """More than one process: collectives are real."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, writes checkpoints and metrics.jsonl, reports to sweepers."""
        return self.rank == 0

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of n rows (sizes as ``torch.tensor_split``: the first
        ``n % world_size`` ranks get one row more)."""
        size, extra = divmod(n, self.world_size)
        start = self.rank * size + min(self.rank, extra)
        return slice(start, start + size + (1 if self.rank < extra else 0))

    def all_reduce_sum(self, t: Tensor) -> Tensor:
        """Sum ``t`` over ranks in place (and return it)."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` (any picklable) on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, indexed by rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel around ``model`` (parameters are broadcast from rank 0);
        the model itself when single-process. Weight sharing (SymMixer's W and W^T, n_iter
        repeats) is fine: each parameter still gets one all-reduced gradient per step."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def detect(environ: Mapping[str, str] = os.environ) -> tuple[str, int, int, int]:
    """(launcher, rank, world_size, local_rank) from the environment (see the module doc)."""
    if "RANK" in environ and "WORLD_SIZE" in environ:
        return ("torchrun", int(environ["RANK"]), int(environ["WORLD_SIZE"]),
                int(environ.get("LOCAL_RANK", "0")))
    # SLURM_STEP_ID: inside an srun step; a batch script with -n 4 but no srun is one process
    tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS")
    if tasks and int(tasks) > 1 and "SLURM_PROCID" in environ and "SLURM_STEP_ID" in environ:
        return ("slurm", int(environ["SLURM_PROCID"]), int(tasks),
                int(environ.get("SLURM_LOCALID", "0")))
    tasks = environ.get("SUBMITIT_LOCAL_NTASKS")
    if tasks and int(tasks) > 1 and "SUBMITIT_LOCAL_GLOBALID" in environ:
        return ("submitit_local", int(environ["SUBMITIT_LOCAL_GLOBALID"]), int(tasks),
                int(environ.get("SUBMITIT_LOCAL_LOCALID", "0")))
    return ("single", 0, 1, 0)


def slurm_master(environ: Mapping[str, str] = os.environ) -> tuple[str, int]:
    """(address, port) of rank 0 for a SLURM job (see the module doc)."""
    port = int(environ.get("MASTER_PORT") or 20000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000)
    if environ.get("MASTER_ADDR"):
        return environ["MASTER_ADDR"], port
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ.get("SLURM_JOB_NODELIST", "")
    hosts = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True,
                           text=True, check=True, timeout=30).stdout.split() if nodelist else []
    return ("127.0.0.1" if len(hosts) <= 1 else hosts[0]), port


def init_distributed(device: torch.device, timeout_s: float = 300.0,
                     expected: int | None = None) -> DistEnv:
    """Join the job's process group when the launcher started several processes.

    ``device`` is the resolved trainer.device; on CUDA each process takes GPU
    ``local_rank`` (modulo the visible GPUs, for sites that bind one GPU per task).
    ``expected`` (trainer.devices) must equal the world size when given.
    """
    launcher, rank, world, local = detect()
    if expected is not None and expected != world:
        raise ValueError(
            f"trainer.devices={expected} but the launcher started {world} process(es) "
            f"({launcher}); set hydra.launcher.tasks_per_node x hydra.launcher.nodes (SLURM) "
            "or torchrun --nproc_per_node to match, or trainer.devices=null")
    if world == 1:
        return DistEnv(device=device, launcher=launcher)
    if device.type == "cuda":
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    if launcher == "slurm":
        addr, port = slurm_master()
        os.environ.setdefault("MASTER_ADDR", addr)
        os.environ.setdefault("MASTER_PORT", str(port))
    elif launcher == "submitit_local":
        job_id = int(os.environ.get("SUBMITIT_LOCAL_JOB_ID", "0") or 0)
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(20000 + job_id % 20000))
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo", init_method="env://",
            rank=rank, world_size=world, timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None)
        atexit.register(close_distributed)
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=device,
                   launcher=launcher)


def close_distributed() -> None:
    """Leave the process group (registered at exit by init_distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
