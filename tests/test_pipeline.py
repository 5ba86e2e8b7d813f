"""End to end: `dvc repro` on a fresh copy of the repository, then what reruns and what does not."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, commit_all, copy_repository, exp_show_columns, run_command, short_head, update_params

pytestmark = pytest.mark.slow

SMALL_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64}
SHORT_TRAINING = {"epochs": 0.3, "micro_batch_size": 8, "batch_tokens": 512, "eval_every": 10}
QUICK_EVALUATION = {"generate_examples": 16, "max_new_tokens": 24}
SHORT_LORA = {"epochs": 1.0, "micro_batch_size": 8, "batch_tokens": 512, "rank": 2, "alpha": 4}
SMALL_STUDY = {
    **SMALL_MODEL,
    "block_size": 32,
    "steps": 6,
    "micro_batch_size": 4,
    "warmup_steps": 2,
    "seeds": [0, 1, 2],
}


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "dvc", *args], cwd, check)


def fresh_workspace(target: Path) -> Path:
    """A copy of the repository's files (as git sees them), as a fresh clone would have them."""
    copy_repository(target, results=False)
    update_params(
        target,
        model=SMALL_MODEL,
        train=SHORT_TRAINING,
        evaluate=QUICK_EVALUATION,
        lora=SHORT_LORA,
        compare_architectures=SMALL_STUDY,
        runtime={"checkpoint_every": 10},
    )  # seconds, not minutes
    commit_all(target, "clone")
    return target


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return fresh_workspace(tmp_path_factory.mktemp("clone") / "minigpt-es")


@pytest.fixture(scope="module")
def first_run(workspace) -> subprocess.CompletedProcess:
    return dvc("repro", cwd=workspace)


@pytest.fixture
def built(workspace, first_run, tmp_path) -> Path:
    """A copy of the built workspace (git, DVC cache, outputs) for a test that changes it: the
    shared workspace stays as the first run left it, whatever order the tests run in."""
    return Path(shutil.copytree(workspace, tmp_path / "minigpt-es", symlinks=True))


