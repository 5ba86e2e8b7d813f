"""params.yaml and runtime.yaml are validated once, with messages that name the key and file at fault."""

from __future__ import annotations

import sys
from typing import get_args

import pytest
import yaml

from minigpt.config import RuntimeParams, load_params
from minigpt.errors import MiniGPTError
from minigpt.model import ATTENTION_KINDS
from tests.helpers import REPO


def write_params(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def error_for(tmp_path, data) -> str:
    with pytest.raises(MiniGPTError) as caught:
        load_params(write_params(tmp_path, data))
    return str(caught.value)


def test_the_repository_params_are_valid(repo_params):
    assert repo_params.prepare.sources[0].path.startswith("data/raw/")
    assert 0 < repo_params.prepare.validation_fraction < 1
    assert repo_params.tokenizer.vocab_size > 256


def test_unknown_key_is_named(tmp_path, default_params):
    default_params["prepare"]["max_char"] = 10
    message = error_for(tmp_path, default_params)
    assert "prepare.max_char" in message and "Extra inputs are not permitted" in message


def test_unknown_section_is_named(tmp_path, default_params):
    default_params["tokeniser"] = {}
    assert "tokeniser" in error_for(tmp_path, default_params)


def test_wrong_type_is_named_with_the_value(tmp_path, default_params):
    default_params["tokenizer"]["vocab_size"] = "32000"
    message = error_for(tmp_path, default_params)
    assert "tokenizer.vocab_size" in message and "'32000'" in message


@pytest.mark.parametrize(
    "key, value",
    [
        ("validation_fraction", 1.5),
        ("validation_fraction", 0),
        ("max_chars", -1),
        ("on_error", "ignore"),
        ("split_by", "output"),
    ],
)
def test_impossible_prepare_values_are_named(tmp_path, default_params, key, value):
    default_params["prepare"][key] = value
    assert f"prepare.{key}" in error_for(tmp_path, default_params)


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("train", "epochs", float("inf")),
        ("train", "learning_rate", float("nan")),
        ("train", "seed", 2**70),
        ("prepare", "split_seed", -1),
        ("evaluate", "temperature", float("inf")),
        ("evaluate", "temperature", 50.0),
        ("lora", "weight_decay", float("inf")),
        ("compare_architectures", "seeds", [0, 1, 2**40]),
    ],
)
def test_values_the_code_cannot_use_are_refused_at_load(tmp_path, default_params, section, key, value):
    default_params[section][key] = value
    assert f"{section}.{key}" in error_for(tmp_path, default_params)


def test_a_source_needs_exactly_one_location(tmp_path, default_params):
    default_params["prepare"]["sources"] = [{"kind": "alpaca", "path": "a.json", "hub": "org/data", "revision": "v1"}]
    message = error_for(tmp_path, default_params)
    assert "prepare.sources[0]" in message and "exactly one of 'path'" in message


def test_a_hub_source_must_name_a_revision(tmp_path, default_params):
    default_params["prepare"]["sources"] = [{"kind": "alpaca", "hub": "bertin-project/alpaca-spanish"}]
    assert "needs a 'revision'" in error_for(tmp_path, default_params)


def test_unknown_source_kind_is_named(tmp_path, default_params):
    default_params["prepare"]["sources"][0]["kind"] = "csv"
    message = error_for(tmp_path, default_params)
    assert "prepare.sources[0].kind" in message and "'alpaca', 'oasst' or 'jsonl'" in message


def test_every_problem_is_reported_at_once(tmp_path, default_params):
    default_params["prepare"]["max_chars"] = 0
    default_params["tokenizer"]["min_frequency"] = 0
    message = error_for(tmp_path, default_params)
    assert "2 invalid value(s)" in message and "prepare.max_chars" in message and "tokenizer.min_frequency" in message


