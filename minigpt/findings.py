"""The encoder-vs-decoder study's numbers in words: summaries over seeds, when a difference is
larger than the seed-to-seed spread, and the conclusions the report prints. Plain Python, so
the report words them without loading torch.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

ENCODER, DECODER = "encoder", "decoder"
# Compared between the architectures against the seed spread; the token scores are each on
# their own task and are reported per architecture.
COMPARED = ("tokens_per_second", "probe_accuracy")
PER_TASK = ("token_accuracy", "perplexity")
CONFOUNDS = (
    "BERT is post-LayerNorm with exact GELU, GPT pre-LayerNorm with tanh GELU; both share one learning "
    "rate and warmup; the encoder runs Hugging Face's implementation, the decoder the project's lean module."
)


def summarize(values: Sequence[float]) -> dict:
    """Mean, sample standard deviation and range over seeds."""
    return {
        "mean": round(statistics.fmean(values), 4),
        "std": round(statistics.stdev(values), 4),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def separated(first: dict, second: dict) -> bool:
    """Whether two summaries' seed ranges do not overlap: a difference larger than the
    seed-to-seed spread."""
    return first["max"] < second["min"] or second["max"] < first["min"]


def chance_of_separation(seeds: int) -> float:
    """How often n runs of each of two identical architectures have ranges that do not
    overlap by chance: 2 of the C(2n, n) equally likely orderings."""
    return 2 / math.comb(2 * seeds, seeds)


def format_stats(stats: dict) -> str:
    digits = 0 if abs(stats["mean"]) >= 100 else 3
    return f"{stats['mean']:,.{digits}f} ± {stats['std']:,.{digits}f}"


def conclusions(metrics: dict) -> list[str]:
    """The study's findings in plain words, each backed by its numbers and worded by them."""
    summary, comparisons, probe, unigram = (
        metrics["summary"],
        metrics["comparisons"],
        metrics["probe"],
        metrics["unigram"],
    )
    decoder, encoder = summary[DECODER], summary[ENCODER]
    seeds, chance = len(metrics["budget"]["seeds"]), metrics["chance_of_separation"]

    def spread(beyond: bool) -> str:
        return (
            f"larger than the seed-to-seed spread (the {seeds} seeds' ranges do not overlap, which identical "
            f"architectures would show {chance:.0%} of the time)"
            if beyond
            else f"within the seed-to-seed spread (the {seeds} seeds' ranges overlap): not a finding"
        )

    def value(name: str, metric: str) -> str:
        return format_stats(summary[name][metric])

    lines = [
        f"Size: decoder {decoder['parameters']['mean']:,.0f} and "
        f"encoder {encoder['parameters']['mean']:,.0f} parameters "
        f"(the encoder's MLP is {metrics['shape']['encoder_intermediate_size']} wide instead of "
        f"{metrics['shape']['decoder_intermediate_size']} to match).",
        f"Training speed ({metrics['device']}): the decoder processes "
        f"{comparisons['tokens_per_second']['decoder_over_encoder']:.2f}× the encoder's tokens per second "
        f"({value(DECODER, 'tokens_per_second')} vs {value(ENCODER, 'tokens_per_second')}); "
        f"{spread(comparisons['tokens_per_second']['beyond_seed_spread'])}.",
        f"Features: a linear probe predicts an example's category from mean-pooled states with accuracy "
        f"{value(ENCODER, 'probe_accuracy')} on the encoder and {value(DECODER, 'probe_accuracy')} on the decoder "
        f"(majority class {probe['majority_class_accuracy']:.3f}); the difference is "
        f"{spread(comparisons['probe_accuracy']['beyond_seed_spread'])}.",
    ]
    untouched = [name for name, moved in metrics["training_moves_the_probe"].items() if not moved]
    lines.append(
        f"Untrained networks give the probe {value(ENCODER, 'untrained_probe_accuracy')} (encoder) and "
        f"{value(DECODER, 'untrained_probe_accuracy')} (decoder): "
        + (
            f"for the {' and the '.join(untouched)}, training moves it by no more than the seed spread, so at this "
            "budget the probe reads which words a prompt contains, not what the network learnt."
            if untouched
            else "training moves both beyond the seed spread."
        )
    )
    learnt = {name: summary[name]["perplexity"]["max"] < unigram["perplexity"] for name in (ENCODER, DECODER)}
    lines.append(
        f"Own tasks: the encoder recovers {value(ENCODER, 'token_accuracy')} of masked tokens (perplexity "
        f"{value(ENCODER, 'perplexity')}), the decoder predicts {value(DECODER, 'token_accuracy')} of next tokens "
        f"(perplexity {value(DECODER, 'perplexity')}); token frequencies alone give {unigram['token_accuracy']:.3f} "
        f"(perplexity {unigram['perplexity']:,.0f}). "
        + (
            "Both beat the frequency model's perplexity in every seed."
            if all(learnt.values())
            else " ".join(
                f"The {name} {'beats' if below else 'does not beat'} the frequency model's perplexity in every seed."
                for name, below in learnt.items()
            )
        )
        + f" Not one scale: a blank is predicted from both sides, a next token from its past only, and the encoder "
        f"learns from the {metrics['mask_probability']:.0%} of tokens it masks while the decoder learns from every "
        f"token ({1 / metrics['mask_probability']:.1f}× the training signal from the same tokens)."
    )
    fills = metrics["demos"][ENCODER]
    hits = sum(fill["answer"] in fill["guesses"] for fill in fills)
    lines += [
        f"Use: only the decoder can answer an instruction, left to right (its answers are below, as good as "
        f"{metrics['budget']['tokens']:,} tokens of training make them); the encoder can only fill blanks in text "
        f"it is given, and had the right word among its top 3 guesses in {hits} of {len(fills)} examples.",
        f"Confounds: {CONFOUNDS}",
    ]
    return lines
