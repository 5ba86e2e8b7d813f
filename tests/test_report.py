"""The report's revision line and the headline metrics `dvc exp show` compares."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minigpt.report import git_revision, headline, pipeline_outputs, render_report
from tests.helpers import REPO, commit_all, exp_show_columns, short_head


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A git repository with one commit holding a param file and an output, as the working directory."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "params.yaml").write_text("lr: 1\n", encoding="utf-8")
    (tmp_path / "metrics" / "eval.json").write_text("{}\n", encoding="utf-8")
    commit_all(tmp_path, "start")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_clean_checkout_is_named_by_its_commit(checkout):
    assert git_revision(["metrics/eval.json"]) == f"`{short_head(checkout)}`"


def test_rewritten_outputs_do_not_mark_the_tree_modified(checkout):
    (checkout / "metrics" / "eval.json").write_text('{"bleu": 2}\n', encoding="utf-8")
    (checkout / "dvc.lock").write_text("schema: '2.0'\n", encoding="utf-8")  # new, but an output
    assert git_revision(["metrics", "dvc.lock"]) == f"`{short_head(checkout)}`"


def test_changed_or_new_inputs_mark_the_tree_modified(checkout):
    (checkout / "params.yaml").write_text("lr: 2\n", encoding="utf-8")
    assert git_revision(["metrics"]) == f"`{short_head(checkout)}` with uncommitted changes to `params.yaml`"
    (checkout / "new_module.py").write_text("x = 1\n", encoding="utf-8")
    assert git_revision(["metrics"]).endswith("uncommitted changes to `params.yaml` and 1 more file")  # the new file


def test_an_experiment_is_named_with_its_baseline(checkout, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "lr-high")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "0123456789abcdef0123456789abcdef01234567")
    (checkout / "params.yaml").write_text("lr: 2\n", encoding="utf-8")  # what `dvc exp run -S` does
    assert git_revision(["metrics"]) == "experiment `lr-high` on commit `0123456`"


def test_outside_git_the_revision_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above tmp_path is seen
    monkeypatch.chdir(tmp_path)
    assert git_revision() == "unknown (not a git checkout)"


def test_the_pipeline_outputs_come_from_dvc_yaml():
    outputs = pipeline_outputs((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    assert {
        "dvc.lock",
        "data/processed",
        "models/minigpt",
        "metrics/eval.json",
        "metrics/headline.json",
        "plots/training_curves.png",
        "dvclive/train",
    } <= set(outputs)
    assert "params.yaml" not in outputs and "data/raw" not in outputs


def stage_metrics() -> dict[str, dict]:
    return {
        name: json.loads((REPO / "metrics" / f"{name}.json").read_text(encoding="utf-8"))
        for name in ("train", "eval", "lora", "architectures")
    }


def test_the_headline_leads_with_the_reference_projects_metrics():
    metrics = stage_metrics()
    numbers = headline(metrics["train"], metrics["eval"], metrics["lora"], metrics["architectures"])
    assert list(numbers)[:8] == [
        "perplexity",
        "bits_per_byte",
        "bleu",
        "chrf",
        "rouge1",
        "rouge2",
        "rougeL",
        "coherence",
    ]
    assert numbers["perplexity"] == metrics["eval"]["perplexity"]
    assert numbers["rougeL"] == metrics["eval"]["generation"]["rougeL"]
    assert numbers["multiple_choice"] == {"hechos": metrics["eval"]["multiple_choice"]["hechos"]["accuracy"]}
    assert numbers["val_loss"] == metrics["train"]["val_loss"]
    assert len(exp_show_columns(numbers)) <= 25


def test_the_reference_stands_beside_our_metric_of_the_same_definition():
    metrics = {
        name: json.loads((REPO / "metrics" / f"{name}.json").read_text(encoding="utf-8"))
        for name in ("data", "tokenizer", "train", "eval", "lora", "architectures", "corpus", "pretrain")
    }
    text = render_report(
        metrics["data"],
        metrics["tokenizer"],
        metrics["train"],
        metrics["eval"],
        [],
        {},
        "`abc1234`",
        lora=metrics["lora"],
        architectures=metrics["architectures"],
        corpus=metrics["corpus"],
        pretrain=metrics["pretrain"],
    )
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():  # the first row of each name: the evaluation's, not LoRA's
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0].lstrip("| "), line.split(" | "))
    assert rows["perplexity (answers)"][-2:] == ["–", "ours only |"]
    assert rows["perplexity (sequences)"][-2:] == [
        "80.38",
        "assumed the same: its loss covered every token of an example |",
    ]
    assert rows["ROUGE-L"][-2] == "0.1096" and rows["coherence"][-2] == "0.6931"  # as published
    assert rows["reference project"][1:5] == ["–", "57,471", "54,597", "2,874"]
