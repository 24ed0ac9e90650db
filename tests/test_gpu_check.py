"""benchmarks/gpu_check.py --dry-run: the GPU readiness check's code paths at tiny sizes on CPU
(the real Trainer with bf16 + torch.compile, the batch search, the data pipeline, DDP over
gloo), so the script cannot rot between GPU runs. Behaviour only: what the table holds, never
how fast anything ran."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check
from models import VARIANTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_prints_a_row_per_variant_the_pipeline_and_equal_ddp_losses(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"),
                           "--dry-run", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in proc.stdout.splitlines() if line.startswith("| ")]
    train = {r[1]: r for r in rows if r[0] == "train"}
    assert sorted(train) == sorted(VARIANTS)  # every variant of the table, nothing else
    gpu = torch.cuda.is_available()  # CI is a CPU machine; a GPU one runs the dry run there
    for name, r in train.items():
        assert float(r[2]) > 0, name  # images/s
        assert r[4].endswith("%") and float(r[4].rstrip(" %")) > 0, name  # of bf16 matmul
        assert r[5].endswith(" GiB") if gpu else r[5] == "n/a", name  # peak memory
        assert r[6] == ">= 16 (cap)", name  # tiny sizes never run out of memory
    (pipe,) = [r for r in rows if r[0] == "pipeline"]
    assert float(pipe[2]) > 0 and "the fastest training rate" in pipe[7]
    (ddp,) = [r for r in rows if r[0] == "ddp"]
    assert re.search(r"1 process vs \d+ x (nccl|gloo)", ddp[1])
    single, multi = map(float, re.search(r"loss (\S+) vs (\S+) ", ddp[7]).groups())
    assert abs(single - multi) <= 1e-5 * max(1.0, abs(single)) and ddp[7].endswith(": equal")

    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["commit"]
    assert [r["variant"] for r in report["train"]] == list(VARIANTS)
    assert report["ddp"]["equal"] is True
    # the steps trained (weights moved off their start), identically on 1 and 2 processes
    assert report["ddp"]["max_weight_diff"] < 1e-5
    assert report["ddp"]["loss_single"] != pytest.approx(2.302585, abs=1e-6)  # not just ln 10


def test_batch_search_doubles_then_bisects_to_a_sixteenth(monkeypatch):
    """The GPU side of the search (CPU never runs out of memory): with batches up to 300
    fitting, it doubles 8 -> 16 -> ... -> 512 (too big) and bisects to within 256 / 16."""
    tried = []

    def fake_fits(variant, plan, device, batch):
        tried.append(batch)
        return batch <= 300

    monkeypatch.setattr(gpu_check, "fits", fake_fits)
    plan = gpu_check.DRY_PLAN
    variant = next(iter(VARIANTS.values()))
    big = gpu_check.Plan(**{**plan.__dict__, "search_cap": 4096})
    largest, capped = gpu_check.largest_batch(variant, big, None)
    assert not capped
    assert tried[:7] == [8, 16, 32, 64, 128, 256, 512]
    assert 300 * 15 / 16 <= largest <= 300
    assert gpu_check.largest_batch(variant, plan, None) == (16, True)  # the cap stops it
