"""End to end: `dvc repro` on a fresh copy of the repository, then what reruns and what does not."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_repository, run_command, update_params

pytestmark = pytest.mark.slow

SMALL_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64}
SHORT_TRAINING = {"epochs": 0.3, "micro_batch_size": 8, "batch_tokens": 512, "eval_every": 10, "checkpoint_every": 10}
QUICK_EVALUATION = {"generate_examples": 16, "max_new_tokens": 24}
SHORT_LORA = {"epochs": 1.0, "micro_batch_size": 8, "batch_tokens": 512, "rank": 2, "alpha": 4}
SMALL_STUDY = {**SMALL_MODEL, "block_size": 32, "steps": 6, "micro_batch_size": 4, "warmup_steps": 2, "seeds": [0, 1, 2]}


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", "dvc", *args], cwd, check)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the repository's files (as git sees them), as a fresh clone would have them."""
    target = copy_repository(tmp_path_factory.mktemp("clone") / "minigpt-es")
    update_params(target, model=SMALL_MODEL, train=SHORT_TRAINING, evaluate=QUICK_EVALUATION,
                  lora=SHORT_LORA, compare_architectures=SMALL_STUDY)  # seconds, not minutes
    for generated in ("metrics", "plots", "dvc.lock"):  # start as a user whose clone has no results yet
        path = target / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_command(["git", "init", "-q"], target)
    run_command(["git", "add", "-A"], target)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "clone"], target)
    return target


@pytest.fixture(scope="module")
def first_run(workspace) -> subprocess.CompletedProcess:
    return dvc("repro", cwd=workspace)


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
    assert "Running stage 'train'" in first_run.stdout
    assert (workspace / "models" / "minigpt" / "model.safetensors").is_file()
    train = json.loads((workspace / "metrics" / "train.json").read_text(encoding="utf-8"))
    assert train["val_loss"] < 8 and train["parameters"] > 0
    card = (workspace / "models" / "minigpt" / "README.md").read_text(encoding="utf-8")
    assert f"| {train['parameters']:,} |" in card and f"{train['val_loss']:.3g}" in card
    assert (workspace / "dvclive" / "train" / "plots" / "metrics" / "train" / "loss.tsv").is_file()
    assert (workspace / "plots" / "training_curves.png").read_bytes().startswith(b"\x89PNG")


