"""Presets expand into valid params and DVC flags; the seed preset is the reference's recipe."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from minigpt import presets
from minigpt.config import Params, load_params
from minigpt.errors import MiniGPTError
from minigpt.lora import add_adapters, parameter_counts
from minigpt.model import GPT, GPTConfig
from minigpt.presets import PRESETS_DIR, combine, load_preset, set_param_flags
from tests.helpers import REPO


def with_presets(*names: str) -> Params:
    """The repository's params.yaml and runtime.yaml with the presets layered on, validated."""
    return load_params(REPO / "params.yaml", overrides=combine(list(names)))


LAYERINGS = [[path.stem] for path in sorted(PRESETS_DIR.glob("*.yaml"))] + [
    ["seed", "smoke"],
    ["seed", "local"],
    ["seed", "pretrain"],
    ["seed", "pretrain", "smoke"],
    ["seed", "local", "pretrain", "pretrain-local"],
]


@pytest.mark.parametrize("names", LAYERINGS, ids=" + ".join)
def test_every_preset_and_layering_validates_every_section(names):
    """Cross-section rules included: batch_tokens against micro-batch × block size, contexts, categories."""
    with_presets(*names)


@pytest.mark.parametrize(
    "names", [["seed"], ["seed", "smoke"], ["seed", "local"], ["seed", "pretrain"]], ids=" + ".join
)
def test_the_printed_flags_are_what_dvc_applies(tmp_path, names):
    """The flags go through DVC's own override parser (Hydra), grouped by file as `dvc exp run`
    does, and give the preset's params and runtime settings."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import apply_overrides

    for name in ("params.yaml", "runtime.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    printed = subprocess.run(
        [sys.executable, "-m", "minigpt.presets", *names], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    assert printed[::2] == ["-S"] * (len(printed) // 2)  # one word per flag: the shell splits on spaces
    overrides = to_path_overrides(printed[1::2])
    assert set(overrides) == {"params.yaml", "runtime.yaml"}
    for name, file_overrides in overrides.items():
        apply_overrides(tmp_path / name, file_overrides)
    assert load_params(tmp_path / "params.yaml") == with_presets(*names)


def test_the_seed_preset_is_the_reference_recipe():
    params = with_presets("seed")
    config = GPTConfig(vocab_size=params.tokenizer.vocab_size, **params.model.model_dump())
    with torch.device("meta"):
        assert GPT(config).num_parameters() == 110_025_216
        adapted = add_adapters(GPT(config), params.lora, seed=0)
    trainable, total = parameter_counts(adapted)
    assert trainable / total == pytest.approx(0.021, abs=0.0005)  # the reference: 2.1 % trainable
    assert params.train.batch_tokens == 32 * 512 and params.train.epochs == 3
    assert params.prepare.validation_fraction == 0.05 and params.evaluate.max_new_tokens == 200
    hubs = {source.hub for source in params.prepare.sources if source.hub}
    assert hubs == {"bertin-project/alpaca-spanish", "OpenAssistant/oasst1"}
    assert {source.path for source in params.prepare.sources if source.path} >= {"data/raw/handwritten.jsonl"}


def test_smoke_keeps_the_seed_shape_and_shrinks_everything_else():
    seed = with_presets("seed")
    smoke = with_presets("seed", "smoke")
    assert smoke.model == seed.model and smoke.tokenizer.vocab_size == 32_000
    assert all(source.path for source in smoke.prepare.sources)  # no hub: it runs offline
    for section in (smoke.pretrain, smoke.train, smoke.lora):
        assert section.max_steps == 2 and section.batch_tokens == 512
    assert seed.runtime.compile and not smoke.runtime.compile and smoke.runtime.checkpoint_every == 0
    assert smoke.compare_architectures.block_size == 512 and smoke.train.init_from == "pretrained"
    assert all(source.path for source in smoke.corpus.sources)  # it pretrains, offline


def test_the_pretrain_preset_spends_the_reference_budget_on_spanish_text():
    params = with_presets("seed", "pretrain")
    hubs = {(source.hub, source.config) for source in params.corpus.sources}
    assert hubs == {("HuggingFaceFW/fineweb-2", "spa_Latn"), ("wikimedia/wikipedia", "20231101.es")}
    assert params.tokenizer.vocab_size == 32_000 and params.model.n_embd == 768  # the seed's model
    steps = params.pretrain.train_tokens / params.pretrain.batch_tokens
    assert 4_700 < steps < 4_800 and params.pretrain.batch_tokens == 1024 * params.model.block_size
    assert params.corpus.max_tokens > params.pretrain.train_tokens  # one pass: no document seen twice
    assert params.train.init_from == "pretrained"
    assert (
        params.train.model_copy(update={"init_from": "scratch"}) == with_presets("seed").train
    )  # then the seed's tuning
    # At the measured 514,740 tokens/s (benchmarks/RESULTS.md), pretraining fits the reference's 88.6 minutes.
    assert params.pretrain.train_tokens / 514_740 / 60 < 88.6 - 3
    rehearsal = with_presets("seed", "pretrain", "smoke")
    assert all(source.path for source in rehearsal.corpus.sources) and rehearsal.pretrain.train_tokens == 0
    assert rehearsal.pretrain.max_steps == 2 and rehearsal.model == params.model
    local = with_presets("seed", "local", "pretrain", "pretrain-local")
    assert [source.config for source in local.corpus.sources] == [source.config for source in params.corpus.sources]
    assert all(source.local_hub for source in local.corpus.sources)


def test_presets_print_dvc_set_param_flags():
    flags = set_param_flags(
        {
            "model": {"n_layer": 12},
            "train": {"learning_rate": 6e-4},
            "runtime": {"compile": True},
            "prepare": {"sources": [{"kind": "alpaca", "hub": "a/b", "split": "train+validation"}]},
        }
    )
    assert flags == [
        "-S model.n_layer=12",
        "-S train.learning_rate=0.0006",
        "-S runtime.yaml:compile=true",
        "-S prepare.sources=[{kind:alpaca,hub:a/b,split:train+validation}]",
    ]
    with pytest.raises(MiniGPTError, match="has a space"):
        set_param_flags({"runtime": {"launcher": "accelerate launch"}})
    # Strings Hydra would read as another type stay strings; accents are quoted.
    assert set_param_flags({"prepare": {"sources": [{"revision": "2024", "split": "true", "name": "ciencia-ñ"}]}}) == [
        "-S prepare.sources=[{revision:'2024',split:'true',name:'ciencia-ñ'}]"
    ]
    with pytest.raises(MiniGPTError, match="no preset 'huge' \\(known: .*seed"):
        load_preset("huge")


def test_later_presets_win_key_by_key():
    combined = combine(["seed", "smoke"])
    assert combined["train"]["batch_tokens"] == 512 and combined["train"]["learning_rate"] == 6e-4
    assert yaml.safe_load((PRESETS_DIR / "smoke.yaml").read_text())["train"]["max_steps"] == 2


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "train: 3\n", "train: [\n"])
def test_a_preset_that_is_not_sections_of_keys_is_named(monkeypatch, tmp_path, text):
    monkeypatch.setattr(presets, "PRESETS_DIR", tmp_path)
    (tmp_path / "broken.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(MiniGPTError, match="broken.yaml: "):
        presets.load_preset("broken")


@pytest.mark.parametrize("name", ["../params", "/etc/passwd", "seed/../smoke", "seed.yaml"])
def test_a_preset_name_is_a_file_of_presets_never_a_path(name):
    with pytest.raises(MiniGPTError, match=re.escape(f"no preset {name!r} (known: ")):
        presets.load_preset(name)
