"""The lm-evaluation-harness tasks in lm_eval_tasks/ ask what `evaluate` asks, item for item,
and score as it scores (checked without lm-eval: its loading is mimicked here)."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from minigpt import paths, template
from minigpt.evaluation import load_choice_items
from minigpt.metrics import ROUGE_TYPES, bleu_chrf, parse_choice_item, rouge_scores
from tests.helpers import REPO, SHARED_DATA, needs_shared_data, run_command, spanish_examples

TASKS = REPO / "lm_eval_tasks"
TASK_NAMES = {"minigpt_opcion_multiple", "minigpt_opcion_multiple_kit", "minigpt_generation"}


@dataclass(frozen=True)
class Function:
    """A `!function module.name` reference, resolved in the task folder as lm-eval resolves it."""

    reference: str

    def resolve(self):
        module, name = self.reference.split(".")
        assert module == "utils", f"{self.reference}: the tasks keep their code in lm_eval_tasks/utils.py"
        return getattr(utils, name)


class TaskLoader(yaml.SafeLoader):
    pass


TaskLoader.add_constructor("!function", lambda loader, node: Function(loader.construct_scalar(node)))


def load_task(path: Path) -> dict:
    """A task YAML with the file it includes merged under it, as lm-eval merges them."""
    config = yaml.load(path.read_text(encoding="utf-8"), Loader=TaskLoader)
    if "include" in config:
        return {**load_task(path.parent / config.pop("include")), **config}
    return config


def load_utils():
    """lm_eval_tasks/utils.py loaded by its path, as lm-eval loads it."""
    spec = importlib.util.spec_from_file_location("lm_eval_tasks_utils", TASKS / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


utils = load_utils()
tasks = {config["task"]: config for config in map(load_task, sorted(TASKS.glob("*.yaml")))}


def data_file(task: str) -> Path:
    """Where a task reads its documents; lm-eval is run from the repository root."""
    return (REPO / tasks[task]["dataset_kwargs"]["data_files"][tasks[task]["test_split"]]).resolve()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def functions(value) -> list[Function]:
    """Every `!function` in a task's config, however deep."""
    if isinstance(value, Function):
        return [value]
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [function for child in children for function in functions(child)]


def test_every_task_reads_local_json_and_names_functions_that_exist():
    assert set(tasks) == TASK_NAMES
    for config in tasks.values():
        assert config["dataset_path"] == "json"  # no hub: lm-eval loads the file with datasets' json reader
        assert functions(config) and all(callable(function.resolve()) for function in functions(config))


def test_the_tasks_read_the_evaluations_files():
    assert data_file("minigpt_opcion_multiple") == (REPO / paths.EVAL_SETS / "opcion_multiple.jsonl").resolve()
    assert data_file("minigpt_opcion_multiple").is_file()
    kit_items = SHARED_DATA / "instrucciones-es" / "opcion-multiple.jsonl"
    assert data_file("minigpt_opcion_multiple_kit") == kit_items.resolve()
    assert data_file("minigpt_generation") == (REPO / paths.PROCESSED_DATA / "validation.jsonl").resolve()


@pytest.mark.parametrize("task", ["minigpt_opcion_multiple", "minigpt_opcion_multiple_kit"])
def test_multiple_choice_is_scored_as_evaluate_scores_it(task):
    config = tasks[task]
    assert config["output_type"] == "multiple_choice"
    assert config["target_delimiter"] == ""  # the option right after the response header, no space
    assert [metric["metric"] for metric in config["metric_list"]] == ["acc", "acc_norm"]


def assert_same_items(task: str, rows: list[dict]) -> None:
    config = tasks[task]
    text, choices, target = (config[key].resolve() for key in ("doc_to_text", "doc_to_choice", "doc_to_target"))
    for row in rows:
        item = parse_choice_item(row)
        assert text(row) == template.render_prompt(item.question)
        assert choices(row) == item.options
        assert target(row) == item.answer


def test_every_bundled_item_has_our_prompt_options_and_answer():
    rows = read_jsonl(data_file("minigpt_opcion_multiple"))
    assert len(rows) == len(load_choice_items(str(data_file("minigpt_opcion_multiple")))) == 120
    assert_same_items("minigpt_opcion_multiple", rows)


