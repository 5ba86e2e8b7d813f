"""The git repository itself: weights travel through DVC, never through git."""

from __future__ import annotations

import difflib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO


def git(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True)


def test_git_tracks_no_weights_under_models():
    """models/ holds DVC outputs and checkpoints; git tracks only its .gitignore."""
    try:
        toplevel = git("rev-parse", "--show-toplevel")
    except FileNotFoundError:
        pytest.skip("git is not installed")
    if toplevel.returncode != 0 or Path(toplevel.stdout.strip()).resolve() != REPO:
        pytest.skip("not a git checkout of this repository")
    tracked = git("ls-files", "models/").stdout.splitlines()
    assert tracked == ["models/.gitignore"], f"git tracks files under models/: {tracked}"


def test_dvc_exp_run_set_param_changes_only_the_lines_it_sets(tmp_path):
    """`dvc exp run -S` writes params.yaml back through ruamel with block lists: written that
    way already, an experiment's params diff is the lines it set, not every inline list."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", copy)
    before = copy.read_text(encoding="utf-8").splitlines()
    apply_overrides(copy, ["train.learning_rate=0.004", "lora.rank=4"])
    changed = [
        line
        for line in difflib.unified_diff(before, copy.read_text(encoding="utf-8").splitlines(), n=0, lineterm="")
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert changed == ["-  learning_rate: 2.0e-3", "+  learning_rate: 0.004", "-  rank: 8", "+  rank: 4"]
