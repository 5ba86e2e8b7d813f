"""The encoder-vs-decoder study: matched sizes, BERT's masking, a probe that finds what is
there (and nothing that is not), and a whole tiny study."""

from __future__ import annotations

import pytest
import torch

from minigpt.architectures import (
    build_encoder,
    decoder_config,
    decoder_task,
    encoder_config,
    encoder_task,
    fit_probe,
    mask_tokens,
    pooled_features,
    run_study,
    unigram_scores,
)
from minigpt.config import ArchitecturesParams, RuntimeParams, load_params
from minigpt.findings import DECODER, ENCODER, chance_of_separation, conclusions, separated, summarize
from minigpt.model import GPT, IGNORE_INDEX, init_model
from minigpt.presets import load_preset
from tests.helpers import REPO


def study_params(default_params: dict, **overrides) -> ArchitecturesParams:
    return ArchitecturesParams.model_validate(default_params["compare_architectures"] | overrides)


@pytest.mark.parametrize("preset", [None, "seed"])
def test_encoder_and_decoder_have_matched_parameter_counts(preset):
    params = load_params(REPO / "params.yaml", overrides=load_preset(preset) if preset else None)
    study, vocab_size = params.compare_architectures, params.tokenizer.vocab_size
    config = encoder_config(study, vocab_size, pad_id=1)
    with torch.device("meta"):
        decoder = GPT(decoder_config(study, vocab_size)).num_parameters()
        encoder = build_encoder(config, seed=0).num_parameters()
    assert abs(encoder - decoder) / decoder < 1e-3
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (
        study.n_layer,
        study.n_embd,
        study.n_head,
    )
    assert config.intermediate_size < 4 * study.n_embd  # BERT's extra head and biases are paid for in the MLP


def test_masking_follows_bert(default_params):
    tokens = torch.randint(5, 100, (1000, 500))
    valid = torch.ones_like(tokens, dtype=torch.bool)
    valid[:, 400:] = False  # padding
    inputs, labels = mask_tokens(
        tokens, valid, mask_id=100, vocab_size=100, probability=0.15, generator=torch.Generator().manual_seed(0)
    )
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 400:].any() and (inputs[:, 400:] == tokens[:, 400:]).all()
    assert abs(chosen[:, :400].float().mean().item() - 0.15) < 0.005
    assert torch.equal(labels[chosen], tokens[chosen])
    as_mask = (inputs[chosen] == 100).float().mean().item()
    kept = (inputs[chosen] == tokens[chosen]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.01 and 0.09 < kept < 0.12  # 10 % kept, plus random draws of the same token
    again = mask_tokens(tokens, valid, 100, 100, 0.15, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], labels)
    scoring, scored = mask_tokens(tokens, valid, 100, 100, 0.15, torch.Generator().manual_seed(0), corrupt=False)
    assert torch.equal(scored, labels) and (scoring[scored != IGNORE_INDEX] == 100).all()  # same blanks, all [MASK]


def test_the_probe_finds_separable_classes_and_nothing_in_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(3, (600,), generator=generator)
    centres = torch.randn(3, 16, generator=generator) * 4
    features = centres[labels] + torch.randn(600, 16, generator=generator)
    probe = fit_probe(features[:400], labels[:400], classes=3)
    assert (probe.predict(features[400:]) == labels[400:]).float().mean() > 0.99
    noise = torch.randn(600, 16, generator=generator)
    probe = fit_probe(noise[:400], labels[:400], classes=3)
    majority = torch.bincount(labels[400:]).max().item() / 200
    assert (probe.predict(noise[400:]) == labels[400:]).float().mean() < majority + 0.1