def test_repro_builds_every_output(workspace, first_run):
    assert "Running stage 'prepare'" in first_run.stdout and "Running stage 'tokenizer'" in first_run.stdout
    for name in ("train", "validation"):
        lines = (workspace / "data" / "processed" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        assert lines and all(json.loads(line)["instruction"] for line in lines)
    assert (workspace / "models" / "tokenizer" / "tokenizer.json").is_file()
    data = json.loads((workspace / "metrics" / "data.json").read_text(encoding="utf-8"))
    assert data["examples"]["train"] + data["examples"]["validation"] == data["examples"]["kept"] >= 1500
    tokenizer = json.loads((workspace / "metrics" / "tokenizer.json").read_text(encoding="utf-8"))
    assert tokenizer["eval"]["validation"]["minigpt"]["chars_per_token"] > 2.5
    assert (workspace / "plots" / "tokenizer_comparison.png").read_bytes().startswith(b"\x89PNG")
    # No corpus by default: pretraining is off, quickly, and says so.
    assert json.loads((workspace / "metrics" / "corpus.json").read_text(encoding="utf-8")) == {"enabled": False}
    assert json.loads((workspace / "data" / "shards" / "index.json").read_text(encoding="utf-8"))["enabled"] is False
    assert json.loads((workspace / "metrics" / "pretrain.json").read_text(encoding="utf-8")) == {"enabled": False}
    assert "Running stage 'train'" in first_run.stdout
    assert (workspace / "models" / "minigpt" / "model.safetensors").is_file()
    train = json.loads((workspace / "metrics" / "train.json").read_text(encoding="utf-8"))
    assert train["val_loss"] < 8 and train["parameters"] > 0
    card = (workspace / "models" / "minigpt" / "README.md").read_text(encoding="utf-8")
    assert f"| {train['parameters']:,} |" in card and f"{train['val_loss']:.3g}" in card
    assert (workspace / "dvclive" / "train" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert (workspace / "plots" / "training_curves.png").read_bytes().startswith(b"\x89PNG")


def test_the_headline_is_the_one_dvc_metrics_file_and_the_report_is_written(workspace, first_run):
    metrics = next(iter(json.loads(dvc("metrics", "show", "--json", cwd=workspace).stdout).values()))["data"]
    assert list(metrics) == ["metrics/headline.json"]  # each stage's breakdown is a plain output
    headline = metrics["metrics/headline.json"]["data"]
    evaluation = json.loads((workspace / "metrics" / "eval.json").read_text(encoding="utf-8"))
    assert {"perplexity", "bits_per_byte", "sequence_perplexity"} <= set(evaluation)
    assert {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "coherence"} <= set(evaluation["generation"])
    assert headline["perplexity"] == evaluation["perplexity"] and headline["bleu"] == evaluation["generation"]["bleu"]
    assert evaluation["multiple_choice"]["hechos"]["chance"] == 0.25
    samples = (workspace / "metrics" / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(samples) == evaluation["generation"]["examples"]
    for name in ("benchmark_results", "coherence_score", "error_analysis"):
        assert (workspace / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    report = (workspace / "metrics" / "report.md").read_text(encoding="utf-8")
    assert "# MiniGPT-ES report card" in report and "ROUGE-L" in report and "```yaml" in report
    assert f"Made from `{short_head(workspace)}`. " in report  # outputs rewritten by the run do not count as changes
    # Greedy and the chat's sampling side by side: metrics, failure kinds, languages and answers.
    assert {"coherence", "errors", "language"} <= set(evaluation["sampled"])
    assert "| metric | MiniGPT-ES | sampled | reference project |" in report
    assert "\n| sampled | " in report and "; sampled right " in report and "answer (sampled): " in report
    assert all("sampled" in json.loads(line) for line in samples)
    architectures = json.loads((workspace / "metrics" / "architectures.json").read_text(encoding="utf-8"))
    assert [len(runs) for runs in architectures["runs"].values()] == [3, 3]
    assert "## Encoder vs decoder" in report and "seed-to-seed spread" in report
    assert "## Pretraining\n\nOff: `corpus.sources` is empty" in report
    assert (workspace / "plots" / "architectures.png").read_bytes().startswith(b"\x89PNG")


def test_smaller_cpu_weights_keep_the_default_models_answer_perplexity_within_one_percent(workspace, first_run):
    """The tolerance `--weights bf16|int8` promises (docs/chat.md), on the model the pipeline trains."""
    from minigpt.evaluation import LikelihoodTotals, likelihood, validation_rows
    from minigpt.generation import load_model

    rows = validation_rows(workspace / "data" / "processed")

    def perplexity(weights: str) -> float:
        model, tokenizer = load_model(workspace / "models" / "minigpt", "cpu", weights=weights)
        return sum((t for t in likelihood(model, tokenizer, rows, 16) if t), LikelihoodTotals()).summary()["perplexity"]

    reference = perplexity("fp32")
    for weights in ("bf16", "int8"):
        assert abs(perplexity(weights) / reference - 1) < 0.01, weights


def test_an_evaluation_param_reruns_only_the_evaluations_and_the_report(built):
    replace_in_params(built, "max_new_tokens: 24", "max_new_tokens: 12")
    assert stages_run(dvc("repro", cwd=built).stdout) == {"evaluate", "evaluate_lora", "report"}


def test_dvc_plots_draw_the_training_curves(workspace, first_run):
    plots = json.loads(dvc("plots", "show", "--json", cwd=workspace).stdout)["data"]
    assert {"train_loss", "learning_rate"} <= set(plots)
    assert any(row["filename"] == "val/loss.tsv" for row in plots["train_loss"][0]["content"]["data"]["values"])


def test_outputs_are_git_ignored_and_metrics_are_not(workspace, first_run):
    status = run_command(["git", "status", "--porcelain", "--untracked-files=all"], workspace).stdout
    assert "data/processed" not in status and "models/" not in status
    assert "metrics/data.json" in status and "dvc.lock" in status


def test_the_committed_lock_matches_a_fresh_run(workspace, first_run):
    """dvc.lock in the repository records exactly what a fresh clone produces (determinism)."""
    committed = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    fresh = yaml.safe_load((workspace / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    for stage in ("prepare", "tokenizer"):
        assert output_hashes(fresh, stage) == output_hashes(committed, stage), stage


def output_hashes(lock: dict, stage: str) -> dict[str, str]:
    """A stage's output hashes in a dvc.lock, metrics (which hold timings) and plots left out."""
    return {
        out["path"]: out["md5"] for out in lock[stage]["outs"] if not out["path"].startswith(("metrics/", "plots/"))
    }


def test_a_second_copy_builds_the_same_data_tokenizer_and_weights(workspace, first_run, tmp_path):
    """Timings live in metrics files: the outputs DVC hashes depend on inputs alone."""
    copy = fresh_workspace(tmp_path / "minigpt-es")
    dvc("repro", "train", cwd=copy)
    first, second = (
        yaml.safe_load((root / "dvc.lock").read_text(encoding="utf-8"))["stages"] for root in (workspace, copy)
    )
    for stage, paths in (
        ("prepare", {"data/processed"}),
        ("tokenizer", {"models/tokenizer"}),
        ("train", {"models/minigpt", "dvclive/train"}),
    ):
        assert set(output_hashes(first, stage)) == paths
        assert output_hashes(second, stage) == output_hashes(first, stage), stage


def test_a_second_repro_does_nothing(workspace, first_run):
    second = dvc("repro", cwd=workspace)
    assert "Running stage" not in second.stdout
    assert dvc("status", cwd=workspace).stdout.strip() == "Data and pipelines are up to date."


def test_runtime_settings_rerun_nothing_and_stay_out_of_the_comparison(workspace, first_run):
    runtime = workspace / "runtime.yaml"
    original = runtime.read_text(encoding="utf-8")
    runtime.write_text(
        original.replace("log_every: 10", "log_every: 3")
        .replace("compile: false", "compile: true")
        .replace("inference_batch_size: 16", "inference_batch_size: 5"),
        encoding="utf-8",
    )
    try:
        assert dvc("status", cwd=workspace).stdout.strip() == "Data and pipelines are up to date."
        columns = _columns(dvc("exp", "show", "--md", cwd=workspace).stdout)
    finally:
        runtime.write_text(original, encoding="utf-8")
    assert "launcher" in columns  # in dvc.yaml's commands: a new launcher reruns the training stages
    assert not {"compile", "device", "log_every", "inference_batch_size", "checkpoint_every"} & set(columns)
    assert not any(column.endswith((".compile", ".log_every", ".device")) for column in columns)


def replace_in_params(directory: Path, old: str, new: str) -> None:
    params_file = directory / "params.yaml"
    original = params_file.read_text(encoding="utf-8")
    assert old in original
    params_file.write_text(original.replace(old, new), encoding="utf-8")


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_a_tokenizer_param_reruns_the_tokenizer_and_what_depends_on_it(built):
    replace_in_params(built, "vocab_size: 4096", "vocab_size: 2000")
    rerun = dvc("repro", cwd=built)
    assert stages_run(rerun.stdout) == {
        "tokenizer",
        "corpus",
        "pretrain",
        "train",
        "evaluate",
        "lora",
        "evaluate_lora",
        "compare_architectures",
        "report",
    }
    assert json.loads((built / "metrics" / "tokenizer.json").read_text())["vocab_size"] == 2000


def test_a_bad_param_fails_with_a_message_not_a_traceback(built):
    replace_in_params(built, "validation_fraction: 0.1", "validation_fraction: 2")
    result = run_command([sys.executable, "-m", "stages.prepare"], built, check=False)
    assert result.returncode == 1
    assert "prepare.validation_fraction" in result.stderr and "Traceback" not in result.stderr


def test_tokenizer_stage_says_which_stage_to_run_first(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    result = run_command([sys.executable, str(REPO / "stages" / "tokenizer.py")], tmp_path, check=False)
    assert result.returncode == 1 and "dvc repro prepare" in result.stderr and "Traceback" not in result.stderr


def answer(directory: Path) -> str:
    return run_command(
        [sys.executable, "-m", "minigpt", "generate", "¿Qué es la luz?", "--max-new-tokens", "12"], directory
    ).stdout


@contextlib.contextmanager
def read_only_http_server(directory: Path):
    """Serve a directory over HTTP on 127.0.0.1 (GET and HEAD only), as a public mirror would."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()


def test_weights_pushed_once_are_pulled_over_http_and_the_clone_is_up_to_date(built, tmp_path):
    """The maintainer pushes to writable storage; users pull from a read-only HTTP mirror of it."""
    storage = tmp_path / "storage"
    dvc("remote", "add", "upload", str(storage), cwd=built)
    dvc("push", "-r", "upload", cwd=built)
    before = answer(built)
    with read_only_http_server(storage) as url:
        dvc("remote", "add", "-d", "public", url, cwd=built)  # .dvc/config: committed with the project
        commit_all(built, "results")

        clone = tmp_path / "clone"
        run_command(["git", "clone", "-q", str(built), str(clone)], tmp_path)
        assert not (clone / "models" / "minigpt").exists() and not (clone / ".dvc" / "cache").exists()
        dvc("pull", cwd=clone)
        # Without cloning: `dvc get` by path, or `dvc artifacts get` once a version is tagged (docs/experiments.md).
        dvc("get", str(built), "models/minigpt", "-o", str(tmp_path / "by-path"), cwd=tmp_path)
        run_command(["git", "tag", "-a", "minigpt@v0.1.0", "-m", "first model"], built)
        dvc("artifacts", "get", str(built), "minigpt", "-o", str(tmp_path / "by-name"), cwd=tmp_path)
    assert (clone / "models" / "minigpt" / "model.safetensors").is_file()
    assert dvc("status", cwd=clone).stdout.strip() == "Data and pipelines are up to date."
    assert "Running stage" not in dvc("repro", cwd=clone).stdout
    assert answer(clone) == before
    artifacts = yaml.safe_load((clone / "dvc.yaml").read_text(encoding="utf-8"))["artifacts"]
    assert artifacts["minigpt"] == artifacts["minigpt"] | {"path": "models/minigpt", "type": "model"}

    weights = (built / "models" / "minigpt" / "model.safetensors").read_bytes()
    for fetched in ("by-path", "by-name"):
        assert (tmp_path / fetched / "model.safetensors").read_bytes() == weights


def test_experiments_run_queue_and_compare(built):
    commit_all(built, "results")  # experiments start from a commit
    dvc("exp", "run", "-n", "lr-high", "-S", "train.learning_rate=0.004", cwd=built)
    dvc("exp", "run", "--queue", "-n", "lr-low", "-S", "train.learning_rate=0.001", cwd=built)
    dvc("queue", "start", cwd=built)
    deadline = time.monotonic() + 600
    while any(state in dvc("queue", "status", cwd=built).stdout for state in ("Queued", "Running")):
        assert time.monotonic() < deadline, "the queued experiment did not finish in 10 minutes"
        time.sleep(2)
    assert "Failed" not in dvc("queue", "status", cwd=built).stdout, dvc(
        "queue", "logs", "lr-low", cwd=built, check=False
    ).stdout
    rows = _experiments(built)
    assert rows["lr-high"]["params"]["train"]["learning_rate"] == 0.004
    assert rows["lr-low"]["params"]["train"]["learning_rate"] == 0.001
    assert rows["lr-high"]["metrics"]["val_loss"] != rows["lr-low"]["metrics"]["val_loss"]
    assert "train.learning_rate" in dvc("exp", "diff", "lr-high", "lr-low", "--md", cwd=built).stdout

    # The comparison people read: few metric columns, the reference's first.
    metric_columns = [
        name
        for name in _columns(dvc("exp", "show", "--md", cwd=built).stdout)
        if name in exp_show_columns(rows["lr-low"]["metrics"])
    ]
    assert len(metric_columns) <= 25
    assert {"perplexity", "bleu", "rouge1", "rougeL", "coherence"} <= set(metric_columns[:10])
    changed = dvc("exp", "show", "--md", "--only-changed", cwd=built).stdout
    assert "lr-low" in changed and "train.learning_rate" in _columns(changed)
    assert len(_columns(changed)) <= 30 and "prepare.sources" not in changed
    # What docs/experiments.md shows: params and metrics without the dependencies' hash columns.
    readable = _columns(dvc("exp", "show", "--md", "--only-changed", "--drop", ".*/", cwd=built).stdout)
    assert "train.learning_rate" in readable and "val_loss" in readable
    assert not [name for name in readable if "/" in name] and [name for name in _columns(changed) if "/" in name]

    dvc("exp", "apply", "lr-low", cwd=built)
    assert "learning_rate: 0.001" in (built / "params.yaml").read_text(encoding="utf-8")
    assert "Made from experiment `lr-low` on commit `" in (built / "metrics" / "report.md").read_text(encoding="utf-8")


def _experiments(workspace: Path) -> dict[str, dict]:
    """Experiment name -> its params.yaml and headline metrics, from `dvc exp show --json`."""
    rows = {}
    for commit in json.loads(dvc("exp", "show", "--json", cwd=workspace).stdout):
        for experiment in commit.get("experiments") or []:
            for revision in experiment["revs"]:
                data = revision["data"]
                rows[revision["name"]] = {
                    "params": data["params"]["params.yaml"]["data"],
                    "metrics": data["metrics"]["metrics/headline.json"]["data"],
                }
    return rows


def _columns(markdown: str) -> list[str]:
    """The column names of a `dvc exp show --md` table."""
    return [cell.strip() for cell in markdown.splitlines()[0].strip("|").split("|")]
