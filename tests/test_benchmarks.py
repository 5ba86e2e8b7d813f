"""The benchmarks still run (on tiny settings): their numbers are for people, not for asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, example, run_command, spanish_documents, write_documents


def test_the_generation_benchmark_reports_every_variant(tiny_model_dir, tmp_path):
    out = tmp_path / "generation.json"
    benchmark(
        "generation.py",
        "--model",
        str(tiny_model_dir),
        "--shapes",
        "default",
        "--new-tokens",
        "8",
        "--repeats",
        "1",
        "--no-cache-row",
        "--out",
        str(out),
    )
    (rows,) = json.loads(out.read_text())["results"].values()
    assert [row["variant"] for row in rows] == ["dynamic cache", "static cache", "no cache"]
    assert all(row["new_tokens"] == 8 and row["tokens_per_second"] > 0 for row in rows)


def benchmark(script: str, *arguments: str) -> str:
    """Run benchmarks/`script` with `arguments` from the repository; its standard output."""
    return run_command([sys.executable, f"benchmarks/{script}", *arguments], cwd=REPO).stdout


def kit_folder(root: Path) -> Path:
    """A folder in the data kit's layout: translation pairs (each with its reverse), a corpus, Okapi items."""
    kit = root / "kit"
    (kit / "corpus-es").mkdir(parents=True)
    (kit / "instrucciones-es").mkdir()
    (kit / "corpus-es" / "texto.txt").write_text(
        "\n\n".join(f"El río número {i} pasa por el pueblo y llega al mar después de muchos días." for i in range(60)),
        encoding="utf-8",
    )
    pairs = [
        (f"Los {i} gatos duermen en la casa de la abuela.", f"The {i} cats sleep in grandmother's house.")
        for i in range(150)
    ]
    rows = [example("Traduce al inglés la siguiente frase.", english, input=spanish) for spanish, english in pairs]
    rows += [example("Traduce al español la siguiente frase.", spanish, input=english) for spanish, english in pairs]
    (kit / "instrucciones-es" / "traduccion-1.jsonl").write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8"
    )
    item = {
        "instruction": "¿Qué planeta es el más grande?",
        "input": "A. Marte\nB. Júpiter\nC. Venus\nD. Mercurio",
        "output": "La respuesta correcta es B: Júpiter.",
        "source": "okapi-arc-challenge-es",
        "category": "ciencia",
    }
    (kit / "instrucciones-es" / "opcion-multiple.jsonl").write_text(
        "".join(json.dumps(item, ensure_ascii=False) + "\n" for _ in range(5)), encoding="utf-8"
    )
    return kit


def test_the_packing_benchmark_runs():
    printed = benchmark("packing.py", "--sequences", "300")
    assert printed.startswith("pack: 300 sequences into ")


def test_the_split_leak_benchmark_counts_reversed_pairs(tmp_path):
    kit = kit_folder(tmp_path)
    printed = benchmark("split_leaks.py", "--path", str(kit / "instrucciones-es" / "*.jsonl"), "--fraction", "0.3")
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in printed.splitlines()[2:]}
    assert set(rows) == {"group", "prompt", "instruction", "pair"}
    assert int(rows["prompt"][5].replace(",", "")) > 0  # the reverse of a validation pair is trained on
    assert rows["group"][4:7] == ["0", "0", "0"] and rows["pair"][5] == "0"


def test_the_packing_layout_benchmark_runs(tmp_path):
    out = tmp_path / "layouts.json"
    kit = kit_folder(tmp_path)
    benchmark("packing_layouts.py", "--steps", "2", "--kit", str(kit), "--kit-examples", "100", "--out", str(out))
    results = json.loads(out.read_text())
    assert len(results) == 2 and all(
        [row["layout"] for row in rows] == ["masked", "open", "padded"] for rows in results.values()
    )
    assert all(row["answer_bits_per_byte"] > 0 for rows in results.values() for row in rows)


def kit_with_a_corpus(root: Path) -> Path:
    """The kit folder with a corpus large enough for every split and a few training windows."""
    kit = kit_folder(root)
    write_documents(kit / "corpus-es" / "texto.txt", spanish_documents(3000))
    return kit


