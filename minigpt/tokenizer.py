"""The byte-level BPE tokenizer: training, saving in Hugging Face format, and efficiency.

Byte-level BPE never meets an unknown character (every byte has a token), so any text,
code or emoji round-trips exactly. Training text is rendered with the instruction template,
so its markers ("### Instrucción:") become a few tokens each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from tokenizers import ByteLevelBPETokenizer, Tokenizer, decoders, models, pre_tokenizers, trainers

from minigpt import template
from minigpt.config import Source
from minigpt.errors import MiniGPTError
from minigpt.files import atomic_directory, text_blocks
from minigpt.sources import ErrorPolicy, read_source

Encoder = Callable[[list[str]], list[int]]  # texts -> token count of each


def plain_text(instruction: str, input: str, output: str) -> str:
    """An example as plain text, without template markers (for fair efficiency comparisons)."""
    return "\n".join(part for part in (instruction, input, output) if part)


def training_text(instruction: str, input: str, output: str) -> str:
    """An example as the model sees it, minus the end-of-text marker: special tokens are
    added by id, so BPE must not learn merges for their spelling."""
    return template.render_prompt(instruction, input) + output


def read_documents(path: Path, render: Callable[[str, str, str], str]) -> list[str]:
    """Texts of a file: blank-line separated documents of a .txt, or `render`ed examples of
    a .jsonl in the project's format (checked like a `prepare` source)."""
    if path.suffix == ".jsonl":
        examples, _ = read_source(Source(kind="jsonl", path=str(path)), ErrorPolicy("fail"))
        return [render(example.instruction, example.input, example.output) for example in examples]
    if path.suffix != ".txt":
        raise MiniGPTError(f"{path}: unsupported corpus file (use .txt documents or .jsonl instructions)")
    documents = []
    for line, block, _ in text_blocks(path):
        try:
            documents.append(block.decode("utf-8").replace("\r\n", "\n").rstrip("\n"))
        except UnicodeDecodeError as error:
            line += block[: error.start].count(b"\n")
            raise MiniGPTError(f"{path}:{line}: invalid UTF-8 (byte {error.start} of the document)") from None
    return documents


def train_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(template.SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return tokenizer


def save_pretrained(tokenizer: Tokenizer, directory: str | Path, model_max_length: int) -> None:
    """Save as a Hugging Face tokenizer directory with the project's chat template (atomically)."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=template.EOS_TOKEN,
        bos_token=template.EOS_TOKEN,
        pad_token=template.PAD_TOKEN,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,  # decoding must return the exact text
        chat_template=template.chat_template(),
    )
    with atomic_directory(directory) as tmp:
        wrapped.save_pretrained(tmp)


def load_tokenizer(directory: str | Path):
    """The project's tokenizer from a stage output, with a clear message when it is missing."""
    from transformers import AutoTokenizer

    if not (Path(directory) / "tokenizer.json").is_file():
        raise MiniGPTError(f"no tokenizer in {directory}: run 'dvc repro tokenizer' first")
    return AutoTokenizer.from_pretrained(directory)


def load_encoder(path: str | Path) -> Encoder:
    """A token counter for a tokenizer directory: tokenizer.json, GPT-2-style vocab.json +
    merges.txt, or anything `AutoTokenizer` loads."""
    path = Path(path)
    if (path / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "vocab.json").is_file() and (path / "merges.txt").is_file():
        tokenizer = ByteLevelBPETokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
    elif path.is_dir():
        from transformers import AutoTokenizer

        hf = AutoTokenizer.from_pretrained(path)
        return lambda texts: [len(ids) for ids in hf(texts, add_special_tokens=False)["input_ids"]]
    else:
        raise MiniGPTError(f"reference tokenizer {path}: directory not found")
    return lambda texts: [len(encoding.ids) for encoding in tokenizer.encode_batch(texts, add_special_tokens=False)]


def efficiency(count_tokens: Encoder, texts: Sequence[str]) -> dict[str, float | int]:
    """Characters per token and tokens per whitespace-separated word over `texts`."""
    tokens = sum(count_tokens(list(texts)))
    chars = sum(len(text) for text in texts)
    words = sum(len(text.split()) for text in texts)
    return {
        "chars_per_token": round(chars / tokens, 4) if tokens else 0.0,
        "tokens_per_word": round(tokens / words, 4) if words else 0.0,
        "tokens": tokens,
        "chars": chars,
    }


def iter_training_texts(files: Iterable[Path]) -> Iterator[str]:
    """Training text of every file: examples in the instruction format, corpora as documents."""
    for path in files:
        yield from read_documents(path, training_text)
