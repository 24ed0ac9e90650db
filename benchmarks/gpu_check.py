"""GPU readiness: one script, one table, under 8 minutes on one GPU.

    .venv/bin/python benchmarks/gpu_check.py              # a CUDA machine (DDP over all its GPUs)
    .venv/bin/python benchmarks/gpu_check.py --dry-run    # any machine: the same code, tiny sizes
    .venv/bin/python benchmarks/gpu_check.py --json out.json

Every figure goes through the project's own code, on synthetic uint8 images resident on the
device (no disk, no loader):

1. **bf16 matmul rate**: median n x n x n bf16 GEMM (``benchmarks/throughput.matmul_limit``),
   the denominator of every "of bf16 matmul" figure.
2. **Training throughput** of every variant of ``models.VARIANTS`` at Mixer-S/16, 224 px, 3
   channels, 10 classes, batch 256: the real ``training.Trainer`` with ``precision=bf16`` and
   ``compile=true`` and the paper profile's augmentation (``BatchAugment`` on the device), 2
   epochs of 40 steps; the second epoch is timed (the first compiles). FLOPs are
   3 x the forward GEMM FLOPs (``benchmarks/throughput.forward_flops``). Peak memory:
   ``torch.cuda.max_memory_allocated`` over the fit, less the resident data set.
3. **Largest batch that fits**: one eager bf16 ``Trainer`` step (fit of one step) at growing
   batch sizes, doubling from 256 and then bisecting to 1/16, until CUDA runs out of memory.
   Eager, because compiling at every size would take minutes; a compiled step keeps fewer
   activations, so this is a lower bound for ``compile=true``. Only that batch's images are on
   the device; a real data set comes on top (CIFAR-10 at 224 px: 7.5 GB of uint8).
4. **Data pipeline**: the Trainer's own data path (``batches`` -> ``normalize`` ->
   ``BatchAugment``) over the same device-resident uint8 images, without the model. It must
   run faster than the fastest training step, or it is the bottleneck.
5. **DDP**: the Trainer on one process and on all GPUs (NCCL, one process per GPU, the same
   global batch), fp32 without TF32, 3 steps: the loss and the weights must agree up to
   floating-point summation order. With one GPU, 2 processes share it over gloo (NCCL needs a
   GPU per process).

``--dry-run`` runs the same functions at tiny sizes (32 px, patch 8, C 16, depth 1, batch 8,
2 steps): on CPU, torch.compile still traces every model with dynamo but hands the graphs to
its "eager" backend (inductor's C++ code generation takes over a minute per model on 2 cores);
memory reads n/a; the batch search stops at 16 (CPU memory does not run out); DDP is 2
processes over gloo. Without a GPU and without ``--dry-run`` the script refuses to start.
tests/test_gpu_check.py runs the dry run.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.throughput import forward_flops, matmul_limit  # noqa: E402
from data import BatchAugment, ImageData, batches, normalize  # noqa: E402
from models import VARIANTS, Mixer, Variant  # noqa: E402
from tracking.tracker import NullTracker  # noqa: E402
from training import Trainer, TrainerConfig  # noqa: E402
from training.distributed import DistEnv, close_distributed, init_distributed  # noqa: E402

NUM_CLASSES = 10
SB_LAMBDA = 1e-4  # AsymMixer's penalty lam ||V||^2, so its regulariser runs in every step
DDP_LR = 0.05  # per 512 images (trainer.lr)
LOSS_RTOL = 1e-5  # fp32: 1 process and N processes differ only in summation order
EXIT_NO_GPU = 2
OOM_MESSAGES = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED")


@dataclass(frozen=True)
class Plan:
    """Sizes of one run of the check."""

    label: str
    img_size: int
    in_chans: int
    patch_size: int
    dim: int
    depth: int
    batch: int  # training throughput and the batch search's start
    steps: int  # per epoch; 2 epochs, the second timed
    crop_padding: int  # the paper profile's 28 at 224 px
    matmul_n: int
    matmul_repeats: int
    search_cap: int  # largest batch tried
    ddp_batch: int  # global batch of the DDP check
    ddp_steps: int
    compile_backend: str  # torch.compile's backend in the Trainer

    @property
    def model_cfg(self) -> dict:
        """The keys benchmarks/throughput.forward_flops reads."""
        return dict(img_size=self.img_size, in_chans=self.in_chans,
                    patch_size=self.patch_size, dim=self.dim, depth=self.depth)


GPU_PLAN = Plan("Mixer-S/16, 224 px, 3 channels, 10 classes", img_size=224, in_chans=3,
                patch_size=16, dim=512, depth=8, batch=256, steps=40, crop_padding=28,
                matmul_n=8192, matmul_repeats=20, search_cap=1 << 15, ddp_batch=64,
                ddp_steps=3, compile_backend="inductor")
DRY_PLAN = Plan("dry run: 32 px, patch 8, C 16, depth 1", img_size=32, in_chans=3,
                patch_size=8, dim=16, depth=1, batch=8, steps=2, crop_padding=4,
                matmul_n=256, matmul_repeats=3, search_cap=16, ddp_batch=8, ddp_steps=2,
                compile_backend="eager")


# ----------------------------------------------------------------------------- building blocks
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Hand what the last run left back to CUDA, so the next one starts clean (on CPU there is
    nothing to hand back, and a full collection of this heap costs ~0.5 s)."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def synthetic_data(n_train: int, n_test: int, plan: Plan, device: torch.device,
                   seed: int = 0) -> ImageData:
    """Random uint8 images and labels, drawn on ``device`` (the same on every GPU)."""
    g = torch.Generator(device=device).manual_seed(seed)
    shape = (plan.in_chans, plan.img_size, plan.img_size)

    def images(n: int) -> torch.Tensor:
        return torch.randint(0, 256, (n, *shape), generator=g, device=device, dtype=torch.uint8)

    def labels(n: int) -> torch.Tensor:
        return torch.randint(0, NUM_CLASSES, (n,), generator=g, device=device)

    return ImageData(name="synthetic", train_x=images(n_train), train_y=labels(n_train),
                     test_x=images(n_test), test_y=labels(n_test), val_x=None, val_y=None,
                     num_classes=NUM_CLASSES, channels=plan.in_chans,
                     image_size=plan.img_size, mean=(0.5,) * plan.in_chans,
                     std=(0.25,) * plan.in_chans, classes=[str(k) for k in range(NUM_CLASSES)])


def paper_augment(plan: Plan) -> BatchAugment:
    """conf/profile/paper.yaml's augmentation (crop, flip, mixup, cutmix, erasing, smoothing)."""
    return BatchAugment(crop_padding=plan.crop_padding, flip=True, mixup=0.8, cutmix=1.0,
                        erase=0.25, label_smoothing=0.1, num_classes=NUM_CLASSES)