def test_pooling_ignores_padding(default_params):
    params = study_params(default_params, n_layer=1, n_head=2, n_embd=32, block_size=32)
    short, long = [5, 6, 7], [5, 6, 7, 8, 9, 10, 11]
    for task in (
        decoder_task(init_model(decoder_config(params, 50), seed=0)),
        encoder_task(build_encoder(encoder_config(params, 50, pad_id=1), seed=0), pad_id=1, probability=0.15),
    ):
        alone = pooled_features(task, [short], pad_id=1)
        batched = pooled_features(task, [short, long], pad_id=1)
        torch.testing.assert_close(batched[:1], alone, atol=1e-5, rtol=1e-5)


def test_summaries_and_the_spread_rule():
    low, high, overlapping = summarize([1.0, 1.2, 1.1]), summarize([2.0, 2.1, 1.9]), summarize([1.15, 1.3, 1.25])
    assert low["mean"] == 1.1 and low["std"] == 0.1 and (low["min"], low["max"]) == (1.0, 1.2)
    assert separated(low, high) and not separated(low, overlapping)
    assert chance_of_separation(3) == 0.1 and chance_of_separation(5) == 2 / 252


def test_fewer_than_three_or_repeated_seeds_are_refused(default_params):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at least 3 items"):
        study_params(default_params, seeds=[0, 1])
    with pytest.raises(ValidationError, match="seeds must differ"):
        study_params(default_params, seeds=[0, 0, 1])


def test_the_unigram_floor_predicts_the_most_frequent_token():
    from minigpt.packing import PackedRows

    train = PackedRows(torch.tensor([[1, 1, 1, 2]]), torch.tensor([[True, True, True, True]]), {})
    validation = PackedRows(torch.tensor([[1, 2, 3, 0]]), torch.tensor([[True, True, True, False]]), {})
    scores = unigram_scores(train, validation, vocab_size=4)  # add-one counts 1, 4, 2, 1 of 8
    assert scores["token_accuracy"] == round(1 / 3, 4)
    assert scores["perplexity"] == pytest.approx((8 / 4 * 8 / 2 * 8 / 1) ** (1 / 3), rel=1e-3)


def test_a_tiny_study_runs_end_to_end(tiny_model_dir, default_params):
    from minigpt.tokenizer import load_tokenizer
    from tests.helpers import spanish_examples

    tokenizer = load_tokenizer(tiny_model_dir.parent / "tokenizer")
    rows = [row | {"category": "ciencia" if i % 2 else "historia"} for i, row in enumerate(spanish_examples(50))]
    params = study_params(
        default_params,
        n_layer=1,
        n_head=2,
        n_embd=32,
        block_size=64,  # room for a prompt beside the demo's 32-token answer
        steps=5,
        micro_batch_size=4,
        warmup_steps=1,
        seeds=[0, 1, 2],
        demo_examples=2,
    )
    metrics = run_study(params, RuntimeParams(log_every=1), tokenizer, rows[:40], rows[40:], log=lambda line: None)
    assert (
        [run["seed"] for run in metrics["runs"][DECODER]]
        == [0, 1, 2]
        == [run["seed"] for run in metrics["runs"][ENCODER]]
    )
    assert [step for step, _ in metrics["runs"][ENCODER][0]["curve"]] == [0, 1, 2, 3, 4]
    decoder, encoder = (metrics["summary"][name]["parameters"]["mean"] for name in (DECODER, ENCODER))
    assert abs(encoder - decoder) / decoder < 0.01
    assert set(metrics["comparisons"]) == {"tokens_per_second", "probe_accuracy"}
    assert set(metrics["training_moves_the_probe"]) == {DECODER, ENCODER} and metrics["chance_of_separation"] == 0.1
    assert metrics["probe"]["classes"] == ["ciencia", "historia"] and metrics["probe"]["majority_class_accuracy"] == 0.5
    assert len(metrics["demos"][DECODER]) == 2 and " ____" in metrics["demos"][ENCODER][0]["text"]
    text = " ".join(conclusions(metrics))
    assert "seed-to-seed spread" in text and "only the decoder can answer an instruction" in text
    assert "Confounds: BERT is post-LayerNorm" in text and "token frequencies alone give" in text
