"""The instruction format: the only place where it is spelled.

An example renders as

    ### Instrucción:
    {instruction}

    ### Entrada:          <- only when the example has an input
    {input}

    ### Respuesta:
    {output}<|endoftext|>

A conversation is its turns rendered one after another, which is exactly what packed
training rows look like. The Jinja chat template saved with the tokenizer is generated from
the same constants, so `tokenizer.apply_chat_template` yields byte for byte what
`render_prompt` / `render_example` yield (a test holds them together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)

INSTRUCTION_HEADER = "### Instrucción:\n"
INPUT_HEADER = "### Entrada:\n"
RESPONSE_HEADER = "### Respuesta:\n"
SECTION_BREAK = "\n\n"


def _render_request(instruction: str, input: str) -> str:
    text = INSTRUCTION_HEADER + instruction + SECTION_BREAK
    if input:
        text += INPUT_HEADER + input + SECTION_BREAK
    return text


# Invisible format characters that carry no meaning in a text, as `prepare` removes them from
# the training data. The zero-width joiner (U+200D) is kept: emoji sequences need it.
INVISIBLE = dict.fromkeys(
    map(ord, "\u00ad\u200b\u200e\u200f\u2060\ufeff\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
)


def strip_request(instruction: str, input: str = "") -> tuple[str, str]:
    """An instruction and its input as every entry point (chat, CLI) takes them: without
    invisible format characters, as in training, and without the whitespace around them.
    Each then refuses an empty instruction (a message of zero-width spaces is empty: there is
    nothing to answer) and text that is not valid Unicode (`is_valid_text`)."""
    return instruction.translate(INVISIBLE).strip(), input.translate(INVISIBLE).strip()


def is_valid_text(*texts: str) -> bool:
    """False for a lone surrogate: what a terminal's undecodable bytes or a JSON escape such as
    "\\ud800" become in Python, which no tokenizer or file can take."""
    try:
        for text in texts:
            text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def render_prompt(instruction: str, input: str = "") -> str:
    """The text the model sees before it answers (ends with the response header)."""
    return _render_request(instruction, input) + RESPONSE_HEADER


def render_example(instruction: str, input: str, output: str) -> str:
    """A whole training example: prompt, answer and end-of-text marker."""
    return render_prompt(instruction, input) + output + EOS_TOKEN


def render_conversation(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """Render chat messages ({"role": "user"|"assistant", "content", optional "input"}).

    Same semantics (and defaults) as `tokenizer.apply_chat_template`: user turns open a
    prompt, assistant turns close it with the answer and the end-of-text marker.
    """
    text = ""
    for message in messages:
        if message["role"] == "user":
            text += _render_request(message["content"], message.get("input") or "")
        elif message["role"] == "assistant":
            text += RESPONSE_HEADER + message["content"] + EOS_TOKEN
        else:
            raise ValueError(f"unsupported chat role {message['role']!r}: use 'user' or 'assistant'")
    if add_generation_prompt and messages and messages[-1]["role"] == "user":
        text += RESPONSE_HEADER
    return text


def render_row_prompt(row: Mapping) -> str:
    """The prompt of a data row: its `history` of earlier turns (if any), then its instruction
    and input, rendered exactly as the chat renders that conversation."""
    request = {"role": "user", "content": row["instruction"], "input": row.get("input") or ""}
    return render_conversation([*row.get("history", ()), request], add_generation_prompt=True)


def _jinja_literal(text: str) -> str:
    """Quote a Python string as a Jinja string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def chat_template() -> str:
    """The Jinja chat template for the tokenizer, built from the constants above."""
    instruction, entrada = _jinja_literal(INSTRUCTION_HEADER), _jinja_literal(INPUT_HEADER)
    response, brk = _jinja_literal(RESPONSE_HEADER), _jinja_literal(SECTION_BREAK)
    return (
        "{%- for message in messages -%}"
        "{%- if message['role'] == 'user' -%}"
        f"{{{{ {instruction} + message['content'] + {brk} }}}}"
        "{%- if message.get('input') -%}"
        f"{{{{ {entrada} + message['input'] + {brk} }}}}"
        "{%- endif -%}"
        "{%- elif message['role'] == 'assistant' -%}"
        f"{{{{ {response} + message['content'] + eos_token }}}}"
        "{%- else -%}"
        "{{ raise_exception('unsupported chat role ' ~ message['role'] ~ \": use 'user' or 'assistant'\") }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt and messages and messages[-1]['role'] == 'user' -%}"
        f"{{{{ {response} }}}}"
        "{%- endif -%}"
    )
