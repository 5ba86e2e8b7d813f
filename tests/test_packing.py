"""Packing layouts: document-masked rows train each example exactly as if it were alone."""

from __future__ import annotations

import pytest
import torch

from minigpt.config import LoopParams
from minigpt.errors import MiniGPTError
from minigpt.model import GPT, IGNORE_INDEX, GPTConfig, document_positions, to_hf
from minigpt.packing import pack
from minigpt.training import train_loop
from tests.helpers import LOOP, RUNTIME

CONFIG = GPTConfig(vocab_size=64, block_size=24, n_layer=2, n_head=2, n_embd=16)
ROW = CONFIG.block_size + 1
EOS, PAD = 0, 1


def sequence(length: int, seed: int, prompt: int = 0) -> tuple[list[int], list[bool]]:
    ids = torch.randint(2, CONFIG.vocab_size, (length - 1,), generator=torch.Generator().manual_seed(seed)).tolist()
    return ids + [EOS], [False] * prompt + [True] * (length - prompt)


SEQUENCES = [sequence(12, 0, prompt=4), sequence(7, 1, prompt=2), sequence(5, 2), sequence(9, 3, prompt=3)]


def model() -> GPT:
    torch.manual_seed(0)
    return GPT(CONFIG).eval()


def test_masked_rows_number_their_sequences_and_padding_is_zero():
    packed = pack(SEQUENCES, ROW, PAD, layout="masked")
    assert packed.stats["layout"] == "masked" and packed.stats["rows"] == 2
    for row in range(len(packed)):
        documents = packed.documents[row]
        lengths = torch.bincount(documents.long())
        assert (documents[documents > 0].diff() >= 0).all()  # sequences one after another, padding last
        assert (packed.tokens[row][documents == 0] == PAD).all() and lengths[0] == (packed.tokens[row] == PAD).sum()
        starts = torch.nonzero(documents.diff(prepend=torch.tensor([0], dtype=documents.dtype)) > 0).flatten()
        assert not packed.targets[row, starts].any()  # a sequence's first token is never predicted
        positions = document_positions(documents[None])[0]
        for number in documents.unique().tolist():  # each sequence (and the padding) counts from 0
            columns = (documents == number).nonzero().flatten()
            assert torch.equal(positions[columns], torch.arange(len(columns)))


def test_open_and_padded_layouts():
    open_rows = pack(SEQUENCES, ROW, PAD, layout="open")
    masked = pack(SEQUENCES, ROW, PAD, layout="masked")
    assert open_rows.documents is None and torch.equal(open_rows.tokens, masked.tokens)
    assert open_rows.stats["target_tokens"] > masked.stats["target_tokens"]  # open predicts each row's next start
    padded = pack(SEQUENCES, ROW, PAD, layout="padded")
    assert padded.documents is None and len(padded) == len(SEQUENCES)
    assert all(padded.tokens[row, : len(ids)].tolist() == ids for row, (ids, _) in enumerate(SEQUENCES))
    assert padded.stats["padding_fraction"] > open_rows.stats["padding_fraction"]
    with pytest.raises(MiniGPTError, match="unknown packing layout 'tight'"):
        pack(SEQUENCES, ROW, PAD, layout="tight")


def test_a_packed_example_gets_the_same_logits_as_alone():
    gpt = model()
    packed = pack(SEQUENCES, ROW, PAD, layout="masked")
    tokens, documents = packed.tokens[:, :-1], packed.documents[:, :-1]  # a row's inputs
    with torch.no_grad():
        logits, _ = gpt(tokens, documents=documents)
        open_logits, _ = gpt(tokens)
    compared = 0
    for row in range(len(packed)):
        for number in documents[row].unique().tolist():
            columns = (documents[row] == number).nonzero().flatten()
            if number == 0:
                continue
            with torch.no_grad():
                alone, _ = gpt(tokens[row, columns][None])
            torch.testing.assert_close(logits[row, columns], alone[0], atol=1e-5, rtol=1e-5)
            compared += 1
            if columns[0] > 0:  # after another example, open rows see it: other logits
                assert not torch.allclose(open_logits[row, columns], alone[0], atol=1e-3)
    assert compared == len(SEQUENCES)


def test_the_masked_loss_is_the_sum_of_each_example_alone():
    gpt = model()
    packed = pack(SEQUENCES, ROW, PAD, layout="masked")
    with torch.no_grad():
        _, packed_loss = gpt(**packed.batch(torch.arange(len(packed)), torch.device("cpu")), loss_reduction="sum")
        alone_loss = sum(
            gpt(
                torch.tensor([ids[:-1]]),
                torch.tensor([[token if target else IGNORE_INDEX for token, target in zip(ids[1:], targets[1:])]]),
                loss_reduction="sum",
            )[1]
            for ids, targets in SEQUENCES
        )
    torch.testing.assert_close(packed_loss, alone_loss, atol=1e-4, rtol=1e-5)


def test_one_document_per_row_is_the_plain_causal_model():
    gpt = model()
    idx = torch.randint(2, CONFIG.vocab_size, (3, CONFIG.block_size))
    with torch.no_grad():
        plain, _ = gpt(idx)
        single, _ = gpt(idx, documents=torch.ones_like(idx, dtype=torch.int16))
    torch.testing.assert_close(single, plain, atol=1e-6, rtol=1e-6)


def test_a_model_trained_on_masked_rows_exports_as_plain_gpt2(tmp_path):
    """Masking changes training only: the exported model is GPT-2 and generates as before."""
    rows = pack([sequence(5 + index % 15, index) for index in range(80)], ROW, PAD, layout="masked")
    params = LoopParams.model_validate(LOOP | {"batch_tokens": 4 * CONFIG.block_size, "epochs": 2.0})
    torch.manual_seed(0)
    result = train_loop(GPT(CONFIG), rows, rows, params, RUNTIME, tmp_path / "checkpoints", live_dir=None)
    trained = result.model.eval()
    hf_model = to_hf(trained, EOS, PAD).eval()
    prompt = torch.tensor([SEQUENCES[0][0][:6]])
    with torch.no_grad():
        torch.testing.assert_close(hf_model(prompt).logits, trained(prompt)[0], atol=1e-5, rtol=1e-5)
    generated = hf_model.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=PAD)
    expected = prompt
    for _ in range(5):  # greedy, one token at a time, by the lean model
        with torch.no_grad():
            expected = torch.cat([expected, trained(expected)[0][:, -1:].argmax(-1)], dim=1)
        if expected[0, -1] == EOS:
            break
    assert torch.equal(generated[0, : expected.shape[1]], expected[0])


def test_the_packing_param_is_validated():
    assert LoopParams.model_validate(LOOP).packing == "masked"
    with pytest.raises(ValueError, match="packing"):
        LoopParams.model_validate(LOOP | {"packing": "tight"})
