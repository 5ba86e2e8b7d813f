"""lm-evaluation-harness on the project's tasks (lm_eval_tasks/) against the project's own
scoring on the same documents: lm-eval's multiple-choice `acc` and `acc_norm` must equal
`multiple_choice_accuracy`'s `accuracy` and `accuracy_norm` (what `python -m minigpt evaluate`
reports), item for item, and its generation task's greedy answers and BLEU, chrF and ROUGE
those of `evaluate`. Prints both side by side; exits 1 when they differ on any item. Items
longer than the model's context are counted apart, as the place where windows could differ.

lm-eval runs in its own environment (`--python`, default: this one), offline, from the
repository root, in fp32 at batch size 1; our answers are generated one at a time too, so
that padding changes none of them.

    python benchmarks/lm_eval_tasks.py --python ~/lm-eval/bin/python
    python benchmarks/lm_eval_tasks.py --python ~/lm-eval/bin/python --tasks minigpt_opcion_multiple_kit
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from minigpt import paths  # noqa: E402
from minigpt.decoding import GREEDY  # noqa: E402
from minigpt.evaluation import answer_and_score, multiple_choice_accuracy  # noqa: E402
from minigpt.generation import SCORING_DTYPE, context_length, load_model  # noqa: E402
from minigpt.metrics import ChoiceItem, parse_choice_item  # noqa: E402
from minigpt.template import render_prompt  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "lm_eval_tasks"
GENERATION_METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL")
CHOICE_METRICS = {"acc": "accuracy", "acc_norm": "accuracy_norm"}  # lm-eval's name: ours


def run_lm_eval(python: str, model: Path, tasks: list[str], device: str, output: Path) -> dict:
    """lm-eval's results file, with each task's logged samples (in document order) added under `samples`."""
    command = [
        python,
        "-m",
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model},dtype=float32",
        "--include_path",
        str(TASKS.relative_to(REPO)),
        "--tasks",
        ",".join(tasks),
        "--device",
        device,
        "--batch_size",
        "1",
        "--output_path",
        str(output),
        "--log_samples",
    ]
    print("$", " ".join(command), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    subprocess.run(command, cwd=REPO, env=env, check=True)
    (results_file,) = output.rglob("results_*.json")
    results = json.loads(results_file.read_text(encoding="utf-8"))
    results["samples"] = {}
    for task in tasks:
        (samples_file,) = output.rglob(f"samples_{task}_*.jsonl")
        samples = [json.loads(line) for line in samples_file.read_text(encoding="utf-8").splitlines()]
        results["samples"][task] = sorted(samples, key=lambda sample: sample["doc_id"])
    return results


def longer_than_context(tokenizer, item: ChoiceItem, limit: int) -> bool:
    prompt = render_prompt(item.question)
    lengths = [len(tokenizer(prompt + option, add_special_tokens=False)["input_ids"]) for option in item.options]
    return max(lengths) > limit


def compare_choices(model, tokenizer, samples: list[dict], lm_eval_scores: dict, batch_size: int) -> dict:
    """Ours on lm-eval's documents: over all items at once, and item by item against lm-eval's
    (the documents that differ, by id). Items longer than the model's context are counted apart:
    there both score a window of the last context + 1 tokens."""
    items = [parse_choice_item(sample["doc"]) for sample in samples]
    ours = multiple_choice_accuracy(model, tokenizer, items, batch_size)
    differing = {theirs: {"fitting": [], "longer": []} for theirs in CHOICE_METRICS}
    longer_items = 0
    for item, sample in zip(items, samples):
        kind = "longer" if longer_than_context(tokenizer, item, context_length(model)) else "fitting"
        longer_items += kind == "longer"
        single = multiple_choice_accuracy(model, tokenizer, [item], batch_size)
        for theirs, our_name in CHOICE_METRICS.items():
            if single[our_name] != sample[theirs]:
                differing[theirs][kind].append(sample["doc_id"])
    return {
        "items": len(items),
        "longer_than_context": longer_items,
        "metrics": {
            theirs: {
                "lm_eval": round(lm_eval_scores[f"{theirs},none"], 4),
                "ours": ours[our_name],
                "items_differing": differing[theirs]["fitting"],
                "longer_items_differing": differing[theirs]["longer"],
            }
            for theirs, our_name in CHOICE_METRICS.items()
        },
    }


def compare_generation(model, tokenizer, samples: list[dict], lm_eval_scores: dict, max_new_tokens: int) -> dict:
    """`evaluate`'s greedy answers and scores on lm-eval's documents, against lm-eval's."""
    rows = [{key: value for key, value in sample["doc"].items() if value is not None} for sample in samples]
    scored = answer_and_score(model, tokenizer, rows, replace(GREEDY, max_new_tokens=max_new_tokens), batch_size=1)
    answers_differing = sum(
        answer.text != sample["filtered_resps"][0].strip() for answer, sample in zip(scored.answers, samples)
    )
    return {
        "items": len(rows),
        "answers_differing": answers_differing,
        "metrics": {
            name: {"lm_eval": lm_eval_scores[f"{name},none"], "ours": scored.summary[name]}
            for name in GENERATION_METRICS
        },
    }


