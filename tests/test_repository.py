"""The git repository itself: weights travel through DVC, never through git."""

from __future__ import annotations

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
