"""Token shards: the corpus tokenized once into binary shards with an index, written resumably
under token budgets, refused when damaged or made by another tokenizer, and read back as
training windows through memory maps, alone or by two ranks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from minigpt import template
from minigpt.config import CorpusParams
from minigpt.corpus import ShardBuilder, normalize, validation_share
from minigpt.errors import MiniGPTError
from minigpt.model import GPT, IGNORE_INDEX, GPTConfig
from minigpt.packing import ShardWindows
from minigpt.shards import INDEX, ShardWriter, check_tokenizer, file_sha256, read_index
from minigpt.tokenizer import save_pretrained, train_bpe
from minigpt.training import train_loop
from tests.helpers import RUNTIME, loop_params, run_two_ranks, spanish_documents, write_documents

DOCUMENTS = spanish_documents(600)


def corpus(*sources: dict, **params) -> CorpusParams:
    return CorpusParams.model_validate({"sources": list(sources), "validation_fraction": 0.1, **params})


def build(tmp_path: Path, params: CorpusParams, tokenizer: Path, name: str = "shards") -> dict:
    builder = ShardBuilder(params, tokenizer, tmp_path / f"{name}.partial")
    builder.run()
    return builder.finish(tmp_path / name)


def stream(directory: Path, index: dict, split: str) -> np.ndarray:
    return np.concatenate(
        [np.fromfile(directory / shard["file"], dtype=index["dtype"]) for shard in index["splits"][split]["shards"]]
    )


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    return write_documents(tmp_path / "corpus" / "textos.txt", DOCUMENTS)


def test_shards_hold_every_document_and_its_end_and_the_index_says_what_they_hold(
    tmp_path, text_corpus, corpus_tokenizer
):
    index = build(tmp_path, corpus({"path": str(text_corpus)}, shard_tokens=2000), corpus_tokenizer)
    tokenizer = Tokenizer.from_file(str(corpus_tokenizer / "tokenizer.json"))
    eos = tokenizer.token_to_id(template.EOS_TOKEN)
    assert index["dtype"] == "uint16" and index["eos_token_id"] == eos
    assert index["tokenizer_sha256"] == file_sha256(corpus_tokenizer / "tokenizer.json")
    for split, held_out in (("train", False), ("validation", True)):
        tokens = stream(tmp_path / "shards", index, split)
        documents = [part for part in np.split(tokens, np.flatnonzero(tokens == eos) + 1) if len(part)]
        expected = [text for text in DOCUMENTS if (validation_share(normalize(text)) < 0.1) == held_out]
        assert [tokenizer.decode(part[:-1].tolist()) for part in documents] == expected  # whole, in order
        assert all(part[-1] == eos for part in documents)
        summary = index["splits"][split]
        assert summary["documents"] == len(expected) and summary["tokens"] == len(tokens)
        for shard in summary["shards"]:
            assert file_sha256(tmp_path / "shards" / shard["file"]) == shard["sha256"]
    shards = index["splits"]["train"]["shards"]
    assert len(shards) > 3 and all(shard["tokens"] >= 2000 for shard in shards[:-1])  # closed past 2,000
    (source,) = index["sources"]
    assert source["records"] == source["documents"] == len(DOCUMENTS) and not source["skipped"]
    assert json.loads((tmp_path / "shards" / INDEX).read_text()) == index
    assert not (tmp_path / "shards.partial").exists()


def test_each_split_closes_its_shards_past_their_size(tmp_path, text_corpus, corpus_tokenizer):
    index = build(
        tmp_path, corpus({"path": str(text_corpus)}, shard_tokens=500, validation_fraction=0.5), corpus_tokenizer
    )
    longest = max(
        shard["tokens"] / shard["documents"] for split in index["splits"].values() for shard in split["shards"]
    )
    for split in ("train", "validation"):
        shards = index["splits"][split]["shards"]
        assert len(shards) > 5 and all(shard["tokens"] < 500 + 4 * longest for shard in shards), split
    assert all(shard["tokens"] >= 500 for shard in index["splits"]["train"]["shards"][:-1])


def test_a_document_that_spells_the_end_marker_is_still_one_document(tmp_path, corpus_tokenizer):
    path = write_documents(tmp_path / "raro.txt", [f"Texto con {template.EOS_TOKEN} dentro.", *DOCUMENTS[:50]])
    index = build(tmp_path, corpus({"path": str(path)}, validation_fraction=0.05), corpus_tokenizer)
    assert sum(index["splits"][split]["documents"] for split in ("train", "validation")) == 51
    eos = index["eos_token_id"]
    assert sum(int((stream(tmp_path / "shards", index, split) == eos).sum()) for split in ("train", "validation")) == 51


def test_budgets_stop_reading_a_source_then_the_corpus(tmp_path, corpus_tokenizer):
    first = write_documents(tmp_path / "uno.txt", DOCUMENTS[:300])
    second = write_documents(tmp_path / "dos.txt", DOCUMENTS[300:])
    index = build(
        tmp_path,
        corpus({"path": str(first), "max_tokens": 1500}, {"path": str(second)}, max_tokens=4000),
        corpus_tokenizer,
    )
    one, two = index["sources"]
    assert one["budget_reached"] and 1500 <= one["tokens"] < 1600 and one["records"] < 300
    assert index["budget_reached"] and 4000 <= one["tokens"] + two["tokens"] < 4100 and two["records"] < 300
    total = sum(index["splits"][split]["tokens"] for split in ("train", "validation"))
    assert total == one["tokens"] + two["tokens"]


def test_a_budget_beyond_the_corpus_says_so_and_records_the_real_count(tmp_path, text_corpus, corpus_tokenizer, capsys):
    index = build(
        tmp_path, corpus({"path": str(text_corpus), "max_tokens": 10**9}, max_tokens=10**10), corpus_tokenizer
    )
    printed = capsys.readouterr().out
    (source,) = index["sources"]
    assert not index["budget_reached"] and not source["budget_reached"] and source["records"] == len(DOCUMENTS)
    assert f"the sources hold {source['tokens']:,}" in printed and f"holds {source['tokens']:,} tokens" in printed


def test_an_empty_corpus_or_split_is_an_error_saying_why(tmp_path, text_corpus, corpus_tokenizer):
    with pytest.raises(MiniGPTError, match=r"the corpus holds no document .*skipped \{'too short': 600\}"):
        build(tmp_path, corpus({"path": str(text_corpus)}, min_chars=10**6), corpus_tokenizer)
    few = write_documents(tmp_path / "pocos.txt", DOCUMENTS[:3])
    with pytest.raises(MiniGPTError, match="none of the 3 documents fell in the validation split.*raise it"):
        build(tmp_path, corpus({"path": str(few)}, validation_fraction=0.001), corpus_tokenizer)


def test_a_source_that_keeps_nothing_is_named(tmp_path, text_corpus, corpus_tokenizer, capsys):
    junk = tmp_path / "basura.jsonl"
    junk.write_text('{"texto": "no text column"}\n', encoding="utf-8")
    index = build(tmp_path, corpus({"path": str(text_corpus)}, {"path": str(junk)}), corpus_tokenizer)
    assert index["sources"][1]["skipped"] == {"not text": 1}
    assert "corpus source" in capsys.readouterr().err and str(junk) in index["sources"][1]["label"]


def test_an_interrupted_run_resumes_after_its_last_closed_shard_and_ends_the_same(
    tmp_path, text_corpus, corpus_tokenizer, monkeypatch, capsys
):
    params = corpus({"path": str(text_corpus)}, shard_tokens=1500)
    reference = build(tmp_path, params, corpus_tokenizer, name="reference")

    closed, real_close = [], ShardWriter.close

    def close_then_die(writer):
        real_close(writer)
        closed.append(writer.split)
        if closed.count("train") == 3 and writer.split == "validation":
            raise KeyboardInterrupt  # killed right after a progress point... or before it was saved

    monkeypatch.setattr(ShardWriter, "close", close_then_die)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, params, corpus_tokenizer)
    monkeypatch.setattr(ShardWriter, "close", real_close)
    assert (tmp_path / "shards.partial" / "train-00002.bin").is_file() and not (tmp_path / "shards").exists()

    index = build(tmp_path, params, corpus_tokenizer)
    assert "resuming after 4 closed shards" in capsys.readouterr().out  # two of each split; the third redone
    assert index == reference
    for shard in index["splits"]["train"]["shards"] + index["splits"]["validation"]["shards"]:
        assert (tmp_path / "shards" / shard["file"]).read_bytes() == (
            tmp_path / "reference" / shard["file"]
        ).read_bytes()
    monkeypatch.setattr(ShardWriter, "close", close_then_die)
    closed.clear()
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path, params, corpus_tokenizer, name="again")
    monkeypatch.setattr(ShardWriter, "close", real_close)
    write_documents(text_corpus, DOCUMENTS + ["Un documento más, añadido después."])  # other inputs: no resuming
    build(tmp_path, params, corpus_tokenizer, name="again")
    assert "holds shards of other params, inputs or tokenizer: starting afresh" in capsys.readouterr().out


def test_shards_of_another_tokenizer_or_damaged_ones_are_refused(tmp_path, text_corpus, corpus_tokenizer):
    index = build(tmp_path, corpus({"path": str(text_corpus)}), corpus_tokenizer)
    check_tokenizer(index, corpus_tokenizer, tmp_path / "shards")
    other = tmp_path / "other-tokenizer"
    retrained = train_bpe(spanish_documents(300), vocab_size=520, min_frequency=2)  # other merges, other ids
    save_pretrained(retrained, other, model_max_length=256)
    with pytest.raises(MiniGPTError, match="was written by another tokenizer.*dvc repro corpus"):
        check_tokenizer(index, other, tmp_path / "shards")
    shard = tmp_path / "shards" / index["splits"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[10] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(MiniGPTError, match=f"{shard} is damaged"):
        ShardWindows(tmp_path / "shards", index, "train", 33, "masked")
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(MiniGPTError, match=f"{shard} is damaged"):
        ShardWindows(tmp_path / "shards", index, "train", 33, "masked")
    shard.unlink()
    with pytest.raises(MiniGPTError, match=f"{shard} is missing"):
        ShardWindows(tmp_path / "shards", index, "train", 33, "masked")
    (tmp_path / "shards" / INDEX).write_text("{")
    with pytest.raises(MiniGPTError, match="is damaged"):
        read_index(tmp_path / "shards")
    with pytest.raises(MiniGPTError, match="not found: run 'dvc repro corpus'"):
        read_index(tmp_path / "nowhere")


@pytest.fixture
def shards(tmp_path, text_corpus, corpus_tokenizer) -> tuple[Path, dict]:
    return tmp_path / "shards", build(tmp_path, corpus({"path": str(text_corpus)}, shard_tokens=700), corpus_tokenizer)


def test_windows_tile_each_split_across_its_shards(shards):
    directory, index = shards
    tokens = stream(directory, index, "train")
    windows = ShardWindows(directory, index, "train", 33, "open")
    assert len(windows) == (len(tokens) - 1) // 32 and windows.stats["shards"] > 5
    rows = windows.rows(torch.arange(len(windows)))
    for row, values in enumerate(rows):
        assert np.array_equal(values, tokens[row * 32 : row * 32 + 33])  # the last token is the next row's first
    with pytest.raises(MiniGPTError, match="fewer than one row"):
        ShardWindows(directory, index, "validation", index["splits"]["validation"]["tokens"] + 1, "open")


def test_masked_windows_start_each_document_afresh(shards):
    directory, index = shards
    eos = index["eos_token_id"]
    windows = ShardWindows(directory, index, "train", 33, "masked")
    indices = torch.arange(len(windows))
    batch = windows.batch(indices, torch.device("cpu"))
    tokens = torch.from_numpy(windows.rows(indices))
    for row in range(len(indices)):
        inputs, documents, targets = tokens[row, :-1], batch["documents"][row], batch["targets"][row]
        for column in range(32):
            ended = bool(inputs[:column].eq(eos).sum()) if column else False
            assert documents[column] == int(inputs[:column].eq(eos).sum())  # a new document after each end
            expected = IGNORE_INDEX if inputs[column] == eos else tokens[row, column + 1]
            assert targets[column] == expected, (row, column, ended)
    assert int(windows.count_targets(indices)) == int((batch["targets"] != IGNORE_INDEX).sum())
    opened = ShardWindows(directory, index, "train", 33, "open").batch(indices, torch.device("cpu"))
    assert opened["documents"] is None and torch.equal(opened["targets"], tokens[:, 1:])


def test_training_from_windows_is_training_from_the_same_rows_in_memory(shards, tmp_path):
    directory, index = shards
    windows = ShardWindows(directory, index, "train", 33, "masked")
    in_memory = windows.in_memory(torch.arange(len(windows)))
    config = GPTConfig(vocab_size=500, block_size=32, n_layer=1, n_head=2, n_embd=16)
    params = loop_params(batch_tokens=256, micro_batch_size=4, epochs=0.2)
    results = []
    for rows, name in ((windows, "windows"), (in_memory, "memory")):
        torch.manual_seed(0)
        results.append(train_loop(GPT(config), rows, rows, params, RUNTIME, tmp_path / name, None))
    assert results[0].steps == results[1].steps > 4
    for (name, tensor), other in zip(results[0].model.state_dict().items(), results[1].model.state_dict().values()):
        torch.testing.assert_close(tensor, other, rtol=0, atol=0, msg=name)


def test_a_token_budget_sets_the_steps(shards, tmp_path):
    directory, index = shards
    windows = ShardWindows(directory, index, "train", 33, "open")
    config = GPTConfig(vocab_size=500, block_size=32, n_layer=1, n_head=2, n_embd=16)
    result = train_loop(
        GPT(config), windows, windows, loop_params(train_tokens=1000, epochs=50.0), RUNTIME, tmp_path / "c", None
    )
    assert result.steps == 8 and result.summary["tokens"] == 8 * 128  # ceil(1000 / 128), whatever the epochs


@pytest.mark.slow
def test_two_ranks_train_on_their_own_windows_and_agree(shards, tmp_path):
    directory, _ = shards
    out = tmp_path / "ranks"
    out.mkdir()
    result = run_two_ranks(out, str(directory))
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((out / f"rank-{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0]["checksum"] == ranks[1]["checksum"]
    calls = list(zip(ranks[0]["rows"], ranks[1]["rows"]))
    assert len(calls) == len(ranks[1]["rows"]) > 4
    for first, second in calls:  # each micro-batch of a step splits between the ranks: no row read twice
        assert len(first) == len(second) == 2 and not set(first) & set(second)
