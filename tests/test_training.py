"""The training loop: packing and the loss mask, schedule, checkpoints, resume, divergence, ranks."""

from __future__ import annotations

import json
import re
import sys

import pytest
import torch

from minigpt import template
from minigpt.errors import MiniGPTError
from minigpt.model import GPT
from minigpt.packing import encode_documents, encode_instructions, pack
from minigpt.training import Cadence, CheckpointStore, CompileWatch, RowOrder, learning_rate, train_loop
from tests.helpers import RUNTIME, TINY, loop_params, random_rows, run_two_ranks, spanish_examples


class CharTokenizer:
    """A tiny stand-in with the tokenizer interface the loop uses: one id per character."""

    def __call__(self, texts, add_special_tokens=False):
        return {"input_ids": [[2 + ord(char) % 60 for char in text] for text in texts]}

    eos_token_id, pad_token_id = 0, 1


def test_only_answer_tokens_are_targets_unless_the_prompt_loss_is_on():
    rows = [{"instruction": "Di hola.", "input": "", "output": "Hola."}]
    ((ids, targets),) = encode_instructions(rows, CharTokenizer(), train_on_prompt=False)
    prompt = len(template.render_prompt("Di hola."))
    assert ids[-1] == 0 and len(ids) == prompt + len("Hola.") + 1
    assert targets == [False] * prompt + [True] * (len("Hola.") + 1)
    ((_, all_targets),) = encode_instructions(rows, CharTokenizer(), train_on_prompt=True)
    assert all(all_targets)


def test_packing_fills_rows_whole_and_never_leaves_a_row_without_targets():
    rows = spanish_examples(60)
    packed = pack(encode_instructions(rows, CharTokenizer(), train_on_prompt=False), 1000, pad_id=1)
    assert packed.stats["sequences"] == 60 and packed.stats["truncated"] == 0
    assert packed.targets[:, 1:].any(dim=1).all()  # the loss mask of every row has a target
    assert packed.stats["padding_fraction"] < 0.1
    assert int(packed.targets.sum()) == sum(len(row["output"]) + 1 for row in rows)
    pads = packed.tokens == 1
    assert not (packed.targets & pads).any()


def test_over_long_sequences_are_cut_or_dropped_and_counted():
    eos = 0
    sequences = [
        ([5] * 10 + [6] * 9 + [eos], [False] * 10 + [True] * 10),  # answer survives the cut, its end does not
        ([5] * 29 + [eos], [False] * 29 + [True]),  # only the prompt would fit
        ([7] * 4 + [eos], [True] * 5),
    ]
    packed = pack(sequences, 16, pad_id=1)
    assert (packed.stats["truncated"], packed.stats["dropped_too_long"], packed.stats["sequences"]) == (1, 1, 2)
    # A cut answer keeps no end it never had; the complete one trains its end token.
    ends = (packed.tokens == eos).nonzero().tolist()
    assert len(ends) == 1 and packed.targets[ends[0][0], ends[0][1]]
    with pytest.raises(MiniGPTError, match="no sequence fits"):
        pack([([5] * 30, [False] * 29 + [True])], 16, pad_id=1)


def test_documents_are_cut_into_row_sized_chunks_with_an_end_marker():
    sequences = encode_documents(["a" * 40], CharTokenizer(), row_length=16)
    assert [len(ids) for ids, _ in sequences] == [16, 16, 9] and sequences[-1][0][-1] == 0


def test_steps_visit_every_row_once_per_epoch_in_a_seeded_order():
    order = RowOrder(rows=10, rows_per_step=4, seed=3, device=torch.device("cpu"))
    first_epochs = torch.cat([order.step(step) for step in range(5)])  # 20 rows: two epochs, steps spanning both
    assert sorted(first_epochs[:10].tolist()) == list(range(10)) == sorted(first_epochs[10:].tolist())
    assert not torch.equal(first_epochs[:10], first_epochs[10:])  # each epoch has its own permutation
    again = RowOrder(rows=10, rows_per_step=4, seed=3, device=torch.device("cpu"))
    assert torch.equal(again.step(3), first_epochs[12:16])  # a function of the step: resuming needs no history