def test_the_corpus_shards_benchmark_measures_tokenizing_and_the_step(tmp_path):
    out = tmp_path / "shards.json"
    printed = benchmark(
        "corpus_shards.py",
        *("--kit", str(kit_with_a_corpus(tmp_path)), "--sizes-mb", "0.2", "0.4", "--vocab-size", "400"),
        *("--steps", "3", "--repeats", "1", "--out", str(out)),
    )
    results = json.loads(out.read_text())
    paths = [row["path"] for row in results["tokenizing"]]
    assert paths == ["in-memory packing (before shards)"] + ["corpus stage (shards)"] * 3
    assert [row["corpus_mb"] for row in results["tokenizing"][2:]] == [0.2, 0.4]
    assert all(row["tokens"] > 0 and row["peak_rss_mib"] > 0 for row in results["tokenizing"])
    assert len(results["steps"]["shards"]) == len(results["steps"]["in memory"]) == 1
    assert "| shards (ShardWindows) |" in printed


def test_the_pretraining_benchmark_compares_arms_at_equal_steps(tmp_path):
    out = tmp_path / "pays.json"
    printed = benchmark(
        "pretraining_pays.py",
        *("--kit", str(kit_with_a_corpus(tmp_path)), "--steps", "4", "--shares", "0", "0.5"),
        *("--examples", "200", "--choice-items", "5", "--vocab-size", "400", "--corpus-chars", "20000"),
        *("--out", str(out)),
    )
    arms = json.loads(out.read_text())
    assert [arm["share"] for arm in arms] == [0.0, 0.5]
    assert list(arms[0]["final_loss"]) == ["train"] and list(arms[1]["final_loss"]) == ["pretrain", "train"]
    assert all(arm["answer_bits_per_byte"] > 0 and arm["okapi"]["items"] == 5 for arm in arms)
    assert "| 2 | 2 |" in printed  # half the steps pretraining, half instruction tuning


