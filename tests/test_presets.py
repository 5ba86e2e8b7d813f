"""Presets expand into valid params and DVC flags; the seed preset is the reference's 110M shape."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from minigpt.config import Params
from minigpt.errors import MiniGPTError
from minigpt.model import GPT, GPTConfig
from minigpt.presets import PRESETS_DIR, apply_preset, load_preset, set_param_flags


@pytest.mark.parametrize("name", sorted(path.stem for path in PRESETS_DIR.glob("*.yaml")))
def test_every_preset_gives_valid_params(default_params, name):
    Params.model_validate(apply_preset(default_params, load_preset(name)))


def test_the_seed_preset_builds_the_110m_reference_model(default_params):
    params = Params.model_validate(apply_preset(default_params, load_preset("seed")))
    config = GPTConfig(vocab_size=params.tokenizer.vocab_size, **params.model.model_dump())
    with torch.device("meta"):
        assert GPT(config).num_parameters() == 110_025_216
    assert params.train.batch_tokens == 32 * 512 and params.train.epochs == 3


def test_presets_print_dvc_set_param_flags():
    flags = set_param_flags({"model": {"n_layer": 12}, "train": {"compile": True, "learning_rate": 6e-4}})
    assert flags == ["-S model.n_layer=12", "-S train.compile=true", "-S train.learning_rate=0.0006"]
    result = subprocess.run([sys.executable, "-m", "minigpt.presets", "seed"], capture_output=True, text=True)
    assert result.returncode == 0 and "-S model.n_embd=768" in result.stdout
    with pytest.raises(MiniGPTError, match="no preset 'huge' \\(known: .*seed"):
        load_preset("huge")
