"""bench/gpu.sh, the prepared GPU measurements, runs end to end on CPU at tiny sizes (--dry-run), so it works the
day a GPU session runs it: every section is measured and appended to the markdown file it is given."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_script_dry_run_appends_every_measurement(tmp_path):
    out = tmp_path / "benchmarks.md"
    out.write_text("# Benchmarks\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", str(ROOT / "bench" / "gpu.sh"), "--dry-run", "--out", str(out)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert text.startswith("# Benchmarks\n") and "## GPU run — `bench/gpu.sh` --dry-run" in text
    cache = re.findall(r"^\| \S+ \| (bf16|fp16) \| (\d+) \| \d+ \| (\d+) \| (\d+) \|", text, re.M)
    assert sorted((p, int(b)) for p, b, _, _ in cache) == [("bf16", 4), ("bf16", 8), ("fp16", 4), ("fp16", 8)]
    assert all(int(job) > 0 and int(raw) > 0 for _, _, job, raw in cache)
    assert re.search(r"\| 2 of 3 chunks in [\d.]+ s \| yes ", text), "the resumed job must equal the whole one"
    recipes = re.findall(r"^\| (vlmkd|hatfas|mmda) \| \S+ \| 16 \| fp32 \| [\d.]+ \| \d+ \|$", text, re.M)
    assert recipes == ["vlmkd", "hatfas", "mmda"]
