"""The `corpus`, `pretrain` and `train` stage scripts on a copy of the repository, with a tiny model."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import copy_repository, run_command, spanish_documents, update_params, write_documents

pytestmark = pytest.mark.slow

TINY_MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "block_size": 64}
SHORT_TRAINING = {"epochs": 0.5, "micro_batch_size": 8, "batch_tokens": 512, "eval_every": 20, "eval_rows": 32}


def stage(name: str, workspace: Path, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return run_command([sys.executable, "-m", f"stages.{name}"], workspace, check, **kwargs)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A workspace where prepare and tokenizer have run, to copy for each training test."""
    workspace = copy_repository(tmp_path_factory.mktemp("prepared") / "repo")
    update_params(
        workspace,
        model=TINY_MODEL,
        train=SHORT_TRAINING,
        pretrain=SHORT_TRAINING,
        evaluate={"max_new_tokens": 24},  # answers must fit the tiny model's 64-token context
        runtime={"log_every": 5, "checkpoint_every": 10},
    )
    stage("prepare", workspace)
    stage("tokenizer", workspace)
    stage("corpus", workspace)
    stage("pretrain", workspace)
    return workspace


@pytest.fixture
def workspace(prepared, tmp_path) -> Path:
    return Path(subprocess.run(["cp", "-a", str(prepared), str(tmp_path / "repo")], check=True).args[-1])


def weights(workspace: Path) -> dict[str, torch.Tensor]:
    return load_file(workspace / "models" / "minigpt" / "model.safetensors")


def test_train_writes_a_hugging_face_model_that_answers(workspace):
    result = stage("train", workspace)
    assert "packed" in result.stdout and "padding" in result.stdout
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    directory = workspace / "models" / "minigpt"
    model, tokenizer = AutoModelForCausalLM.from_pretrained(directory), AutoTokenizer.from_pretrained(directory)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "¿Cuál es la capital de Francia?"}], tokenize=False, add_generation_prompt=True
    )
    generator = pipeline("text-generation", model=model, tokenizer=tokenizer)
    answer = generator(prompt, min_new_tokens=4, max_new_tokens=8, do_sample=False, return_full_text=False)[0][
        "generated_text"
    ]
    assert isinstance(answer, str) and answer
    metrics = json.loads((workspace / "metrics" / "train.json").read_text(encoding="utf-8"))
    assert metrics["steps"] > 0 and metrics["tokens_per_second"] > 0 and metrics["device"] == "cpu"
    assert 0 <= metrics["packing"]["train"]["padding_fraction"] < 0.5
    assert metrics["val_loss"] < metrics["packing"]["train"]["rows"] * 100  # a number, not NaN


def test_the_command_line_evaluates_any_model_on_any_file(workspace, tmp_path):
    stage("train", workspace)
    data = tmp_path / "mine.jsonl"
    data.write_text(
        '{"instruction": "¿Cuál es la capital de Francia?", "output": "París."}\n'
        '{"instruction": "Di hola.", "input": "", "output": "Hola."}\n',
        encoding="utf-8",
    )
    out = tmp_path / "scores.json"
    result = run_command(
        [
            sys.executable,
            "-m",
            "minigpt",
            "evaluate",
            "--model",
            "models/minigpt",
            "--data",
            str(data),
            "--choices",
            "data/eval/opcion_multiple.jsonl",
            "--out",
            str(out),
            "--max-new-tokens",
            "8",
        ],
        workspace,
    )
    assert "perplexity (answers)" in result.stdout and "multiple choice: opcion_multiple" in result.stdout
    scores = json.loads(out.read_text(encoding="utf-8"))
    assert scores["metrics"]["examples"] == 2 and len(scores["samples"]) == 2
    choices_only = [sys.executable, "-m", "minigpt", "evaluate", "--choices", "data/eval/opcion_multiple.jsonl"]
    only_choices = run_command([*choices_only, "--out", str(out)], workspace)
    assert "multiple choice: opcion_multiple" in only_choices.stdout and "perplexity" not in only_choices.stdout
    assert json.loads(out.read_text(encoding="utf-8")) == {
        "metrics": {"multiple_choice": {"opcion_multiple": scores["metrics"]["multiple_choice"]["opcion_multiple"]}},
        "samples": [],  # nothing generated
    }
    nothing = run_command([sys.executable, "-m", "minigpt", "evaluate"], workspace, check=False)
    assert nothing.returncode == 1 and "nothing to evaluate" in nothing.stderr
    unwritable = run_command([*choices_only, "--out", "/proc/nope/x.json"], workspace, check=False)
    assert unwritable.returncode == 1 and "cannot write /proc/nope/x.json" in unwritable.stderr
    data.write_text('{"instruction": "¿Sin respuesta?"}\n', encoding="utf-8")
    bad = run_command([sys.executable, "-m", "minigpt", "evaluate", "--data", str(data)], workspace, check=False)
    assert bad.returncode == 1 and f"{data}:1: missing field: 'output'" in bad.stderr and "Traceback" not in bad.stderr


