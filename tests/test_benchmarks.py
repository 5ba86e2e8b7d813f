"""The benchmarks still run (on tiny settings): their numbers are for people, not for asserts."""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, run_command


def test_the_generation_benchmark_reports_every_variant(tiny_model_dir, tmp_path):
    out = tmp_path / "generation.json"
    run_command([sys.executable, "benchmarks/generation.py", "--model", str(tiny_model_dir), "--shapes", "default",
                 "--new-tokens", "8", "--repeats", "1", "--no-cache-row", "--out", str(out)], cwd=REPO)
    rows, = json.loads(out.read_text())["results"].values()
    assert [row["variant"] for row in rows] == ["dynamic cache", "static cache", "no cache"]
    assert all(row["new_tokens"] == 8 and row["tokens_per_second"] > 0 for row in rows)


@pytest.mark.slow
def test_the_gpu_seed_scale_script_runs_at_a_tiny_scale(tmp_path):
    """The GPU script's whole path on a CPU, on a kit-shaped folder, so that it cannot rot."""
    from tests.conftest import spanish_examples

    kit = tmp_path / "kit"
    (kit / "corpus-es").mkdir(parents=True)
    (kit / "instrucciones-es").mkdir()
    (kit / "corpus-es" / "texto.txt").write_text(
        "\n\n".join(f"El río número {i} pasa por el pueblo y llega al mar después de muchos días." for i in range(60)),
        encoding="utf-8")
    (kit / "instrucciones-es" / "traduccion-1.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in spanish_examples(200)), encoding="utf-8")
    item = {"instruction": "¿Qué planeta es el más grande?", "input": "A. Marte\nB. Júpiter\nC. Venus\nD. Mercurio",
            "output": "La respuesta correcta es B: Júpiter.", "source": "okapi-arc-challenge-es", "category": "ciencia"}
    (kit / "instrucciones-es" / "opcion-multiple.jsonl").write_text(
        "".join(json.dumps(item, ensure_ascii=False) + "\n" for _ in range(5)), encoding="utf-8")
    out = tmp_path / "out"
    run_command([sys.executable, "benchmarks/gpu_seed_scale.py", "--data", str(kit), "--out", str(out), "--scale", "tiny",
                 "--commit", "test"], cwd=REPO)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["recipes"]) == {"reference (padded, full loss)", "ours (pretrain + packed, answer loss)"}
    for recipe in results["recipes"].values():
        assert recipe["steps"] >= 2 and 0 < recipe["scores"]["bits_per_byte"] and recipe["scores"]["okapi_chance"] == 0.25
    assert set(results["generation"]) == {"batch_1", "batch_16"} and results["throughput"]["results"]["minigpt"]
    assert "## Recipes at equal GPU seconds" in (out / "results.md").read_text(encoding="utf-8")
