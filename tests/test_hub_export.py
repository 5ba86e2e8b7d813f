"""`python -m minigpt hub`: folders ready for the Hugging Face Hub, whose cards carry the
evaluation's results in metadata the Hub reads, and which load with transformers and PEFT."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from huggingface_hub import ModelCard

from minigpt import paths
from minigpt.errors import MiniGPTError
from minigpt.hub import data_sources, export_hub
from minigpt.metrics import SCORES
from tests.helpers import REPO
from tests.test_model_card import card_for

REPO_ID = "alguien/minigpt-es"


@pytest.fixture
def workspace(tmp_path, monkeypatch, tiny_model_dir, repo_params):
    """What `dvc repro` leaves, in a folder of its own: the tiny model with the train stage's
    card, an adapter on it, the committed metrics and dvc.lock."""
    from minigpt.lora import add_adapters, save_adapter
    from minigpt.model import from_hf
    from minigpt.tokenizer import load_tokenizer
    from tests.helpers import LORA

    shutil.copytree(tiny_model_dir, tmp_path / paths.MODEL)
    (tmp_path / paths.MODEL / "README.md").write_text(card_for(paths.MODEL.as_posix(), repo_params), encoding="utf-8")
    tokenizer = load_tokenizer(tiny_model_dir)
    save_adapter(
        add_adapters(from_hf(tiny_model_dir), LORA, seed=0), tmp_path / paths.ADAPTER, LORA, paths.MODEL, tokenizer
    )
    for path in (paths.EVAL_METRICS, paths.EVAL_SAMPLES, paths.DATA_METRICS, paths.CORPUS_METRICS, paths.LORA_METRICS):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, tmp_path / path)
    shutil.copy2(REPO / "dvc.lock", tmp_path / "dvc.lock")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_model_card_carries_the_evaluation_in_the_hubs_metadata(workspace):
    written = export_hub(paths.HUB, REPO_ID)
    assert written == {REPO_ID: paths.HUB / "minigpt-es", f"{REPO_ID}-lora": paths.HUB / "minigpt-es-lora"}
    card = ModelCard.load(paths.HUB / "minigpt-es" / "README.md")
    evaluation = json.loads(paths.EVAL_METRICS.read_text(encoding="utf-8"))
    assert card.data.license == "mit" and card.data.library_name == "transformers"
    assert {result.metric_type: result.metric_value for result in card.data.eval_results} == {
        score.key: score.of(evaluation) for score in SCORES
    }
    text = card.text
    assert "## Results" in text and "## Sample conversation" in text and "## Training data" in text
    assert "Evaluation runs after this model is saved" not in text  # the placeholder is replaced
    assert f'from_pretrained("{REPO_ID}")' in text and 'from_pretrained("models/minigpt")' not in text
    assert "transformers>=5" in text


def test_the_folders_load_with_transformers_and_peft_and_leave_the_pipelines_files_alone(workspace):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    before = (paths.ADAPTER / "adapter_config.json").read_bytes()
    export_hub(paths.HUB, REPO_ID)
    adapter = paths.HUB / "minigpt-es-lora"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == REPO_ID
    assert (paths.ADAPTER / "adapter_config.json").read_bytes() == before  # never written through a link
    assert ModelCard.load(adapter / "README.md").data.base_model == REPO_ID
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(paths.HUB / "minigpt-es"), adapter)
    assert type(model).__name__ == "PeftModelForCausalLM"


def test_results_of_other_weights_or_a_bad_repository_id_are_refused(workspace):
    with pytest.raises(MiniGPTError, match="USER/NAME"):
        export_hub(paths.HUB, "minigpt-es")
    lock = yaml.safe_load(open("dvc.lock", encoding="utf-8"))
    for dep in lock["stages"]["evaluate"]["deps"]:
        if dep["path"] == paths.MODEL.as_posix():
            dep["md5"] = "0" * 32 + ".dir"
    open("dvc.lock", "w", encoding="utf-8").write(yaml.safe_dump(lock))
    with pytest.raises(MiniGPTError, match="dvc repro evaluate"):
        export_hub(paths.HUB, REPO_ID)
    assert not paths.HUB.exists()


def test_hub_datasets_are_named_with_the_commit_read_and_local_files_are_not():
    stages = {
        "prepare": {
            "params": {
                "params.yaml": {
                    "prepare": {
                        "sources": [
                            {"kind": "alpaca", "hub": "bertin-project/alpaca-spanish", "revision": "main"},
                            {"kind": "jsonl", "path": "data/raw/handwritten.jsonl"},
                        ]
                    }
                }
            }
        }
    }
    data = {
        "sources": {
            "bertin-project/alpaca-spanish@main:train": {"kept": 50000, "commit": "a" * 40},
            "data/raw/handwritten.jsonl": {"kept": 380},
        }
    }
    found = data_sources(stages, data, {})
    assert [(s["where"], s["on_hub"], s["commit"], s["used"]) for s in found] == [
        ("bertin-project/alpaca-spanish", True, "a" * 40, "50,000 examples"),
        ("data/raw/handwritten.jsonl", False, "—", "380 examples"),
    ]
