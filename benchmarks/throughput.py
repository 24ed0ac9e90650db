"""Training and inference throughput of the zoo against a straightforward eager reference and
against the machine's matmul limit.

    .venv/bin/python benchmarks/throughput.py                 # CPU config (a) + S/16 (b) + scaling
    .venv/bin/python benchmarks/throughput.py --configs a     # only the 28 px config
    .venv/bin/python benchmarks/throughput.py --device cuda --precision bf16 --compile

Prints a table and writes JSON (--out, default benchmarks/results/throughput-<device>.json).
Each measurement is the median over ``--repeats`` timed steps; the zoo model and its reference
are timed interleaved (zoo step, reference step, zoo step, ...) so machine noise hits both.
A training step is forward + backward + AdamW step on a fixed random batch.

The reference (``Reference*`` below) is written the way the authors' public code writes the
layers: nn.Linear modules, transposes around the token MLP, LayerNorm((S, C)), the asymmetric
output as two separate linear calls. Its maths is identical to the zoo's
(tests/test_benchmark_reference.py checks that outputs agree).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models import MLP_KINDS, Mixer, num_params  # noqa: E402
from models import VARIANTS as ZOO  # noqa: E402

# name -> (block wiring, MLP kind), from the variant table (models/variants.py): the rows the
# eager reference below re-implements (token-MLP Mixers with the default norm and no extra
# knobs: the paper's four variants); the other zoo members have no reference to compare with
VARIANTS = {v.name: (v.block, v.mlp) for v in ZOO.values()
            if v.token_mixer == "mlp" and v.block in ("serial", "parallel") and v.norm is None
            and not v.knobs}
CONFIGS = {
    # (a) the CPU config and (b) Mixer-S/16 at 224 px, as in the speed issue
    "a": dict(img_size=28, in_chans=1, patch_size=4, dim=128, depth=4, batch=128),
    "b": dict(img_size=224, in_chans=3, patch_size=16, dim=512, depth=8, batch=32),
}


# ----------------------------------------------------------------------------- reference
class RefVanillaMlp(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.fc1 = nn.Linear(d, h, bias=False)
        self.fc2 = nn.Linear(h, d, bias=False)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class RefSymMlp(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.fc = nn.Linear(d, h, bias=False)

    def forward(self, x):
        return F.linear(F.gelu(F.linear(x, self.fc.weight)), self.fc.weight.T)


class RefAsymMlp(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.fc1 = nn.Linear(d, h, bias=False)
        self.fc2 = nn.Linear(h, d, bias=False)

    def forward(self, x):
        h = F.gelu(F.linear(x, self.fc1.weight))
        return F.linear(h, self.fc1.weight.T) + self.fc2(h)


REF_MLPS = {"vanilla": RefVanillaMlp, "symmetric": RefSymMlp, "asymmetric": RefAsymMlp}


class RefBlock(nn.Module):
    def __init__(self, wiring: str, mlp: str, s: int, c: int):
        super().__init__()
        self.serial = wiring == "serial"
        self.norm1 = nn.LayerNorm((s, c), eps=1e-6)
        self.norm2 = nn.LayerNorm((s, c), eps=1e-6) if self.serial else None
        self.mlp_tokens = REF_MLPS[mlp](s, int(0.5 * c))
        self.mlp_channels = REF_MLPS[mlp](c, int(4.0 * c))

    def forward(self, x):
        if self.serial:
            x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
            return x + self.mlp_channels(self.norm2(x))
        n = self.norm1(x)
        return x + self.mlp_tokens(n.transpose(1, 2)).transpose(1, 2) + self.mlp_channels(n)


class RefMixer(nn.Module):
    def __init__(self, wiring: str, mlp: str, img_size: int, in_chans: int, patch_size: int,
                 dim: int, depth: int, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Conv2d(in_chans, dim, patch_size, patch_size)
        s = (img_size // patch_size) ** 2
        self.blocks = nn.Sequential(*[RefBlock(wiring, mlp, s, dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(1))


def reference_from(model: Mixer, wiring: str, mlp: str, cfg: dict) -> RefMixer:
    """A reference model holding exactly the zoo model's weights."""
    ref = RefMixer(wiring, mlp, cfg["img_size"], cfg["in_chans"], cfg["patch_size"],
                   cfg["dim"], cfg["depth"])
    ref.stem.load_state_dict(model.stem.state_dict())
    ref.norm.load_state_dict(model.norm.state_dict())
    ref.head.load_state_dict(model.head.state_dict())
    for rb, zb in zip(ref.blocks, model.blocks, strict=True):
        rb.norm1.load_state_dict((zb.norm1 if wiring == "serial" else zb.norm).state_dict())
        if wiring == "serial":
            rb.norm2.load_state_dict(zb.norm2.state_dict())
        for rm, zm in ((rb.mlp_tokens, zb.token_mlp), (rb.mlp_channels, zb.channel_mlp)):
            with torch.no_grad():
                if mlp == "vanilla":
                    rm.fc1.weight.copy_(zm.w1)
                    rm.fc2.weight.copy_(zm.w2)
                elif mlp == "symmetric":
                    rm.fc.weight.copy_(zm.w)
                else:
                    rm.fc1.weight.copy_(zm.w)
                    rm.fc2.weight.copy_(zm.v)
    return ref