def differs(comparison: dict) -> bool:
    """Whether lm-eval and ours disagree on any item or score."""
    if "answers_differing" in comparison:
        return comparison["answers_differing"] > 0 or any(
            metric["lm_eval"] != metric["ours"] for metric in comparison["metrics"].values()
        )
    return any(
        metric["items_differing"] or metric["longer_items_differing"] or metric["lm_eval"] != metric["ours"]
        for metric in comparison["metrics"].values()
    )


def table(comparisons: dict[str, dict]) -> list[str]:
    lines = [
        "| task | items | metric | lm-eval | ours | items differing |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for task, comparison in comparisons.items():
        for name, metric in comparison["metrics"].items():
            if "answers_differing" in comparison:
                differing = f"{comparison['answers_differing']} answers"
            else:
                differing = f"{len(metric['items_differing'])}"
                if comparison["longer_than_context"]:
                    differing += (
                        f" (and {len(metric['longer_items_differing'])} of the "
                        f"{comparison['longer_than_context']} longer than the context)"
                    )
            lines.append(
                f"| {task} | {comparison['items']} | {name} | {metric['lm_eval']} | {metric['ours']} | {differing} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", default=sys.executable, help="a Python that has lm_eval (default: this one)")
    parser.add_argument("--model", type=Path, default=paths.MODEL, help="model directory")
    parser.add_argument(
        "--tasks",
        default="minigpt_opcion_multiple,minigpt_generation",
        help="comma-separated tasks of lm_eval_tasks/ (minigpt_opcion_multiple_kit: the data kit's items)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="our multiple-choice scoring's")
    parser.add_argument("--out", type=Path, help="also write the comparison as JSON here")
    args = parser.parse_args()

    check = subprocess.run([args.python, "-c", "import lm_eval"], capture_output=True)
    if check.returncode != 0:
        sys.exit(
            f"{args.python} has no lm_eval: make an environment for it, e.g. python -m venv ~/lm-eval && "
            "~/lm-eval/bin/pip install torch==2.13.0 'lm-eval[hf]==0.4.*', and pass --python ~/lm-eval/bin/python"
        )
    tasks = args.tasks.split(",")
    with tempfile.TemporaryDirectory() as directory:
        results = run_lm_eval(args.python, args.model, tasks, args.device, Path(directory))

    model, tokenizer = load_model(args.model, args.device, dtype=SCORING_DTYPE)
    comparisons = {}
    for task in tasks:
        config, samples, scores = results["configs"][task], results["samples"][task], results["results"][task]
        if config["output_type"] == "multiple_choice":
            comparisons[task] = compare_choices(model, tokenizer, samples, scores, args.batch_size)
        else:
            max_new_tokens = config["generation_kwargs"]["max_gen_toks"]
            comparisons[task] = compare_generation(model, tokenizer, samples, scores, max_new_tokens)

    print("\n" + "\n".join(table(comparisons)))
    different = [task for task, comparison in comparisons.items() if differs(comparison)]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        versions = {"lm_eval": results["lm_eval_version"], "transformers": results["transformers_version"]}
        args.out.write_text(json.dumps({"versions": versions, "tasks": comparisons}, indent=2) + "\n", encoding="utf-8")
    if different:
        sys.exit(f"lm-eval and ours differ on: {', '.join(different)}")
    cut = any(metric.get("longer_items_differing") for c in comparisons.values() for metric in c["metrics"].values())
    print(
        "lm-eval and ours agree item for item"
        + (" on every item that fits the model's context (see above for the longer ones)" if cut else "")
    )


if __name__ == "__main__":
    main()