def build_model(variant: Variant, plan: Plan, drop_path: float) -> Mixer:
    torch.manual_seed(0)
    return Mixer(**variant.mixer_kwargs(),
                 img_size=plan.img_size, in_chans=plan.in_chans, num_classes=NUM_CLASSES,
                 patch_size=plan.patch_size, dim=plan.dim, depth=plan.depth,
                 sb_lambda=SB_LAMBDA if variant.has_lambda else 0.0, drop_path=drop_path)


def trainer_config(device: torch.device, batch: int, epochs: int, precision: str,
                   compile_: bool, lr: float = 5e-4) -> TrainerConfig:
    return TrainerConfig(epochs=epochs, batch_size=batch, lr=lr, warmup_epochs=0,
                         device=str(device), precision=precision, compile=compile_,
                         checkpoint=False, resume=False, progress="off", eval_batch_size=batch)


@contextmanager
def compile_backend(backend: str) -> Iterator[None]:
    """The Trainer calls ``torch.compile(model)``, i.e. inductor. For another backend (the dry
    run's "eager": dynamo traces and guards as always, the graphs then run op by op) the name
    is bound to torch.compile with that backend while the block runs."""
    if backend == "inductor":
        yield
        return
    stock = torch.compile
    torch.compile = functools.partial(stock, backend=backend)
    try:
        yield
    finally:
        torch.compile = stock