def test_items_in_the_question_choices_answer_format_too():
    rows = [
        {"question": "¿Cuánto suman dos y dos?", "choices": ["tres", " cuatro ", "cinco"], "answer": 1},
        # A file mixing both formats: datasets fills the missing fields with None.
        {
            "question": None,
            "choices": None,
            "answer": None,
            "instruction": "¿Capital de Perú?",
            "input": "A) Lima\nB) Quito",
            "output": "La respuesta correcta es A.",
        },
    ]
    assert_same_items("minigpt_opcion_multiple", [rows[0]])
    assert utils.choice_item(rows[1]) == ("¿Capital de Perú?", ["Lima", "Quito"], 0)
    with pytest.raises(ValueError, match="not a multiple-choice item"):
        utils.choice_item({"instruction": "¿Y?", "input": "A. sí", "output": "La respuesta correcta es A."})


@needs_shared_data
def test_every_item_of_the_data_kit_has_our_prompt_options_and_answer():
    assert_same_items("minigpt_opcion_multiple_kit", read_jsonl(data_file("minigpt_opcion_multiple_kit")))


def test_generation_is_greedy_up_to_the_evaluations_answer_length_and_stops_at_end_of_text(repo_params):
    config = tasks["minigpt_generation"]
    assert config["output_type"] == "generate_until"
    assert config["generation_kwargs"] == {
        "until": [template.EOS_TOKEN],
        "do_sample": False,
        "max_gen_toks": repo_params.evaluate.max_new_tokens,
    }
    assert [metric["metric"] for metric in config["metric_list"]] == ["bleu", "chrf", *ROUGE_TYPES]
    assert list(utils.GENERATION_METRICS) == ["bleu", "chrf", *ROUGE_TYPES]


def test_generation_prompts_are_the_templates():
    rows = [
        *spanish_examples(2),
        {"instruction": "Resume el texto.", "input": "El río pasa por el pueblo.", "output": "Un río."},
        {
            "instruction": "¿Y la de Chile?",
            "input": "",
            "output": "Santiago.",
            "history": [
                {"role": "user", "content": "¿Cuál es la capital de Perú?"},
                {"role": "assistant", "content": "Lima."},
            ],
        },
    ]
    validation = REPO / paths.PROCESSED_DATA / "validation.jsonl"
    if validation.is_file():  # a pipeline output: present once `dvc repro prepare` (or `dvc pull`) ran
        rows += read_jsonl(validation)
    prompt = tasks["minigpt_generation"]["doc_to_text"].resolve()
    for row in rows:
        assert prompt(row) == template.render_row_prompt(row)


def test_generation_scores_are_evaluates_bleu_chrf_and_rouge():
    config = tasks["minigpt_generation"]
    answers = ["El gato duerme en la casa.", "La información está aquí", "Árbol"]
    references = ["El gato duerme en casa.", "La información no está aquí.", "Un árbol grande."]
    process = config["process_results"].resolve()
    per_document = [process({"output": reference}, [f" {answer}\n"]) for answer, reference in zip(answers, references)]
    aggregations = {metric["metric"]: metric["aggregation"].resolve() for metric in config["metric_list"]}
    scores = {name: aggregate([scored[name] for scored in per_document]) for name, aggregate in aggregations.items()}
    rouges = rouge_scores(answers, references)
    expected = bleu_chrf(answers, references)
    assert scores == {
        "bleu": expected["bleu"],
        "chrf": expected["chrf"],
        **{name: round(statistics.mean(score[name] for score in rouges), 4) for name in ROUGE_TYPES},
    }
    assert scores["bleu"] != bleu_chrf(references, answers)["bleu"]  # the answer is the hypothesis


def test_the_benchmark_says_where_lm_eval_is_missing():
    if importlib.util.find_spec("lm_eval") is not None:
        pytest.skip("lm_eval is installed here: the benchmark would run it")
    result = run_command([sys.executable, "benchmarks/lm_eval_tasks.py"], cwd=REPO, check=False)
    assert result.returncode == 1 and "has no lm_eval" in result.stderr
