"""The benchmarks still run (on tiny settings): their numbers are for people, not for asserts."""

from __future__ import annotations

import json
import sys

from tests.conftest import REPO, run_command


def test_the_generation_benchmark_reports_every_variant(tiny_model_dir, tmp_path):
    out = tmp_path / "generation.json"
    run_command([sys.executable, "benchmarks/generation.py", "--model", str(tiny_model_dir), "--shapes", "default",
                 "--new-tokens", "8", "--repeats", "1", "--no-cache-row", "--out", str(out)], cwd=REPO)
    rows, = json.loads(out.read_text())["results"].values()
    assert [row["variant"] for row in rows] == ["dynamic cache", "static cache", "no cache"]
    assert all(row["new_tokens"] == 8 and row["tokens_per_second"] > 0 for row in rows)