def fit(model: Mixer, data: ImageData, config: TrainerConfig, augment: BatchAugment,
        dist: DistEnv | None = None) -> tuple[dict[str, float], Trainer]:
    """The project's Trainer, end to end (its metrics of the last epoch, and the trainer)."""
    with tempfile.TemporaryDirectory() as out_dir:
        trainer = Trainer(model, data, config, augment, NullTracker(), out_dir, seed=0, dist=dist)
        return trainer.fit(), trainer


# ----------------------------------------------------------------------------- the checks
@dataclass
class TrainRow:
    variant: str
    batch: int
    images_per_s: float
    tflops: float
    of_matmul: float
    peak_mem_gib: float | None
    largest_batch: int
    largest_batch_capped: bool


def train_throughput(variant: Variant, plan: Plan, device: torch.device
                     ) -> tuple[float, float, float | None]:
    """(images/s, achieved FLOP/s, peak GiB or None on CPU) of bf16 + compile training."""
    data = synthetic_data(plan.steps * plan.batch, plan.batch, plan, device)
    model = build_model(variant, plan, drop_path=0.1)
    if device.type == "cuda":
        sync(device)
        base = torch.cuda.memory_allocated(device)  # the resident data set
        torch.cuda.reset_peak_memory_stats(device)
    config = trainer_config(device, plan.batch, epochs=2, precision="bf16", compile_=True)
    with compile_backend(plan.compile_backend):
        final, _ = fit(model, data, config, paper_augment(plan))
    peak = None
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2**30
    rate = final["images_per_s"]  # the second epoch: compiled, warm
    flops = 3 * forward_flops(plan.model_cfg, variant.mlp) * rate
    torch._dynamo.reset()  # every variant recompiles Mixer.forward: keep under dynamo's limit
    return rate, flops, peak


def fits(variant: Variant, plan: Plan, device: torch.device, batch: int) -> bool:
    """Whether one eager bf16 Trainer step at ``batch`` runs without running out of memory."""
    try:
        data = synthetic_data(batch, 1, plan, device)
        fit(build_model(variant, plan, drop_path=0.1), data,
            trainer_config(device, batch, epochs=1, precision="bf16", compile_=False),
            paper_augment(plan))
        return True
    except torch.cuda.OutOfMemoryError:
        return False
    except RuntimeError as err:  # cuBLAS / cuDNN workspaces report it as their own error
        if device.type == "cuda" and any(s in str(err) for s in OOM_MESSAGES):
            return False
        raise
    finally:
        free_memory(device)


