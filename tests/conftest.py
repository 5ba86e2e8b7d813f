"""Shared fixtures: small data files made by the tests themselves, and the repo's params."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from minigpt.config import PrepareParams, load_params
from tests.helpers import REPO, spanish_documents, spanish_examples

# `datasets` caches what it loads, local folders included: never in the user's home from a test.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="minigpt-tests-datasets-"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the slow end-to-end tests (CI does)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow tests run only with --slow: `python -m pytest` alone is the fast suite."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def repo_params():
    return load_params(REPO / "params.yaml")


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


@pytest.fixture(scope="session")
def corpus_tokenizer(tmp_path_factory) -> Path:
    """A tokenizer directory (as the `tokenizer` stage writes it) that knows the test documents."""
    from minigpt.tokenizer import save_pretrained, train_bpe

    directory = tmp_path_factory.mktemp("corpus-tokenizer") / "tokenizer"
    save_pretrained(train_bpe(spanish_documents(300), vocab_size=500, min_frequency=2), directory, model_max_length=256)
    return directory
