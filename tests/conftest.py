"""Shared fixtures: small data files made by the tests themselves, and the repo's params."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from minigpt.config import PrepareParams, load_params

# `datasets` caches what it loads, local folders included: never in the user's home from a test.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="minigpt-tests-datasets-"))

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data (the data kit) is absent")


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    """Write rows (dicts, or raw strings written as-is) to a JSONL file under tmp_path."""

    def write(name: str, rows: list[Any]) -> Path:
        path = tmp_path / name
        with open(path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
        return path

    return write


@pytest.fixture
def default_params() -> dict:
    """The repository's params.yaml as plain data, to modify per test."""
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def prepare_params(default_params: dict) -> Callable[..., PrepareParams]:
    """Build validated PrepareParams from the defaults with other sources and overrides."""

    def build(sources: list[dict], **overrides: Any) -> PrepareParams:
        section = default_params["prepare"] | {"sources": sources} | overrides
        return PrepareParams.model_validate(section)

    return build


def example(instruction: str, output: str, input: str = "", **extra: str) -> dict:
    return {"instruction": instruction, "input": input, "output": output, **extra}


def spanish_examples(count: int, prefix: str = "Explica") -> list[dict]:
    """Distinct, clearly Spanish examples."""
    return [
        example(
            f"{prefix} el concepto número {i} de la lista.",
            f"El concepto número {i} es una idea que se usa en la vida diaria y en la escuela.",
        )
        for i in range(count)
    ]


@pytest.fixture(scope="session")
def repo_params():
    return load_params(REPO / "params.yaml")


# What `dvc repro` writes into git: a clone that has not run the pipeline yet lacks them.
RESULTS = ("metrics/", "plots/", "dvc.lock")


def copy_repository(target: Path, results: bool = True) -> Path:
    """Copy the repository's files as git sees them (tracked, or new and not ignored); without
    `results`, as a user whose clone has no results yet."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file() and (results or not name.startswith(RESULTS)):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run_command(
    command: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """Run with this interpreter's bin first on PATH, so `python` in dvc.yaml commands is this one
    (and with `env` added to the environment)."""
    env = os.environ | (env or {}) | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    return result


def free_port() -> int:
    """A TCP port on this machine that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def short_head(directory: Path) -> str:
    """The short hash of the commit checked out in `directory`."""
    return run_command(["git", "rev-parse", "--short", "HEAD"], directory).stdout.strip()


def commit_all(directory: Path, message: str) -> None:
    """Commit every file git does not ignore, making `directory` a repository first if needed
    (with a throwaway identity: `dvc exp run` needs a commit, and CI machines may have no user)."""
    if not (directory / ".git").exists():
        run_command(["git", "init", "-q"], directory)
    run_command(["git", "add", "-A"], directory)
    run_command(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", message], directory)


def exp_show_columns(metrics: dict, prefix: str = "") -> set[str]:
    """The column names `dvc exp show` gives a metrics file's values: one per leaf, nested keys
    joined by dots."""
    names = set()
    for key, value in metrics.items():
        names |= exp_show_columns(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key}
    return names


def update_params(workspace: Path, runtime: dict | None = None, **sections: dict) -> None:
    """Override keys of params.yaml sections, and the `runtime` keys of runtime.yaml, in a workspace copy."""
    for name, changes in (("params.yaml", sections), ("runtime.yaml", {None: runtime} if runtime else {})):
        if not changes:
            continue
        path = workspace / name
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
        for section, section_changes in changes.items():
            (values if section is None else values[section]).update(section_changes)
        path.write_text(yaml.safe_dump(values, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained tiny GPT with a tokenizer trained on a few examples, saved by the pipeline's code."""
    from minigpt.model import GPTConfig, init_model, save_hf
    from minigpt.tokenizer import iter_training_texts, load_tokenizer, save_pretrained, train_bpe

    directory = tmp_path_factory.mktemp("tiny-model")
    examples = directory / "examples.jsonl"
    examples.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in spanish_examples(100)), encoding="utf-8"
    )
    save_pretrained(
        train_bpe(iter_training_texts([examples]), vocab_size=400, min_frequency=2),
        directory / "tokenizer",
        model_max_length=64,
    )
    tokenizer = load_tokenizer(directory / "tokenizer")
    model = init_model(GPTConfig(vocab_size=len(tokenizer), block_size=64, n_layer=1, n_head=2, n_embd=32), seed=0)
    save_hf(model, directory / "model", tokenizer)
    return directory / "model"