def largest_batch(variant: Variant, plan: Plan, device: torch.device) -> tuple[int, bool]:
    """(largest batch that ran, whether ``plan.search_cap`` stopped the search first):
    doubling from ``plan.batch``, then bisection until the bracket is 1/16 of the answer."""
    lo, hi, batch = 0, None, plan.batch
    while batch <= plan.search_cap:
        if not fits(variant, plan, device, batch):
            hi = batch
            break
        lo, batch = batch, batch * 2
    if hi is None:
        return lo, True
    while hi - lo > max(1, lo // 16):
        mid = (lo + hi) // 2
        if fits(variant, plan, device, mid):
            lo = mid
        else:
            hi = mid
    return lo, False


def pipeline_rate(plan: Plan, device: torch.device) -> float:
    """Images/s of the Trainer's data path alone: shuffled batches of device-resident uint8,
    normalised and augmented on the device (the second of two passes)."""
    data = synthetic_data(plan.steps * plan.batch, 1, plan, device)
    augment = paper_augment(plan)
    gen = torch.Generator(device=device).manual_seed(0)

    def one_pass() -> float:
        sync(device)
        t = time.perf_counter()
        for xb, yb in batches(data.train_x, data.train_y, plan.batch, shuffle=True,
                              generator=gen):
            augment(normalize(xb, data.mean, data.std), yb, gen)
        sync(device)
        return time.perf_counter() - t

    one_pass()
    return len(data.train_x) / one_pass()


def ddp_variant() -> Variant:
    """The DDP check's model: one with a regulariser (its gradient is added on every rank)."""
    return next((v for v in VARIANTS.values() if v.has_lambda), next(iter(VARIANTS.values())))


def ddp_training(plan: Plan, device: torch.device, dist: DistEnv | None = None) -> dict:
    """``plan.ddp_steps`` fp32 steps of the Trainer at global batch ``plan.ddp_batch`` (no drop
    path: its draws differ per rank by design) -> the mean loss and the final weights."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        data = synthetic_data(plan.ddp_steps * plan.ddp_batch, plan.ddp_batch, plan, device,
                              seed=1)
        model = build_model(ddp_variant(), plan, drop_path=0.0)
        # a large lr, so that every step after the first trains on visibly changed weights
        config = trainer_config(device, plan.ddp_batch, epochs=1, precision="fp32",
                                compile_=False, lr=DDP_LR)
        final, trainer = fit(model, data, config, paper_augment(plan), dist)
        weights = {k: v.detach().double().cpu() for k, v in trainer.model.state_dict().items()}
        return {"loss": final["train_loss"], "weights": weights}
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32


def _ddp_worker(rank: int, world: int, port: int, plan: Plan, device_type: str, backend: str,
                out: str) -> None:
    """One process of the DDP run (torch.multiprocessing.spawn calls it with its rank)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if device_type == "cpu":
        torch.set_num_threads(1)
    elif backend != "nccl":
        # init_distributed picks NCCL for CUDA; a shared GPU needs gloo, so join first
        torch.distributed.init_process_group(backend, init_method="env://", rank=rank,
                                             world_size=world)
    try:
        env = init_distributed(torch.device(device_type), timeout_s=300)
        result = ddp_training(plan, env.device, env)
        if env.is_main:
            torch.save(result, out)
    finally:
        close_distributed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DdpRow:
    variant: str
    processes: int
    backend: str
    loss_single: float
    loss_ddp: float
    loss_diff: float
    max_weight_diff: float
    equal: bool


def ddp_check(plan: Plan, device: torch.device) -> DdpRow:
    if device.type == "cuda":
        gpus = torch.cuda.device_count()
        world, backend = (gpus, "nccl") if gpus >= 2 else (2, "gloo")
    else:
        world, backend = 2, "gloo"
    single = ddp_training(plan, device)
    free_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rank0.pt")
        torch.multiprocessing.spawn(_ddp_worker, nprocs=world, join=True,
                                    args=(world, free_port(), plan, device.type, backend, out))
        multi = torch.load(out, weights_only=True)
    loss_diff = abs(single["loss"] - multi["loss"])
    weight_diff = max(float((single["weights"][k] - multi["weights"][k]).abs().max())
                      for k in single["weights"])
    equal = loss_diff <= LOSS_RTOL * max(1.0, abs(single["loss"]))
    return DdpRow(ddp_variant().name, world, backend, single["loss"], multi["loss"], loss_diff,
                  weight_diff, equal)


# ----------------------------------------------------------------------------- report
def commit() -> str:
    """The short commit, "+dirty" when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=30).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def device_line(device: torch.device) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return (f"{torch.cuda.device_count()} x {name}, torch {torch.__version__}, "
                f"CUDA {torch.version.cuda}")
    return (f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads), "
            f"torch {torch.__version__}")


def table(rows: list[TrainRow], pipe: float, ddp: DdpRow, device: torch.device) -> str:
    def mem(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.1f} GiB"

    def share(v: float) -> str:
        # three significant digits: a CPU dry run under load measured 0.04 %, which a fixed
        # one decimal printed as "0.0 %", as if nothing trained
        return f"{100 * v:.3g} %"

    lines = ["| check | subject | images/s | TFLOP/s | of bf16 matmul | peak memory "
             "| largest batch | result |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        largest = f">= {r.largest_batch} (cap)" if r.largest_batch_capped else str(r.largest_batch)
        lines.append(f"| train | {r.variant} | {r.images_per_s:.1f} | {r.tflops:.3g} | "
                     f"{share(r.of_matmul)} | {mem(r.peak_mem_gib)} | {largest} | |")
    fastest = max(r.images_per_s for r in rows)
    verdict = "faster than training: ok" if pipe > fastest else "SLOWER than training"
    lines.append(f"| pipeline | batches + normalize + BatchAugment | {pipe:.1f} | | | | | "
                 f"{pipe / fastest:.2f}x the fastest training rate, {verdict} |")
    who = f"{ddp.processes} x {ddp.backend}" + (" on 1 GPU" if device.type == "cuda"
                                                 and ddp.backend != "nccl" else "")
    lines.append(f"| ddp | {ddp.variant}, 1 process vs {who} | | | | | | "
                 f"loss {ddp.loss_single:.6f} vs {ddp.loss_ddp:.6f} (diff {ddp.loss_diff:.1e}), "
                 f"max weight diff {ddp.max_weight_diff:.1e}: "
                 f"{'equal' if ddp.equal else 'DIFFERENT'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes, any device (CPU when there is no GPU): for CI")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of models.VARIANTS (default: all)")
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        parser.error(f"--variants {args.variants!r}: unknown {unknown}; valid: {list(VARIANTS)}")
    t_start = time.perf_counter()
    has_gpu = torch.cuda.is_available()
    if not has_gpu and not args.dry_run:
        print("gpu_check: no CUDA device here; run it on a GPU machine, or use --dry-run for "
              "the same code at tiny sizes on CPU", file=sys.stderr)
        return EXIT_NO_GPU
    plan = DRY_PLAN if args.dry_run else GPU_PLAN
    device = torch.device("cuda" if has_gpu else "cpu")
    sha = commit()
    print(f"GPU readiness check at commit {sha}: {device_line(device)}")
    print(f"sizes: {plan.label}; training batch {plan.batch}, bf16 + torch.compile "
          f"({plan.compile_backend}), the paper profile's augmentation", flush=True)

    mm = matmul_limit(device, torch.bfloat16, n=plan.matmul_n, repeats=plan.matmul_repeats)
    print(f"bf16 matmul rate ({plan.matmul_n}^3 GEMM, median of {plan.matmul_repeats}): "
          f"{mm / 1e12:.3g} TFLOP/s", flush=True)
    rows = []
    for variant in (VARIANTS[name] for name in variants):
        rate, flops, peak = train_throughput(variant, plan, device)
        free_memory(device)
        largest, capped = largest_batch(variant, plan, device)
        rows.append(TrainRow(variant.name, plan.batch, rate, flops / 1e12, flops / mm, peak,
                             largest, capped))
        print(f"  {variant.name}: {rate:.1f} images/s, largest batch {largest} "
              f"({time.perf_counter() - t_start:.0f} s)", flush=True)
    pipe = pipeline_rate(plan, device)
    free_memory(device)
    ddp = ddp_check(plan, device)
    print()
    print(table(rows, pipe, ddp, device))
    seconds = time.perf_counter() - t_start
    print(f"\nfinished in {seconds:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({
            "commit": sha, "device": device_line(device), "dry_run": args.dry_run,
            "plan": asdict(plan), "matmul_tflops": mm / 1e12,
            "train": [asdict(r) for r in rows], "pipeline_images_per_s": pipe,
            "ddp": asdict(ddp), "seconds": seconds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