def test_missing_and_malformed_files_are_clear(tmp_path):
    with pytest.raises(MiniGPTError, match="not found"):
        load_params(tmp_path / "params.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("prepare: [unclosed", encoding="utf-8")
    with pytest.raises(MiniGPTError, match="not valid YAML"):
        load_params(bad)


def test_every_stage_in_dvc_yaml_has_a_params_section(repo_params):
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in stages.items():
        for declared in stage.get("params", []):  # a section, or section.key
            section, _, key = declared.partition(".")
            assert hasattr(repo_params, section), f"stage {name} declares unknown params section {section}"
            assert not key or hasattr(getattr(repo_params, section), key), f"stage {name}: unknown param {declared}"


@pytest.mark.parametrize(
    "changes, named",
    [
        (
            {"model": {"block_size": 512}},
            "lora.batch_tokens (4096) must be a multiple of lora.micro_batch_size × model.block_size = 16 × 512 = 8192",
        ),
        (
            {"compare_architectures": {"block_size": 2048}},
            "compare_architectures.block_size (2048) is above the tokenizer's limit",
        ),
        ({"evaluate": {"max_new_tokens": 256}}, "evaluate.max_new_tokens (256) leaves no room for a prompt"),
        ({"lora": {"categories": ["ciencias"]}}, "lora.categories ['ciencias'] are not categories of prepare"),
        ({"train": {"init_from": "pretrained"}}, "train.init_from is 'pretrained' but corpus.sources is empty"),
    ],
)
def test_rules_across_sections_fail_at_load_naming_the_keys(tmp_path, default_params, changes, named):
    for section, values in changes.items():
        default_params[section].update(values)
    assert named in error_for(tmp_path, default_params)


def test_every_broken_rule_is_named_at_once_and_only_for_stages_that_run(tmp_path, default_params):
    default_params["model"]["block_size"] = 512  # train and lora steps no longer split into rows
    message = error_for(tmp_path, default_params)
    assert "train.batch_tokens (4096)" in message and "lora.batch_tokens (4096)" in message
    assert "pretrain." not in message  # corpus.sources is empty: the stage does nothing
    default_params["corpus"]["sources"] = [{"path": "data/corpus/*.txt"}]
    assert "pretrain.batch_tokens (4096)" in error_for(tmp_path, default_params)


def test_processes_of_the_launcher_count_in_every_loop_step(tmp_path, default_params):
    (tmp_path / "runtime.yaml").write_text('launcher: "accelerate launch --multi_gpu --num_processes 8"\n')
    message = error_for(tmp_path, default_params)
    assert (
        "train.batch_tokens (4096) must be a multiple of train.micro_batch_size × model.block_size × 8 "
        "processes (launcher, runtime.yaml) = 16 × 256 × 8 = 32768"
    ) in message and "lora.batch_tokens" in message
    default_params["train"]["micro_batch_size"] = default_params["lora"]["micro_batch_size"] = 2
    assert load_params(write_params(tmp_path, default_params)).runtime.processes() == 8


def test_runtime_settings_come_from_runtime_yaml_with_defaults(tmp_path, default_params, repo_params):
    assert repo_params.runtime == RuntimeParams()  # the committed file shows the defaults
    assert load_params(write_params(tmp_path, default_params)).runtime == RuntimeParams()  # no file: defaults
    (tmp_path / "runtime.yaml").write_text("compile: true\nlog_every: 3\nattention: flex\n")
    runtime = load_params(write_params(tmp_path, default_params)).runtime
    assert runtime.compile and runtime.log_every == 3 and runtime.checkpoint_every == RuntimeParams().checkpoint_every
    assert runtime.attention == "flex" and RuntimeParams().attention == "sdpa"
    # The schema offers exactly the model's attention paths (config.py does not import torch).
    assert get_args(RuntimeParams.model_fields["attention"].annotation) == ATTENTION_KINDS


@pytest.mark.parametrize(
    "runtime, named",
    [
        ("compile: 'yes'\nlog_every: 0\n", "runtime.yaml has 2 invalid value(s):\n  compile: "),
        ("learning_rate: 0.1\n", "learning_rate: Extra inputs are not permitted"),
        ("- compile\n", "runtime.yaml must be a mapping"),
        ("attention: flash\n", "attention: Input should be 'sdpa' or 'flex'"),
        ("speedups: [fused_loss]\n", "speedups[0]: Input should be 'chunked_loss', 'bf16_residual'"),
        ("speedups: [compiled_optimizer]\n", "speedups: compiled_optimizer needs compile: true"),
    ],
)
def test_a_bad_runtime_file_is_named(tmp_path, default_params, runtime, named):
    (tmp_path / "runtime.yaml").write_text(runtime)
    assert named in error_for(tmp_path, default_params)


def test_a_runtime_setting_in_params_yaml_points_to_runtime_yaml(tmp_path, default_params):
    default_params["train"]["compile"] = True
    message = error_for(tmp_path, default_params)
    assert "train.compile: Extra inputs are not permitted" in message and "set once in runtime.yaml" in message
    del default_params["train"]["compile"]
    default_params["runtime"] = {"compile": True}
    assert "params.yaml has a 'runtime' section: runtime settings live in runtime.yaml" in error_for(
        tmp_path, default_params
    )


def test_runtime_yaml_needs_only_the_launcher_dvc_reads_and_dvc_needs_the_file(tmp_path, default_params):
    """What docs/design.md says: DVC reads runtime.yaml's `launcher`; every other key defaults."""
    from tests.helpers import copy_repository, run_command

    (tmp_path / "runtime.yaml").write_text("launcher: python\n")
    assert load_params(write_params(tmp_path, default_params)).runtime == RuntimeParams()
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    assert stages["vars"] == ["runtime.yaml"] and "${launcher}" in stages["stages"]["train"]["cmd"]
    copy = copy_repository(tmp_path / "copy", results=False)
    (copy / "runtime.yaml").unlink()
    run_command(["git", "init", "-q"], copy)
    status = run_command([sys.executable, "-m", "dvc", "status"], copy, check=False)
    assert status.returncode != 0 and "runtime.yaml" in status.stderr + status.stdout
