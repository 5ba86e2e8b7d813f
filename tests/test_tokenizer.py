"""The BPE tokenizer: Hugging Face format, chat template, lossless round trip, efficiency."""

from __future__ import annotations

import hashlib
import json

import pytest
from transformers import AutoTokenizer

from minigpt import template
from minigpt.errors import MiniGPTError
from minigpt.files import expand_files
from minigpt.tokenizer import (
    efficiency,
    iter_training_texts,
    load_encoder,
    plain_text,
    read_documents,
    save_pretrained,
    train_bpe,
)
from tests.helpers import CONVERSATIONS, REPO, SHARED_DATA, needs_shared_data, spanish_examples, uses_data_kit

ROUND_TRIP = [
    "¿Qué tal, niño? ¡Año nuevo en España! Pingüino, cigüeña, ÁRBOL, «comillas» y ñandú.",
    "def factorial(n):\n\tif n < 2:\n\t\treturn 1\n    return n * factorial(n - 1)  # recursión\n",
    "Emoji: 🎉🚀 👨\u200d👩\u200d👧 🇪🇸 ✔️ and 中文, Ελληνικά, עברית.",
    "  espacios   dobles  \n\n\n y saltos\r\n finales \x00 nulo",
    template.render_example("Di hola.", "entrada", "Hola.") + template.PAD_TOKEN,
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    data = tmp_path_factory.mktemp("corpus")
    examples = data / "train.jsonl"
    examples.write_text(
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in spanish_examples(200)), encoding="utf-8"
    )
    corpus = data / "texto.txt"
    corpus.write_text(
        "Primer documento del corpus.\nSegunda línea.\n\nSegundo documento: ¿qué tal?\n", encoding="utf-8"
    )
    tokenizer = train_bpe(iter_training_texts([examples, corpus]), vocab_size=600, min_frequency=2)
    directory = tmp_path_factory.mktemp("tokenizer") / "tokenizer"
    save_pretrained(tokenizer, directory, model_max_length=512)
    return directory


@pytest.fixture(scope="module")
def hf_tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_is_lossless(hf_tokenizer, text):
    ids = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert hf_tokenizer.decode(ids) == text


def test_special_tokens_are_single_tokens(hf_tokenizer):
    assert hf_tokenizer.eos_token == template.EOS_TOKEN and hf_tokenizer.pad_token == template.PAD_TOKEN
    assert hf_tokenizer.eos_token_id != hf_tokenizer.pad_token_id
    assert hf_tokenizer("Hola" + template.EOS_TOKEN)["input_ids"][-1] == hf_tokenizer.eos_token_id
    assert hf_tokenizer.model_max_length == 512


@pytest.mark.parametrize("messages", CONVERSATIONS)
def test_apply_chat_template_gives_the_training_format(hf_tokenizer, messages):
    rendered = hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == template.render_conversation(messages, add_generation_prompt=True)


def test_training_text_includes_rendered_examples_and_corpus_documents(tmp_path):
    examples = tmp_path / "train.jsonl"
    examples.write_text(json.dumps({"instruction": "I", "input": "", "output": "O"}) + "\n", encoding="utf-8")
    corpus = tmp_path / "a.txt"
    corpus.write_text("Uno.\r\n\r\nDos\ncon dos líneas.\n\n\n", encoding="utf-8")
    texts = list(iter_training_texts([examples, corpus]))
    assert texts == [template.render_prompt("I") + "O", "Uno.", "Dos\ncon dos líneas."]


def test_special_tokens_are_not_spelled_out_in_the_vocabulary(hf_tokenizer):
    pieces = [token for token in hf_tokenizer.get_vocab() if token not in template.SPECIAL_TOKENS]
    assert not [token for token in pieces if "endoftext" in token or "<|" in token or "|>" in token]


def test_bad_corpus_files_name_the_file_and_line(tmp_path):
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a"}\n', encoding="utf-8")
    with pytest.raises(MiniGPTError, match=rf"{broken}:2: missing field: 'output'"):
        read_documents(broken, plain_text)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Primera línea\n".encode() + "Año\n".encode("latin-1"))
    with pytest.raises(MiniGPTError, match=rf"{latin1}:2: invalid UTF-8"):
        read_documents(latin1, plain_text)


def test_efficiency_counts_characters_words_and_tokens():
    per_character = lambda texts: [len(text) for text in texts]  # noqa: E731 - a one-character "tokenizer"
    score = efficiency(per_character, ["hola mundo", "adiós"])
    assert score == {"chars_per_token": 1.0, "tokens_per_word": 5.0, "tokens": 15, "chars": 15}


def test_reference_tokenizers_load_from_vocab_and_merges(tmp_path, tokenizer_dir):
    from tokenizers import Tokenizer

    Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json")).model.save(str(tmp_path))  # vocab.json + merges.txt
    from_files, from_json = load_encoder(tmp_path), load_encoder(tokenizer_dir)
    texts = ["El concepto número 7 de la lista.", "Otra frase distinta."]
    assert from_files(texts) == from_json(texts)
    with pytest.raises(MiniGPTError, match="not found"):
        load_encoder(tmp_path / "missing")


def test_gpt2_is_bundled_and_compared_by_default(repo_params):
    """GPT-2's tokenizer ships with the project (never fetched) and the default params score it."""
    bundled = REPO / repo_params.tokenizer.reference_tokenizers["gpt2"]
    count = load_encoder(bundled)
    assert count(["Hello world"]) == [2]  # GPT-2's ids 15496, 995
    digests = {name: hashlib.sha256((bundled / name).read_bytes()).hexdigest() for name in ("vocab.json", "merges.txt")}
    readme = (bundled / "README.md").read_text(encoding="utf-8")
    assert all(digest in readme for digest in digests.values()) and "MIT" in readme


@uses_data_kit
@needs_shared_data
def test_the_bundled_gpt2_files_are_the_data_kits():
    kit = SHARED_DATA / "tokenizers" / "gpt2"
    for name in ("vocab.json", "merges.txt"):
        assert (REPO / "data" / "tokenizers" / "gpt2" / name).read_bytes() == (kit / name).read_bytes()


def test_corpus_files_must_exist_and_be_known_types(tmp_path):
    with pytest.raises(MiniGPTError, match="no file matches"):
        expand_files([str(tmp_path / "*.txt")])
    with pytest.raises(MiniGPTError, match="file not found"):
        expand_files([str(tmp_path / "missing.txt")])
    odd = tmp_path / "corpus.csv"
    odd.write_text("a,b", encoding="utf-8")
    with pytest.raises(MiniGPTError, match="unsupported corpus file"):
        read_documents(odd, plain_text)