@pytest.mark.slow
def test_the_gpu_benchmark_runs_the_stages_with_only_what_the_gpu_image_holds(tmp_path):
    """The rehearsal of benchmarks/gpu_seed_scale.sh: a fresh virtual environment with the GPU
    image's packages (a CPU torch), none of the project's others, at the tiny scale. It fails
    the day a stage imports something the image lacks and the script does not carry."""
    from benchmarks.gpu_seed_scale import STAGES

    venv = tmp_path / "venv"
    run_command([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    run_command(
        [*pip, "install", "--quiet", "-r", str(REPO / "benchmarks" / "gpu_image_requirements.txt")], cwd=tmp_path
    )
    run_command([*pip, "uninstall", "--yes", "--quiet", "pydantic", "pydantic-core"], cwd=tmp_path)  # via typer
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}",
        "GPU_DATA": str(tmp_path / "gpu_data"),
        "PYVER": f"{sys.version_info.major}.{sys.version_info.minor}",
    }
    for module in ("pydantic", "dvc", "dvclive", "rouge_score", "gradio"):
        assert (
            subprocess.run(
                [str(venv / "bin" / "python"), "-c", f"import {module}"], env=env, cwd=tmp_path, capture_output=True
            ).returncode
            != 0
        ), f"{module} is not in the GPU image"

    def script(*arguments: str) -> None:
        done = subprocess.run(
            ["bash", "benchmarks/gpu_seed_scale.sh", *arguments], cwd=REPO, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{arguments[0]} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"

    script("prepare", str(kit_with_a_corpus(tmp_path)))
    out = tmp_path / "out"
    script("run", str(out), "--scale", "tiny", "--commit", "rehearsal")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {name: phase["status"] for name, phase in results["phases"].items()} == dict.fromkeys(
        ["environment", "params", "stages", "attention", "step"], "done"
    )
    image = (REPO / "benchmarks" / "gpu_image_requirements.txt").read_text(encoding="utf-8").splitlines()
    (pinned,) = [line.split("==")[1].split()[0] for line in image if line.startswith("transformers==")]
    assert results["commit"] == "rehearsal"
    assert results["environment"]["transformers"] == pinned  # it ran with the versions of gpu_image_requirements.txt
    assert results["params"]["layers"]["prepare"]["sources"][0]["path"].startswith("data/kit/")
    stages = results["stages"]
    assert list(stages) == list(STAGES) and all(stage["status"] == "done" for stage in stages.values())
    assert all(stage["peak_rss_mib"] > 0 and stage["peak_gpu_mib"] is None for stage in stages.values())
    for name in ("pretrain", "train", "lora"):
        assert stages[name]["steps"] == 2 and stages[name]["tokens_per_second"] > 0
        assert stages[name]["compiled"] is False and stages[name]["recompiles"] == 0
    evaluation = stages["evaluate"]["metrics"]["metrics/eval.json"]
    assert set(evaluation["multiple_choice"]) == {"hechos", "okapi"} and evaluation["generation"]["bleu"] >= 0
    assert stages["evaluate"]["metrics"]["metrics/samples.jsonl"]
    assert "domain" in stages["evaluate_lora"]["metrics"]["metrics/lora.json"]
    assert results["attention"]["ok"]
    rows = results["step"]["results"]
    assert list(rows) == [
        "minigpt open",
        "minigpt masked sdpa",
        "minigpt open + chunked_loss + bf16_residual",
        "minigpt open dropout 0.1",
        "minigpt open + chunked_loss",
        "minigpt open + bf16_residual",
        "hf-reference",
    ]
    assert all(row["tokens_per_second"] > 0 for row in rows.values())
    # What comes back from a GPU machine: a few files, no folders.
    assert sorted(path.name for path in out.iterdir()) == ["results.json", "results.md", "stages.log"]
    assert "===== stage evaluate_lora" in (out / "stages.log").read_text(encoding="utf-8")
    assert "| evaluate_lora | done |" in (out / "results.md").read_text(encoding="utf-8")


def test_a_gpu_benchmark_out_of_time_still_writes_what_it_has(tmp_path):
    out = tmp_path / "out"
    benchmark(
        "gpu_seed_scale.py", "--data", str(kit_folder(tmp_path)), "--out", str(out), "--scale", "tiny", "--budget", "20"
    )
    phases = json.loads((out / "results.json").read_text(encoding="utf-8"))["phases"]
    assert phases["environment"]["status"] == phases["params"]["status"] == "done"
    assert phases["stages"]["status"] == "skipped" and "needs ~60 s" in phases["stages"]["reason"]
    assert "| stages | skipped: needs ~60 s" in (out / "results.md").read_text(encoding="utf-8")


def test_a_failing_stage_ends_the_gpu_benchmarks_chain_and_says_why(tmp_path):
    kit = kit_folder(tmp_path)
    (kit / "instrucciones-es" / "traduccion-1.jsonl").unlink()  # prepare has no translations to read
    out = tmp_path / "out"
    benchmark("gpu_seed_scale.py", "--data", str(kit), "--out", str(out), "--scale", "tiny")
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert list(results["stages"]) == ["prepare"] and results["stages"]["prepare"]["status"] == "failed (exit 1)"
    assert results["phases"]["stages"]["status"] == "failed" and "stage prepare" in results["phases"]["stages"]["error"]
    assert "traduccion-[123].jsonl" in (out / "stages.log").read_text(encoding="utf-8")


def test_the_train_step_benchmark_measures_masked_rows_beside_open_ones(tmp_path):
    out = tmp_path / "step.json"
    printed = benchmark(
        "train_step.py",
        *("--documents", "40", "--attention", "sdpa", "flex", "--dropout-row", "0.1"),
        *("--rows", "2", "--steps", "3", "--skip", "hf-reference", "--out", str(out)),
    )
    results = json.loads(out.read_text())["results"]
    assert list(results) == ["minigpt open", "minigpt masked sdpa", "minigpt open dropout 0.1"]
    assert all(row["tokens_per_second"] > 0 and row["compiled"] is None for row in results.values())  # no --compile
    assert "minigpt masked flex: skipped, FlexAttention has no backward pass on a CPU" in printed