def test_lora_specialises_the_model_and_is_compared_with_the_base(workspace):
    stage("train", workspace)
    update_params(
        workspace,
        lora={"epochs": 1.0, "micro_batch_size": 8, "batch_tokens": 512, "rank": 2, "alpha": 4, "merge": True},
        evaluate={"generate_examples": 6, "max_new_tokens": 12},
    )
    result = stage("lora", workspace)
    assert "trainable parameters" in result.stdout
    adapter = workspace / "models" / "lora"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert (adapter / "merged" / "model.safetensors").is_file()
    stage("evaluate_lora", workspace)
    scores = json.loads((workspace / "metrics" / "lora.json").read_text(encoding="utf-8"))
    assert 0 < scores["trainable_share"] < 0.5 and scores["adapter_mb"] > 0
    assert scores["categories"] == ["ciencia", "programación"]  # read from the adapter's categories.json
    for subset in ("domain", "general"):
        assert set(scores[subset]) == {"examples", "base", "lora", "relative_change"}
        assert scores[subset]["relative_change"]["perplexity"] == pytest.approx(
            scores[subset]["lora"]["perplexity"] / scores[subset]["base"]["perplexity"] - 1, abs=1e-3
        )
    assert scores["domain"]["examples"] < scores["general"]["examples"]

    update_params(workspace, lora={"categories": ["astrología"]})
    bad = stage("lora", workspace, check=False)
    assert bad.returncode == 1 and "lora.categories ['astrología']" in bad.stderr and "ciencia" in bad.stderr


def test_a_killed_run_resumes_and_ends_where_an_uninterrupted_one_does(workspace, tmp_path):
    update_params(workspace, train={"epochs": 2.0})
    reference = Path(subprocess.run(["cp", "-a", str(workspace), str(tmp_path / "reference")], check=True).args[-1])
    stage("train", reference)

    checkpoints = workspace / "models" / "checkpoints" / "train"
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.train"],
        cwd=workspace,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(checkpoints.glob("step-*.pt")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(checkpoints.glob("step-*.pt")), "no checkpoint was written before the kill"
    assert not (workspace / "models" / "minigpt").exists()  # nothing half-written

    resumed = stage("train", workspace)
    assert "resuming from step" in resumed.stdout
    for name, tensor in weights(reference).items():
        torch.testing.assert_close(weights(workspace)[name], tensor, rtol=0, atol=0)


def test_pretraining_on_the_corpus_shards_initialises_instruction_tuning(workspace):
    write_documents(workspace / "data" / "corpus" / "textos.txt", spanish_documents(400))
    update_params(
        workspace,
        corpus={"sources": [{"path": "data/corpus/*.txt"}], "validation_fraction": 0.05},
        train={"init_from": "pretrained"},
    )
    stage("tokenizer", workspace)  # it learns from the corpus too, and scores itself on held-out corpus text
    scores = json.loads((workspace / "metrics" / "tokenizer.json").read_text())
    assert scores["corpus_sample"]["documents"] > 300 and "corpus (held out)" in scores["eval"]
    stale = stage("pretrain", workspace, check=False)  # the shards are still those of no corpus
    assert stale.returncode == 1 and "has no shards but corpus.sources is not" in stale.stderr
    stage("corpus", workspace)
    corpus = json.loads((workspace / "metrics" / "corpus.json").read_text())
    assert corpus["documents"]["train"] + corpus["documents"]["validation"] == 400 and corpus["tokens_per_second"] > 0
    stage("pretrain", workspace)
    assert (workspace / "models" / "pretrained" / "model.safetensors").is_file()
    pretrained = json.loads((workspace / "metrics" / "pretrain.json").read_text())
    assert pretrained["enabled"] and pretrained["packing"]["train"]["tokens"] == corpus["tokens"]["train"]
    result = stage("train", workspace)
    assert "training" in result.stdout

    update_params(workspace, tokenizer={"vocab_size": 500})
    stage("tokenizer", workspace)  # the shards are now another tokenizer's
    refused = stage("pretrain", workspace, check=False)
    assert refused.returncode == 1 and "written by another tokenizer" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_killed_corpus_stage_resumes_after_its_last_closed_shard(workspace, tmp_path):
    write_documents(workspace / "data" / "corpus" / "textos.txt", spanish_documents(20000))
    update_params(workspace, corpus={"sources": [{"path": "data/corpus/*.txt"}], "shard_tokens": 20000})
    reference = Path(subprocess.run(["cp", "-a", str(workspace), str(tmp_path / "reference")], check=True).args[-1])
    stage("corpus", reference)

    partial = workspace / "data" / "shards.partial"
    process = subprocess.Popen(
        [sys.executable, "-m", "stages.corpus"], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 120
    while not (partial / "progress.json").is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (partial / "progress.json").is_file(), "no shard was closed before the kill"
    assert not (workspace / "data" / "shards" / "train-00000.bin").exists()  # nothing half-written

    resumed = stage("corpus", workspace)
    assert "resuming after" in resumed.stdout and not partial.exists()
    for path in (reference / "data" / "shards").iterdir():
        assert (workspace / "data" / "shards" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize(
    "sections, message",
    [
        ({"model": {"block_size": 4096}}, "model.block_size (4096) is above the tokenizer's limit"),
        ({"train": {"batch_tokens": 1000}}, "batch_tokens (1000) must be a multiple of"),
        ({"train": {"init_from": "pretrained"}}, "corpus.sources is empty"),
        ({"model": {"n_head": 3}}, "n_embd (32) must be divisible by n_head (3)"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate"),
    ],
)
def test_bad_params_fail_at_start_naming_the_key(workspace, sections, message):
    update_params(workspace, **sections)
    result = stage("train", workspace, check=False)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_missing_inputs_say_which_stage_to_run(workspace):
    (workspace / "models" / "tokenizer" / "tokenizer.json").unlink()
    result = stage("train", workspace, check=False)
    assert result.returncode == 1 and "dvc repro tokenizer" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_split_says_which_stage_to_run(workspace):
    (workspace / "data" / "processed" / "validation.jsonl").write_text("", encoding="utf-8")
    result = stage("train", workspace, check=False)
    assert (
        result.returncode == 1 and "validation.jsonl is empty" in result.stderr and "dvc repro prepare" in result.stderr
    )
