"""Stage `evaluate`: models/minigpt on the validation split -> metrics/eval.json, metrics/samples.jsonl, plots."""

from __future__ import annotations

import time

from minigpt import paths
from minigpt.config import load_params
from minigpt.errors import run_main
from minigpt.evaluation import decodings, evaluate_model, validation_rows
from minigpt.files import warn_if_untracked, write_json, write_jsonl
from minigpt.generation import SCORING_DTYPE, describe_device, load_model
from minigpt.plots import grouped_bars, histogram


def main() -> None:
    everything = load_params()
    params, runtime = everything.evaluate, everything.runtime
    warn_if_untracked(params.multiple_choice.values(), "evaluate", paths.EVAL_SETS)
    rows = validation_rows(paths.PROCESSED_DATA)
    model, tokenizer = load_model(paths.MODEL, runtime.device, dtype=SCORING_DTYPE)
    started = time.perf_counter()
    metrics, samples = evaluate_model(
        model,
        tokenizer,
        rows,
        params.multiple_choice,
        decodings(params),
        params.generate_examples,
        runtime.inference_batch_size,
        progress="evaluate",
    )
    seconds = time.perf_counter() - started
    metrics["seconds"] = round(seconds, 1)
    metrics["device"] = describe_device(model)
    write_json(paths.EVAL_METRICS, metrics)
    write_jsonl(paths.EVAL_SAMPLES, samples)
    answered = {name: scores for name, scores in metrics["categories"].items() if scores["answers"]}
    write_json(paths.EVAL_CATEGORIES, [{"category": name, **scores} for name, scores in answered.items()])
    grouped_bars(
        paths.EVAL_PLOTS["categories"],
        {name: {"ROUGE-L": scores["rougeL"], "coherence": scores["coherence"]} for name, scores in answered.items()},
        title="Scores per category (validation)",
        ylabel="score",
    )
    histogram(
        paths.EVAL_PLOTS["coherence"],
        [sample["coherence"] for sample in samples],
        title="Coherence of generated answers",
        xlabel="coherence score",
    )
    grouped_bars(
        paths.EVAL_PLOTS["errors"],
        {kind: {"answers": count} for kind, count in metrics["errors"].items()},
        title=f"Failure kinds in {len(samples)} answers",
        ylabel="answers",
        value_format="%d",
    )
    generation = metrics["generation"]
    print(
        f"evaluate: perplexity {metrics['perplexity']:.2f}, bits/byte {metrics['bits_per_byte']:.3f}, "
        f"BLEU {generation['bleu']:.2f}, chrF {generation['chrf']:.2f}, ROUGE-L {generation['rougeL']:.3f}, "
        f"coherence {generation['coherence']:.3f} in {seconds:.1f}s"
    )


if __name__ == "__main__":
    run_main(main)