def test_evaluation_and_checkpoints_can_be_turned_off(tmp_path):
    torch.manual_seed(0)
    result = train_loop(
        GPT(TINY),
        random_rows(32),
        random_rows(8, seed=1),
        loop_params(eval_every=0, epochs=3.0),
        RUNTIME.model_copy(update={"checkpoint_every": 0, "log_every": 3}),
        tmp_path,
        None,
    )
    assert result.steps % 3 and not any("val/loss" in entry for entry in result.history)
    assert result.history[-1]["step"] == result.steps  # the steps after the last log still count
    assert not CheckpointStore(tmp_path, 2).paths()


def test_a_warmup_longer_than_the_run_is_said_with_the_peak_it_leaves(tmp_path, capsys):
    params = loop_params(epochs=5.0, max_steps=4, warmup_steps=1000, eval_every=0)
    run = RUNTIME.model_copy(update={"checkpoint_every": 0})
    train_loop(GPT(TINY), random_rows(64), random_rows(8, seed=1), params, run, tmp_path, None)
    printed = capsys.readouterr().out
    assert "warmup_steps (1,000) outlasts this run's 4 optimizer steps: the learning rate peaks at 0.4%" in printed
    assert "eta " in printed  # every log line says how long is left


def test_max_steps_ends_the_run_and_its_schedule_early(tmp_path):
    torch.manual_seed(0)
    params = loop_params(epochs=5.0, max_steps=3, warmup_steps=1, eval_every=0)
    result = train_loop(
        GPT(TINY),
        random_rows(64),
        random_rows(8, seed=1),
        params,
        RUNTIME.model_copy(update={"checkpoint_every": 0}),
        tmp_path,
        None,
    )
    assert result.steps == 3 and [entry["step"] for entry in result.history] == [1, 2, 3]
    assert result.history[-1]["lr"] == pytest.approx(learning_rate(2, 3, params))  # the cosine's end, not mid-way
    assert result.history[0]["step"] == 1  # the first step is always logged: the untrained model's loss


def test_learning_rate_warms_up_then_decays_to_its_floor():
    params = loop_params(learning_rate=1.0, warmup_steps=10, min_lr_ratio=0.1)
    rates = [learning_rate(step, 100, params) for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:]))
    assert learning_rate(100, 100, params) == pytest.approx(0.1)


def test_a_run_learns_and_resumes_exactly_where_it_stopped(tmp_path):
    train, val = random_rows(96), random_rows(16, seed=1)
    torch.manual_seed(0)
    full = train_loop(GPT(TINY), train, val, loop_params(epochs=2.0), RUNTIME, tmp_path / "full", None)
    losses = [entry["train/loss"] for entry in full.history if "train/loss" in entry]
    assert losses[-1] < losses[0]

    interrupted = tmp_path / "interrupted"
    torch.manual_seed(0)
    train_loop(
        GPT(TINY),
        train,
        val,
        loop_params(epochs=2.0),
        RUNTIME.model_copy(update={"keep_checkpoints": 100}),
        interrupted,
        None,
    )
    for path in CheckpointStore(interrupted, 100).paths()[1:]:
        path.unlink()  # as if killed right after the first checkpoint (step 4)
    torch.manual_seed(0)
    resumed = train_loop(GPT(TINY), train, val, loop_params(epochs=2.0), RUNTIME, interrupted, None)
    for name, tensor in full.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, rtol=0, atol=0)
    assert resumed.steps == full.steps

    def without_speed(history):
        return [{key: value for key, value in entry.items() if key != "tokens_per_second"} for entry in history]

    assert without_speed(resumed.history) == without_speed(full.history)


def test_another_runs_checkpoints_are_cleared_not_resumed(tmp_path):
    train, val = random_rows(64), random_rows(8, seed=1)
    torch.manual_seed(0)
    train_loop(GPT(TINY), train, val, loop_params(epochs=2.0), RUNTIME, tmp_path, None)
    finished = [path.name for path in CheckpointStore(tmp_path, 2).paths()]
    torch.manual_seed(1)  # other starting weights: another run
    shorter = train_loop(GPT(TINY), train, val, loop_params(epochs=1.0), RUNTIME, tmp_path, None)
    kept = [path.name for path in CheckpointStore(tmp_path, 2).paths()]
    assert kept[-1] == f"step-{shorter.steps:08d}.pt" and not set(kept) & set(finished)
    assert shorter.history[0]["step"] < shorter.steps  # trained from step 0, not "resumed" at the end