def test_evaluation_metrics_are_dvc_metrics_and_the_report_is_written(workspace, first_run):
    metrics = json.loads(dvc("metrics", "show", "--json", cwd=workspace).stdout)
    evaluation = next(iter(metrics.values()))["data"]["metrics/eval.json"]["data"]
    assert {"perplexity", "bits_per_byte", "sequence_perplexity"} <= set(evaluation)
    assert {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "coherence"} <= set(evaluation["generation"])
    assert evaluation["multiple_choice"]["hechos"]["chance"] == 0.25
    samples = (workspace / "metrics" / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(samples) == evaluation["generation"]["examples"]
    for name in ("benchmark_results", "coherence_score", "error_analysis"):
        assert (workspace / "plots" / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    report = (workspace / "metrics" / "report.md").read_text(encoding="utf-8")
    assert "# MiniGPT-ES report card" in report and "ROUGE-L" in report and "```yaml" in report
    assert "summary" in next(iter(metrics.values()))["data"]["metrics/architectures.json"]["data"]
    architectures = json.loads((workspace / "metrics" / "architectures.json").read_text(encoding="utf-8"))
    assert [len(runs) for runs in architectures["runs"].values()] == [3, 3]
    assert "## Encoder vs decoder" in report and "seed-to-seed spread" in report
    assert (workspace / "plots" / "architectures.png").read_bytes().startswith(b"\x89PNG")


def test_an_evaluation_param_reruns_only_the_evaluations_and_the_report(workspace, first_run):
    with edited_params(workspace, "max_new_tokens: 24", "max_new_tokens: 12"):
        assert stages_run(dvc("repro", cwd=workspace).stdout) == {"evaluate", "evaluate_lora", "report"}


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
    committed = yaml.safe_load((REPO / "dvc.lock").read_text(encoding="utf-8"))
    fresh = yaml.safe_load((workspace / "dvc.lock").read_text(encoding="utf-8"))
    for stage in ("prepare", "tokenizer"):
        assert fresh["stages"][stage]["outs"] == committed["stages"][stage]["outs"], stage


def test_a_second_repro_does_nothing(workspace, first_run):
    second = dvc("repro", cwd=workspace)
    assert "Running stage" not in second.stdout
    assert dvc("status", cwd=workspace).stdout.strip() == "Data and pipelines are up to date."


@contextlib.contextmanager
def edited_params(workspace: Path, old: str, new: str, restore_outputs: bool = True):
    """params.yaml with one text replaced for the block; afterwards the file (and outputs) restored."""
    params_file = workspace / "params.yaml"
    original = params_file.read_text(encoding="utf-8")
    assert old in original
    params_file.write_text(original.replace(old, new), encoding="utf-8")
    try:
        yield
    finally:
        params_file.write_text(original, encoding="utf-8")
        if restore_outputs:
            dvc("repro", cwd=workspace)


def stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def test_a_tokenizer_param_reruns_the_tokenizer_and_what_depends_on_it(workspace, first_run):
    with edited_params(workspace, "vocab_size: 4096", "vocab_size: 2000"):
        rerun = dvc("repro", cwd=workspace)
        assert stages_run(rerun.stdout) == {"tokenizer", "pretrain", "train", "evaluate", "lora", "evaluate_lora",
                                            "compare_architectures", "report"}
        assert json.loads((workspace / "metrics" / "tokenizer.json").read_text())["vocab_size"] == 2000


def test_a_bad_param_fails_with_a_message_not_a_traceback(workspace, first_run):
    with edited_params(workspace, "validation_fraction: 0.1", "validation_fraction: 2", restore_outputs=False):
        result = run_command([sys.executable, "stages/prepare.py"], workspace, check=False)
        assert result.returncode == 1
        assert "prepare.validation_fraction" in result.stderr and "Traceback" not in result.stderr


def test_tokenizer_stage_says_which_stage_to_run_first(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    result = run_command([sys.executable, str(REPO / "stages" / "tokenizer.py")], tmp_path, check=False)
    assert result.returncode == 1 and "dvc repro prepare" in result.stderr and "Traceback" not in result.stderr


# The tests below commit the workspace and change it: they run last.

def answer(directory: Path) -> str:
    return run_command([sys.executable, "-m", "minigpt", "generate", "¿Qué es la luz?", "--max-new-tokens", "12"],
                       directory).stdout


def test_weights_travel_through_a_remote_and_a_pulled_clone_is_up_to_date(workspace, first_run, tmp_path):
    remote = tmp_path / "remote"
    dvc("remote", "add", "-d", "storage", str(remote), cwd=workspace)  # .dvc/config: committed with the project
    dvc("push", cwd=workspace)
    before = answer(workspace)
    run_command(["git", "add", "-A"], workspace)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "results"], workspace)

    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", str(workspace), str(clone)], tmp_path)
    assert not (clone / "models" / "minigpt").exists() and not (clone / ".dvc" / "cache").exists()
    dvc("pull", cwd=clone)
    assert (clone / "models" / "minigpt" / "model.safetensors").is_file()
    assert dvc("status", cwd=clone).stdout.strip() == "Data and pipelines are up to date."
    assert "Running stage" not in dvc("repro", cwd=clone).stdout
    assert answer(clone) == before
    artifacts = yaml.safe_load((clone / "dvc.yaml").read_text(encoding="utf-8"))["artifacts"]
    assert artifacts["minigpt"] == artifacts["minigpt"] | {"path": "models/minigpt", "type": "model"}


def test_experiments_run_queue_and_compare(workspace, first_run):
    dvc("exp", "run", "-n", "lr-high", "-S", "train.learning_rate=0.004", cwd=workspace)
    dvc("exp", "run", "--queue", "-n", "lr-low", "-S", "train.learning_rate=0.001", cwd=workspace)
    dvc("queue", "start", cwd=workspace)
    deadline = time.monotonic() + 600
    while any(state in dvc("queue", "status", cwd=workspace).stdout for state in ("Queued", "Running")):
        assert time.monotonic() < deadline, "the queued experiment did not finish in 10 minutes"
        time.sleep(2)
    assert "Failed" not in dvc("queue", "status", cwd=workspace).stdout, \
        dvc("queue", "logs", "lr-low", cwd=workspace, check=False).stdout
    rows = _experiments(workspace)
    assert rows["lr-high"]["params"]["train"]["learning_rate"] == 0.004
    assert rows["lr-low"]["params"]["train"]["learning_rate"] == 0.001
    assert rows["lr-high"]["metrics"]["val_loss"] != rows["lr-low"]["metrics"]["val_loss"]
    assert "train.learning_rate" in dvc("exp", "diff", "lr-high", "lr-low", "--md", cwd=workspace).stdout
    assert "lr-low" in dvc("exp", "show", "--md", cwd=workspace).stdout
    dvc("exp", "apply", "lr-low", cwd=workspace)
    assert "learning_rate: 0.001" in (workspace / "params.yaml").read_text(encoding="utf-8")


def _experiments(workspace: Path) -> dict[str, dict]:
    """Experiment name -> its params.yaml and metrics/train.json, from `dvc exp show --json`."""
    rows = {}
    for commit in json.loads(dvc("exp", "show", "--json", cwd=workspace).stdout):
        for experiment in commit.get("experiments") or []:
            for revision in experiment["revs"]:
                data = revision["data"]
                rows[revision["name"]] = {"params": data["params"]["params.yaml"]["data"],
                                          "metrics": data["metrics"]["metrics/train.json"]["data"]}
    return rows
