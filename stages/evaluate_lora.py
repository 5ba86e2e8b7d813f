"""Stage `evaluate_lora`: base vs base + LoRA, with the same evaluation code, on the adapter's
categories (what it should improve), on the other categories (what it may forget) and on the
whole validation split -> metrics/lora.json."""

from __future__ import annotations

import json

from minigpt import paths
from minigpt.config import load_params
from minigpt.errors import run_main
from minigpt.evaluation import decodings, evaluate_rows, validation_rows
from minigpt.files import write_json
from minigpt.generation import SCORING_DTYPE, describe_device, load_model
from minigpt.lora import ADAPTER_WEIGHTS, adapter_categories, category_rows
from minigpt.metrics import compared_scores, relative_changes


def main() -> None:
    params = load_params()
    evaluate = params.evaluate
    greedy = {"greedy": decodings(evaluate)["greedy"]}  # base against adapter: the comparable decoding
    rows = validation_rows(paths.PROCESSED_DATA)
    categories = adapter_categories(paths.ADAPTER)  # what the adapter was trained on, from its own record
    domain = category_rows(rows, categories, "validation", every_category=False)
    # domain: what the adapter should improve; other: what it may forget; general: both.
    subsets = {"domain": domain, "other": [row for row in rows if row not in domain], "general": rows}
    subsets = {name: subset for name, subset in subsets.items() if subset}
    device = params.runtime.device
    models = {
        "base": load_model(paths.MODEL, device, dtype=SCORING_DTYPE),
        "lora": load_model(paths.MODEL, device, lora=paths.ADAPTER, dtype=SCORING_DTYPE),
    }
    result: dict = {}
    for subset, subset_rows in subsets.items():
        scores = {
            name: compared_scores(
                evaluate_rows(
                    model,
                    tokenizer,
                    subset_rows,
                    greedy,
                    evaluate.generate_examples,
                    params.runtime.inference_batch_size,
                    progress=f"evaluate_lora: {subset}, {name}",
                )[0]
            )
            for name, (model, tokenizer) in models.items()
        }
        result[subset] = {
            "examples": len(subset_rows),
            **scores,
            "relative_change": relative_changes(scores["base"], scores["lora"]),
        }
    training = json.loads(paths.LORA_TRAIN_METRICS.read_text(encoding="utf-8"))
    write_json(
        paths.LORA_METRICS,
        {
            "categories": categories,
            "trainable_share": training["trainable_share"],
            "adapter_mb": round((paths.ADAPTER / ADAPTER_WEIGHTS).stat().st_size / 1e6, 3),
            "train_seconds": training["train_seconds"],
            "device": describe_device(models["base"][0]),
            **result,
        },
    )
    print(
        "evaluate_lora: perplexity "
        + "; ".join(
            f"{name} {scores['base']['perplexity']} -> {scores['lora']['perplexity']}"
            for name, scores in result.items()
        )
    )


if __name__ == "__main__":
    run_main(main)
