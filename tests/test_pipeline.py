"""End to end: `dvc repro` on a fresh copy of the repository, then what reruns and what does not."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run(command: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    # The venv's bin first, so `python` in dvc.yaml commands is this interpreter.
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def dvc(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "dvc", *args], cwd, check)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """A copy of the repository's files (as git sees them), as a fresh clone would have them."""
    target = tmp_path_factory.mktemp("clone") / "minigpt-es"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    for generated in ("metrics", "plots", "dvc.lock"):  # start as a user whose clone has no results yet
        path = target / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run(["git", "init", "-q"], target)
    run(["git", "add", "-A"], target)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "clone"], target)
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


def test_outputs_are_git_ignored_and_metrics_are_not(workspace, first_run):
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], workspace).stdout
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


def test_a_tokenizer_param_reruns_only_the_tokenizer(workspace, first_run):
    params_file = workspace / "params.yaml"
    original = params_file.read_text(encoding="utf-8")
    try:
        params_file.write_text(original.replace("vocab_size: 4096", "vocab_size: 2000"), encoding="utf-8")
        rerun = dvc("repro", cwd=workspace)
        assert "Running stage 'tokenizer'" in rerun.stdout and "Running stage 'prepare'" not in rerun.stdout
        assert json.loads((workspace / "metrics" / "tokenizer.json").read_text())["vocab_size"] == 2000
    finally:
        params_file.write_text(original, encoding="utf-8")
        dvc("repro", cwd=workspace)


def test_a_bad_param_fails_with_a_message_not_a_traceback(workspace, first_run):
    params_file = workspace / "params.yaml"
    original = params_file.read_text(encoding="utf-8")
    try:
        params_file.write_text(original.replace("validation_fraction: 0.1", "validation_fraction: 2"), encoding="utf-8")
        result = run([sys.executable, "stages/prepare.py"], workspace, check=False)
        assert result.returncode == 1
        assert "prepare.validation_fraction" in result.stderr and "Traceback" not in result.stderr
    finally:
        params_file.write_text(original, encoding="utf-8")


def test_tokenizer_stage_says_which_stage_to_run_first(tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    result = run([sys.executable, str(REPO / "stages" / "tokenizer.py")], tmp_path, check=False)
    assert result.returncode == 1 and "dvc repro prepare" in result.stderr and "Traceback" not in result.stderr
