"""Shared fixtures: small data files made by the tests themselves, and the repo's params."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from minigpt.config import PrepareParams, load_params

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
    return [example(f"{prefix} el concepto número {i} de la lista.",
                    f"El concepto número {i} es una idea que se usa en la vida diaria y en la escuela.")
            for i in range(count)]


@pytest.fixture(scope="session")
def repo_params():
    return load_params(REPO / "params.yaml")