@pytest.mark.slow  # torch.compile takes a while on a CPU
def test_a_compiled_run_saves_plain_weights_and_resumes(tmp_path):
    train, val = random_rows(32), random_rows(8, seed=1)
    torch.manual_seed(0)
    compiled = RUNTIME.model_copy(update={"compile": True})
    first = train_loop(GPT(TINY), train, val, loop_params(), compiled, tmp_path, None)
    saved = torch.load(CheckpointStore(tmp_path, 2).paths()[-1], weights_only=True)["model"]
    assert set(saved) == set(GPT(TINY).state_dict())  # no "_orig_mod." prefixes
    torch.manual_seed(0)
    again = train_loop(GPT(TINY), train, val, loop_params(), compiled, tmp_path, None)
    assert again.history == first.history
    # Compiled throughout; evaluation (eval mode, its own batch) is a graph of its own, counted.
    assert first.summary["compiled"] is True and first.summary["eager_frames"] == 0
    assert first.summary["recompiles"] >= 1


def test_frames_dynamo_leaves_to_run_eagerly_make_a_run_not_compiled():
    plain = CompileWatch(enabled=False)
    assert plain.summary() == {"compiled": False, "recompiles": 0, "eager_frames": 0, "graph_breaks": 0}
    torch._dynamo.reset()
    watch = CompileWatch(enabled=True)
    double = torch.compile(lambda x: x * 2, backend="eager", dynamic=False)
    double(torch.ones(1))
    watch.first_step_done()
    assert watch.summary() == {"compiled": True, "recompiles": 0, "eager_frames": 0, "graph_breaks": 0}
    with torch._dynamo.config.patch(recompile_limit=2):
        for size in (2, 3, 4):  # the third new shape is past the limit: dynamo runs it eagerly, silently
            double(torch.ones(size))
    summary = watch.summary()
    assert summary["compiled"] is False and summary["eager_frames"] == 1 and summary["recompiles"] == 1


def test_a_corrupt_checkpoint_falls_back_to_the_previous_one(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    for step in (4, 8):
        store.save({"step": step, "fingerprint": "same", "model": {"w": torch.ones(2) * step}})
    (tmp_path / "step-00000008.pt").write_bytes(b"not a checkpoint")
    state, stale = store.load_latest("same")
    assert state["step"] == 4 and not stale
    assert store.load_latest("other params") == (None, True)
    for step in (12, 16, 20):
        store.save({"step": step, "fingerprint": "same"})
    assert [path.name for path in store.paths()] == ["step-00000012.pt", "step-00000016.pt", "step-00000020.pt"]


class DivergingGPT(GPT):
    """Returns a NaN loss from its 11th forward pass on: step 5, after the checkpoint and evaluation at step 4."""

    calls = 0

    def forward(self, idx, targets=None, loss_reduction="mean", documents=None):
        logits, loss = super().forward(idx, targets, loss_reduction, documents)
        DivergingGPT.calls += 1
        return logits, (loss * float("nan") if DivergingGPT.calls > 10 and loss is not None else loss)


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path):
    DivergingGPT.calls = 0
    with pytest.raises(MiniGPTError, match=r"training diverged: the loss is nan at step 6.*step-00000004\.pt"):
        train_loop(DivergingGPT(TINY), random_rows(64), random_rows(8), loop_params(), RUNTIME, tmp_path, None)
    saved = CheckpointStore(tmp_path, 2).paths()
    assert [path.name for path in saved] == ["step-00000004.pt"]
    weights = torch.load(saved[0], weights_only=True)["model"]
    assert all(torch.isfinite(tensor).all() for tensor in weights.values())


