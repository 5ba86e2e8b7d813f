"""The seed recipe with pretraining rehearsed on a CPU: `python -m minigpt.presets seed pretrain
smoke --run` (what `dvc exp run $(python -m minigpt.presets seed pretrain smoke)` does in bash)
runs every stage at the 110M shape, then the chat serves the model it left."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minigpt.errors import STAGE_LOG
from tests.helpers import HAS_DATA_KIT, SHARED_DATA, commit_all, copy_repository, free_port, run_command, uses_data_kit

pytestmark = [pytest.mark.slow, uses_data_kit]

STAGES = [
    "prepare",
    "tokenizer",
    "corpus",
    "pretrain",
    "train",
    "evaluate",
    "lora",
    "evaluate_lora",
    "compare_architectures",
    "report",
]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A fresh clone's workspace after the smoke experiment, and each stage's time and memory."""
    workspace = copy_repository(tmp_path_factory.mktemp("smoke") / "minigpt-es", results=False)
    flags = ["-n", "smoke"]
    if HAS_DATA_KIT:  # enough Spanish text for all 32,000 tokens, hence the exact 110M model
        for corpus in (SHARED_DATA / "corpus-es").glob("*.txt"):
            shutil.copy(corpus, workspace / "data" / "corpus" / corpus.name)
        flags += ["-S", "corpus.sources=[{path:data/corpus/*.txt}]"]
    commit_all(workspace, "clone")
    log = workspace.parent / "stages.jsonl"
    started = time.perf_counter()
    run_command(
        [sys.executable, "-m", "minigpt.presets", "seed", "pretrain", "smoke", "--run", *flags],
        workspace,
        env={STAGE_LOG: str(log)},
        timeout=3600,
    )
    stages = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    print(
        f"\nseed smoke, {time.perf_counter() - started:.0f} s in all:\n"
        "| stage | seconds | peak RSS MiB |\n|---|---:|---:|"
    )
    for entry in stages:
        print(f"| {entry['stage']} | {entry['seconds']} | {entry['peak_rss_mib']:,} |")
    return workspace, stages


def metrics(workspace: Path, name: str) -> dict:
    return json.loads((workspace / "metrics" / f"{name}.json").read_text(encoding="utf-8"))


def test_every_stage_runs_at_the_seed_shape(smoke_run):
    workspace, stages = smoke_run
    order = [entry["stage"] for entry in stages]
    assert sorted(order) == sorted(STAGES)
    for before, after in (
        ("prepare", "tokenizer"),
        ("tokenizer", "corpus"),
        ("corpus", "pretrain"),
        ("pretrain", "train"),
        ("train", "evaluate"),
        ("train", "lora"),
        ("lora", "evaluate_lora"),
        ("evaluate", "report"),
    ):
        assert order.index(before) < order.index(after)
    corpus, pretrain = metrics(workspace, "corpus"), metrics(workspace, "pretrain")
    assert corpus["enabled"] and pretrain["steps"] == 2 and pretrain["packing"]["train"]["layout"] == "open"
    assert pretrain["packing"]["train"]["tokens"] == corpus["tokens"]["train"]
    train = metrics(workspace, "train")
    assert train["steps"] == 2 and train["initial_train_loss"] > 0
    # rank 16 on every projection of 12 blocks, whatever the vocabulary
    assert metrics(workspace, "lora_train")["trainable_parameters"] == 2_359_296
    if HAS_DATA_KIT:
        assert train["parameters"] == 110_025_216
        assert 0.02 < metrics(workspace, "lora")["trainable_share"] < 0.025  # the reference's 2.1 %
    config = json.loads((workspace / "models" / "minigpt" / "config.json").read_text(encoding="utf-8"))
    assert (config["n_layer"], config["n_head"], config["n_embd"], config["n_positions"]) == (12, 12, 768, 512)
    assert metrics(workspace, "lora_train")["steps"] == 2
    assert metrics(workspace, "architectures")["shape"]["n_embd"] == 768
    report = (workspace / "metrics" / "report.md").read_text(encoding="utf-8")
    assert "## Encoder vs decoder" in report
    assert f"## Pretraining\n\nThe corpus: {sum(corpus['tokens'].values()):,} tokens in " in report
    assert "| corpus (held out) | minigpt |" in report  # the tokenizer scored on text it never saw


def test_the_experiment_is_in_dvc_exp_show(smoke_run):
    workspace, _ = smoke_run
    rows = json.loads(run_command([sys.executable, "-m", "dvc", "exp", "show", "--json"], workspace).stdout)
    experiments = [experiment for row in rows for experiment in (row.get("experiments") or [])]
    smoke = next(run for experiment in experiments for run in experiment["revs"] if run.get("name") == "smoke")
    params = smoke["data"]["params"]["params.yaml"]["data"]
    assert params["model"]["n_embd"] == 768 and params["train"]["max_steps"] == 2
    headline = smoke["data"]["metrics"]["metrics/headline.json"]["data"]
    assert headline["parameters"] == metrics(workspace, "train")["parameters"] and headline["perplexity"] > 1


def test_the_chat_serves_the_model_it_left(smoke_run):
    from gradio_client import Client

    workspace, _ = smoke_run
    port = free_port()
    output = workspace.parent / "chat.log"
    with output.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "minigpt", "chat", "--port", str(port)],
            cwd=workspace,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ | {"NO_PROXY": "127.0.0.1,localhost"},
        )
    try:
        deadline = time.monotonic() + 180
        while not _listening(port):
            assert server.poll() is None and time.monotonic() < deadline, (
                f"no chat on port {port}:\n{output.read_text()}"
            )
            time.sleep(0.5)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        for label in ("Base (minigpt)", "Base + LoRA (ciencia, programación)"):  # the stage's adapter is offered too
            answer, entrada = client.predict(message="¿Qué es un átomo?", model_label=label, api_name="/chat")
            # a finished answer; a refusal or a failure would be a titled message
            assert answer["metadata"] == {"status": "done"} and entrada == ""
    finally:
        server.terminate()
        server.wait(timeout=30)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