# ----------------------------------------------------------------------------- measuring
def forward_flops(cfg: dict, mlp: str) -> float:
    """Analytic FLOPs (2 per multiply-add) of one image's forward pass, GEMMs only.

    The asymmetric MLP is counted as 2 GEMMs per MLP (its maths: (W^T + V) act(W v)), so a
    model that spends 3 GEMMs on it is charged for the extra work in its achieved FLOP/s.
    """
    s = (cfg["img_size"] // cfg["patch_size"]) ** 2
    c = cfg["dim"]
    stem = 2 * s * c * cfg["in_chans"] * cfg["patch_size"] ** 2
    token = 2 * 2 * c * s * int(0.5 * c)
    channel = 2 * 2 * s * c * int(4.0 * c)
    return stem + cfg["depth"] * (token + channel) + 2 * c * 10


def peak_rss_probe(config: str, variant: str, impl: str) -> float:
    """Peak resident memory (MiB) two training steps add, sampled in a fresh process: a
    long-lived process's allocator keeps freed memory, so in-process RSS would hide it."""
    out = subprocess.run([sys.executable, __file__, "--probe", config, variant, impl],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def run_probe(config: str, variant: str, impl: str) -> None:
    """Child side of peak_rss_probe."""
    cfg, (wiring, mlp) = CONFIGS[config], VARIANTS[variant]
    torch.set_num_threads(2)
    zoo = Mixer(block=wiring, mlp=mlp, img_size=cfg["img_size"], in_chans=cfg["in_chans"],
                patch_size=cfg["patch_size"], dim=cfg["dim"], depth=cfg["depth"])
    model = zoo if impl == "zoo" else reference_from(zoo, wiring, mlp, cfg)
    x = torch.randn(cfg["batch"], cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    y = torch.randint(0, 10, (cfg["batch"],))
    step = make_train_step(model, x, y, lambda: torch.zeros(()),
                           torch.autocast("cpu", enabled=False))
    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    done = threading.Event()

    def sample() -> None:  # RSS every millisecond: the step's high-water mark
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    step()
    step()
    done.set()
    thread.join()
    print((peak - base) / 2**20)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, reg, autocast):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with autocast:
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y) + reg()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def make_infer_step(model: nn.Module, x: torch.Tensor, autocast):
    @torch.no_grad()
    def step() -> None:
        with autocast:
            model(x)

    return step


def time_interleaved(steps: dict, repeats: int, warmup: int, device: torch.device) -> dict:
    """Median seconds per call of each step function, called in turn ``repeats`` times."""
    for _ in range(warmup):
        for fn in steps.values():
            fn()
    sync(device)
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for k, fn in steps.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def peak_memory(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    raise ValueError("CPU memory is measured by peak_rss_probe")


def matmul_limit(device: torch.device, dtype: torch.dtype, n: int = 2048,
                 repeats: int = 5) -> float:
    """Measured dense matmul FLOP/s (n x n x n) at this thread count."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    step = lambda: a @ b  # noqa: E731
    sec = time_interleaved({"mm": step}, repeats, 2, device)["mm"]
    return 2 * n**3 / sec


@dataclass
class Row:
    config: str
    model: str
    impl: str
    batch: int
    params: int
    train_img_s: float
    infer_img_s: float
    peak_mem_mib: float
    train_tflops: float
    frac_of_limit: float
    max_abs_diff: float | None = None


def bench_config(name: str, cfg: dict, args, device, limit: float) -> list[Row]:
    rows = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=args.precision == "bf16")
    g = torch.Generator().manual_seed(0)
    batch = cfg["batch"]
    x = torch.randn(batch, cfg["in_chans"], cfg["img_size"], cfg["img_size"], generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    x, y = x.to(device), y.to(device)
    for variant in args.models:
        wiring, mlp = VARIANTS[variant]
        torch.manual_seed(0)
        zoo = Mixer(block=wiring, mlp=mlp, img_size=cfg["img_size"], in_chans=cfg["in_chans"],
                    patch_size=cfg["patch_size"], dim=cfg["dim"], depth=cfg["depth"],
                    sb_lambda=1e-4 if MLP_KINDS[mlp].has_v else 0.0)
        nn.init.normal_(zoo.head.weight, std=0.02)  # a non-zero head, so outputs compare
        ref = reference_from(zoo, wiring, mlp, cfg)
        zoo, ref = zoo.to(device), ref.to(device)
        with torch.no_grad():
            diff = float((zoo(x) - ref(x)).abs().max())

        def ref_reg(ref=ref, mlp=mlp):
            if not MLP_KINDS[mlp].has_v:
                return torch.zeros((), device=device)
            return 1e-4 * sum(b.mlp_tokens.fc2.weight.pow(2).sum()
                              + b.mlp_channels.fc2.weight.pow(2).sum() for b in ref.blocks)

        models = {"zoo": (zoo, zoo.regularizer), "reference": (ref, ref_reg)}
        if args.compile:
            models = {k: (torch.compile(m), r) for k, (m, r) in models.items()}
        train = {k: make_train_step(m, x, y, r, autocast) for k, (m, r) in models.items()}
        infer = {k: make_infer_step(m, x, autocast) for k, (m, r) in models.items()}
        t_train = time_interleaved(train, args.repeats, args.warmup, device)
        t_infer = time_interleaved(infer, args.repeats, args.warmup, device)
        flops = 3 * forward_flops(cfg, mlp) * batch  # forward + backward ~ 3 forwards
        for impl in ("zoo", "reference"):
            mem = (peak_memory(train[impl], device) if device.type == "cuda"
                   else peak_rss_probe(name, variant, impl))
            achieved = flops / t_train[impl]
            rows.append(Row(name, variant, impl, batch, num_params(models[impl][0]),
                            batch / t_train[impl], batch / t_infer[impl], mem,
                            achieved / 1e12, achieved / limit,
                            diff if impl == "zoo" else None))
        print_rows(rows[-2:], header=not rows[:-2])
    return rows


def bench_scaling(args, device) -> list[dict]:
    """Training throughput of the vanilla zoo model against depth and width (config a)."""
    out = []
    base = dict(CONFIGS["a"])
    for dim, depth in [(64, 4), (128, 4), (256, 4), (128, 2), (128, 8)]:
        cfg = {**base, "dim": dim, "depth": depth}
        torch.manual_seed(0)
        model = Mixer(block="serial", mlp="vanilla", img_size=cfg["img_size"],
                      in_chans=cfg["in_chans"], patch_size=cfg["patch_size"], dim=dim,
                      depth=depth).to(device)
        x = torch.randn(cfg["batch"], 1, 28, 28, device=device)
        y = torch.randint(0, 10, (cfg["batch"],), device=device)
        step = make_train_step(model, x, y, model.regularizer,
                               torch.autocast(device.type, enabled=False))
        sec = time_interleaved({"s": step}, args.repeats, args.warmup, device)["s"]
        out.append({"dim": dim, "depth": depth, "ms_per_step": 1000 * sec,
                    "gflop_per_step": 3 * forward_flops(cfg, "vanilla") * cfg["batch"] / 1e9})
        r = out[-1]
        print(f"  dim {dim:4d} depth {depth:2d}: {r['ms_per_step']:8.1f} ms/step "
              f"({r['gflop_per_step']:.1f} GFLOP/step)")
    return out


def print_rows(rows: list[Row], header: bool) -> None:
    if header:
        print(f"{'cfg':3} {'model':8} {'impl':10} {'train img/s':>11} {'infer img/s':>11} "
              f"{'peak MiB':>9} {'TFLOP/s':>8} {'of limit':>8} {'speedup':>8}")
    by = {r.impl: r for r in rows}
    for r in rows:
        speed = (f"{r.train_img_s / by['reference'].train_img_s:7.2f}x"
                 if r.impl == "zoo" and "reference" in by else "")
        print(f"{r.config:3} {r.model:8} {r.impl:10} {r.train_img_s:11.1f} {r.infer_img_s:11.1f} "
              f"{r.peak_mem_mib:9.1f} {r.train_tflops:8.3f} {100 * r.frac_of_limit:7.1f}% "
              f"{speed:>8}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["a", "b"], choices=sorted(CONFIGS))
    p.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--compile", action="store_true")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-scaling", action="store_true")
    p.add_argument("--out", type=Path)
    p.add_argument("--probe", nargs=3, help=argparse.SUPPRESS)  # internal: memory probe
    args = p.parse_args()
    if args.probe:
        run_probe(*args.probe)
        return
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    limit = matmul_limit(device, dtype)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip()
    print(f"device {device} ({platform.processor() or platform.machine()}), "
          f"{torch.get_num_threads()} threads, {args.precision}, compile={args.compile}, "
          f"torch {torch.__version__}, commit {commit}")
    print(f"measured {args.precision} matmul limit: {limit / 1e12:.3f} TFLOP/s")
    rows = []
    for name in args.configs:
        cfg = dict(CONFIGS[name])
        if name == "b" and device.type == "cpu":
            # S/16 on 2 CPU threads takes seconds per step: a few steps are enough
            args_b = argparse.Namespace(**{**vars(args), "repeats": min(args.repeats, 3),
                                           "warmup": 1})
            rows += bench_config(name, cfg, args_b, device, limit)
        else:
            rows += bench_config(name, cfg, args, device, limit)
    scaling = [] if args.no_scaling else (print("scaling (vanilla, config a):"),
                                          bench_scaling(args, device))[1]
    out = args.out or Path(__file__).parent / "results" / f"throughput-{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"commit": commit, "device": str(device),
                               "threads": torch.get_num_threads(), "precision": args.precision,
                               "compile": args.compile, "matmul_limit_flops": limit,
                               "rows": [asdict(r) for r in rows], "scaling": scaling}, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