def test_dvclive_is_optional(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dvclive", None)  # `import dvclive` now fails
    result = train_loop(
        GPT(TINY), random_rows(32), random_rows(8), loop_params(), RUNTIME, tmp_path / "ckpt", tmp_path / "live"
    )
    assert result.history and not (tmp_path / "live").exists()


def test_dvclive_logs_every_metric_once(tmp_path):
    result = train_loop(
        GPT(TINY), random_rows(64), random_rows(8), loop_params(), RUNTIME, tmp_path / "ckpt", tmp_path / "live"
    )
    metrics = tmp_path / "live" / "plots" / "metrics"
    lines = (metrics / "train" / "loss.tsv").read_text().splitlines()
    logged = [entry["step"] for entry in result.history if "train/loss" in entry]
    assert lines[0] == "step\tloss" and [int(line.split("\t")[0]) for line in lines[1:]] == logged
    assert logged == sorted(set(logged)) and logged[-1] == result.steps
    assert (metrics / "val" / "loss.tsv").is_file() and (metrics / "lr.tsv").is_file()


def test_batch_tokens_must_split_evenly(tmp_path):
    with pytest.raises(MiniGPTError, match=r"batch_tokens \(100\) must be a multiple of"):
        train_loop(GPT(TINY), random_rows(16), random_rows(4), loop_params(batch_tokens=100), RUNTIME, tmp_path, None)


@pytest.mark.slow
def test_two_ranks_agree_and_only_rank_zero_writes(tmp_path):
    result = run_two_ranks(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    assert "× 2 processes" in result.stdout
    step_lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(step_lines) == len(set(step_lines)) > 0  # telemetry printed once, by rank 0
    total = int(re.search(r"for (\d+) steps", result.stdout).group(1))
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [
        "step-00000004.pt",
        f"step-{total:08d}.pt",
    ]


def test_flex_attention_is_refused_where_it_cannot_train(tmp_path):
    flex = RUNTIME.model_copy(update={"attention": "flex"})
    with pytest.raises(MiniGPTError, match="needs a CUDA device and model dropout 0.*Use attention: sdpa"):
        train_loop(GPT(TINY), random_rows(8), random_rows(4, seed=1), loop_params(), flex, tmp_path, None)


@pytest.mark.slow  # torch.compile takes a while on a CPU
def test_the_step_speedups_train_the_same_model(tmp_path):
    """chunked_loss and compiled_optimizer change how a step runs, not what it computes: the same
    losses to rounding, and the run says it stayed compiled."""
    train, val = random_rows(32), random_rows(8, seed=1)
    runs = {}
    for speedups in ([], ["chunked_loss", "compiled_optimizer"]):
        torch.manual_seed(0)
        runtime = RUNTIME.model_copy(update={"compile": True, "speedups": speedups})
        result = train_loop(GPT(TINY), train, val, loop_params(), runtime, tmp_path / str(len(speedups)), None)
        runs[len(speedups)] = result
    losses = [[entry["train/loss"] for entry in run.history if "train/loss" in entry] for run in runs.values()]
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    assert all(run.summary["compiled"] and run.summary["eager_frames"] == 0 for run in runs.values())


@pytest.mark.parametrize("log_every, checkpoint_every", [(2, 0), (4, 5), (1, 7), (10, 0)])
def test_evaluation_falls_on_the_multiples_of_eval_every_and_the_last_step(tmp_path, log_every, checkpoint_every):
    """Whatever the log and checkpoint cadences: each job has its own rule."""
    assert [done for done in range(1, 9) if Cadence(8, log_every, 3, checkpoint_every).evaluate(done)] == [3, 6, 8]
    runtime = RUNTIME.model_copy(update={"log_every": log_every, "checkpoint_every": checkpoint_every})
    params = loop_params(eval_every=3, max_steps=8, epochs=100.0)
    result = train_loop(GPT(TINY), random_rows(32), random_rows(4, seed=1), params, runtime, tmp_path, None)
    assert [entry["step"] for entry in result.history if "val/loss" in entry] == [3, 6, 8]
    logged = [entry["step"] for entry in result.history if "train/loss" in entry]
    saved = (
        []
        if not checkpoint_every
        else [done for done in range(1, 9) if done % checkpoint_every == 0 or done in (3, 6, 8)]
    )
    assert logged == sorted({1, 8, *range(log_every, 9, log_every), *saved})  # a checkpoint holds the history up to it


@pytest.mark.parametrize("drop", [False, True])
def test_checkpoints_are_dropped_after_a_saved_run_only_when_asked(tmp_path, drop):
    from minigpt.training import RunOutputs, train_and_save

    outputs = RunOutputs(tmp_path / "model", tmp_path / "checkpoints", None, tmp_path / "m.json", tmp_path / "c.png")
    saved = []
    params = loop_params(epochs=5.0, max_steps=4, warmup_steps=1, eval_every=0)
    runtime = RUNTIME.model_copy(update={"checkpoint_every": 2, "drop_checkpoints": drop})
    train_and_save(
        GPT(TINY), random_rows(64), random_rows(8, seed=1), params, runtime, outputs, lambda *args: saved.append(args)
    )
    assert saved and (tmp_path / "m.json").is_file()  # dropped only after the model and metrics are saved
    assert len(CheckpointStore(tmp_path / "checkpoints", 2).paths()) == (0 if drop else 2)
