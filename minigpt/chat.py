"""The chat: a Gradio app, in Spanish, that streams answers from the trained model (and from
the model with its LoRA adapter, when one exists).

Everything a browser or an API client sends is distrusted: settings are clamped to the ranges
of the sliders, messages have a length limit, generation a time limit, and the conversation
is cut to the model's context window (oldest turns first) instead of failing at it.
The prompt is the training template (`render_conversation`), decoding is `generation.stream`.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from minigpt.decoding import CHAT_SAMPLING, GREEDY, GenerationSettings
from minigpt.errors import MiniGPTError
from minigpt.generation import context_length, load_model, stream
from minigpt.gradio_glue import (
    chat_interface_keeping_placeholder,
    let_unknown_choices_through,
    reopen_after_failure,
    share_concurrency,
    show_user_text_literally,
    spanish_page_head,
    stop_then_clear,
)
from minigpt.lora import adapter_categories
from minigpt.template import is_valid_text, render_conversation, strip_request

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local chat reports nothing to anyone

ENTRADA_TITLE = "Entrada"  # the titled box that shows a message's Entrada in the conversation
ERROR_TITLE = "No se pudo responder"
# Marks an answer the model finished (not stopped by the user): only finished answers go back
# into the prompt, each closed by <|endoftext|> as in training. Not shown: the box needs a title.
FINISHED = {"status": "done"}
GENERATION_QUEUE = "minigpt-generation"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Control:
    label: str
    minimum: float
    maximum: float
    default: float
    step: float
    info: str


# The sliders and the server-side clamping read the same ranges.
CONTROLS: dict[str, Control] = {
    "temperature": Control(
        "Temperatura", 0.0, 2.0, CHAT_SAMPLING.temperature, 0.05, "0 = siempre la palabra más probable (sin azar)"
    ),
    "top_p": Control(
        "Top-p", 0.05, 1.0, CHAT_SAMPLING.top_p, 0.05, "muestrea solo entre las palabras que suman esta probabilidad"
    ),
    "top_k": Control(
        "Top-k", 0, 200, CHAT_SAMPLING.top_k, 1, "muestrea solo entre las k palabras más probables (0 = sin límite)"
    ),
    # 200: the reference project's answer length (capped at half the model's context, below)
    "max_new_tokens": Control("Máximo de tokens nuevos", 1, 512, 200, 1, "longitud máxima de la respuesta"),
    "repetition_penalty": Control(
        "Penalización por repetición",
        1.0,
        2.0,
        CHAT_SAMPLING.repetition_penalty,
        0.05,
        "1 = sin penalización; solo al muestrear (temperatura > 0)",
    ),
}

EXAMPLES = [
    "¿Qué es la fotosíntesis?",
    "Escribe una receta sencilla de tortilla de patatas.",
    "Explica qué es una variable en programación.",
    "Dame tres consejos para estudiar mejor.",
]


@dataclass(frozen=True)
class ChatLimits:
    max_input_chars: int = 2000  # per message and per "Entrada"
    max_seconds: float = 60.0  # wall-clock limit of one answer
    concurrency: int = 1  # answers generated at once; other users wait in the queue
    queue_size: int = 32  # users waiting beyond this are turned away


class ChatModels:
    """The models a user can choose from, by label, loaded once at start-up."""

    def __init__(
        self, model_dir: str | Path, lora_dir: str | Path | None = None, device: str = "cpu", weights: str | None = None
    ):
        base = load_model(model_dir, device, weights=weights)
        self.choices: dict[str, tuple] = {f"Base ({Path(model_dir).name})": base}
        # The adapter's own record of what it was trained on names it, whatever its folder is called.
        self.adapter_categories = adapter_categories(lora_dir) if lora_dir is not None else []
        if lora_dir is not None:
            name = ", ".join(self.adapter_categories) or Path(lora_dir).name
            self.choices[f"Base + LoRA ({name})"] = load_model(model_dir, device, lora=lora_dir, weights=weights)
        self.context = context_length(base[0])

    @property
    def labels(self) -> list[str]:
        return list(self.choices)


def spanish_list(words: list[str]) -> str:
    """ "a", "a y b", "a, b y c"."""
    return " y ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


def clamp(control: Control, value) -> float:
    """A control's value forced into its range; anything unusable becomes the default."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return control.default
    if not math.isfinite(number):
        return control.default
    return min(max(number, control.minimum), control.maximum)


def settings_from_controls(
    temperature, top_p, top_k, max_new_tokens, repetition_penalty, context: int, max_seconds: float
) -> GenerationSettings:
    """Generation settings from (untrusted) control values, within the ranges of the model's
    sliders. Temperature 0 is GREEDY, the evaluation's decoding, whatever the sampling sliders
    say. Unseeded: concurrent answers share torch's generator, so a seed would not hold."""
    controls = controls_for(context)
    temperature = clamp(controls["temperature"], temperature)
    length = int(clamp(controls["max_new_tokens"], max_new_tokens))
    if temperature == 0:
        return replace(GREEDY, max_new_tokens=length, seed=None, max_seconds=max_seconds)
    return GenerationSettings(
        max_new_tokens=length,
        do_sample=True,
        temperature=temperature,
        top_p=clamp(controls["top_p"], top_p),
        top_k=int(clamp(controls["top_k"], top_k)),
        repetition_penalty=clamp(controls["repetition_penalty"], repetition_penalty),
        seed=None,
        max_seconds=max_seconds,
    )


def controls_for(context: int) -> dict[str, Control]:
    """The controls for a model: an answer gets half its context at most."""
    longest = min(int(CONTROLS["max_new_tokens"].maximum), context // 2)
    answer = CONTROLS["max_new_tokens"]
    return CONTROLS | {"max_new_tokens": replace(answer, maximum=longest, default=min(answer.default, longest))}


def _text(content) -> str:
    """A chat message's text: Gradio gives a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


def _title(message: Mapping) -> str | None:
    return (message.get("metadata") or {}).get("title")


def history_turns(history: Sequence[Mapping]) -> list[list[dict]]:
    """Past exchanges as template messages: each user message with its Entrada (shown in the
    chat as a titled box) and the answer. Exchanges that were refused, got no answer, or whose
    answer the user stopped (not marked FINISHED) are left out: a stopped answer closed by
    <|endoftext|> would tell the model that it was complete."""
    exchanges: list[dict] = []
    for message in history or []:
        role, text = message.get("role"), _text(message.get("content"))
        if role == "user":
            exchanges.append({"instruction": text, "input": "", "answer": "", "failed": False, "finished": False})
        elif role == "assistant" and exchanges:
            title = _title(message)
            if title == ENTRADA_TITLE:
                exchanges[-1]["input"] = text
            elif title == ERROR_TITLE:
                exchanges[-1]["failed"] = True
            else:
                exchanges[-1]["answer"] += text
                exchanges[-1]["finished"] = (message.get("metadata") or {}).get("status") == FINISHED["status"]
    return [
        [
            {"role": "user", "content": e["instruction"], "input": e["input"]},
            {"role": "assistant", "content": e["answer"]},
        ]
        for e in exchanges
        if e["answer"].strip() and e["finished"] and not e["failed"]
    ]


def fit_prompt(tokenizer, history: Sequence[Mapping], message: str, entrada: str, budget: int) -> tuple[str, int, int]:
    """The prompt for `message` after as many of the latest turns as fit in `budget` tokens.

    Returns (prompt, its length in tokens, number of oldest turns dropped). The new message
    alone may still be over budget: the caller decides what to tell the user. Each turn is
    tokenized once: turns end with <|endoftext|>, a special token that tokenization never
    merges across, so the prompt's length is the sum of its parts'.
    """

    def length(messages: list[dict], add_generation_prompt: bool = False) -> int:
        text = render_conversation(messages, add_generation_prompt=add_generation_prompt)
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    turns = history_turns(history)
    request = [{"role": "user", "content": message, "input": entrada}]
    total, kept = length(request, add_generation_prompt=True), len(turns)
    for index in reversed(range(len(turns))):
        turn_length = length(turns[index])
        if total + turn_length > budget:
            break
        total, kept = total + turn_length, index
    prompt = render_conversation([m for turn in turns[kept:] for m in turn] + request, add_generation_prompt=True)
    return prompt, total, kept


class Refused(Exception):
    """A request the chat answers with an explanation (in Spanish) instead of a model answer."""


class Responder:
    """The chat function, `respond(message, history, controls...)`: yields the growing answer
    (with the Entrada shown above it), and the Entrada field's next value (emptied once sent).

    Problems are answered as a titled message, never raised: a raised error leaves Gradio's
    chat box disabled until the page is reloaded.
    """

    def __init__(self, models: ChatModels, limits: ChatLimits):
        self.models, self.limits = models, limits

    def _prepare(self, message: str, history, model_label, entrada: str, controls: tuple):
        if not is_valid_text(message, entrada):
            raise Refused("El mensaje o la entrada contienen caracteres que no son texto válido (UTF-8).")
        if not message:
            raise Refused("Escribe una instrucción.")
        if len(message) > self.limits.max_input_chars or len(entrada) > self.limits.max_input_chars:
            raise Refused(
                f"El mensaje y la entrada pueden tener hasta {self.limits.max_input_chars} caracteres cada uno."
            )
        if model_label not in self.models.choices:
            raise Refused(f"Modelo desconocido: elige uno de {', '.join(self.models.labels)}.")
        model, tokenizer = self.models.choices[model_label]
        context = self.models.context
        settings = settings_from_controls(*controls, context=context, max_seconds=self.limits.max_seconds)
        budget = context - settings.max_new_tokens
        prompt, length, dropped = fit_prompt(tokenizer, history, message, entrada, budget)
        if length > budget:
            raise Refused(
                f"El mensaje ocupa {length} tokens y el modelo solo admite {budget} antes de responder "
                f"(contexto de {context}, {settings.max_new_tokens} reservados para la respuesta). "
                "Acórtalo o reduce el máximo de tokens nuevos."
            )
        if dropped:
            forgotten = "el turno más antiguo" if dropped == 1 else f"los {dropped} turnos más antiguos"
            _warn(f"La conversación no cabe en el contexto del modelo: se ha olvidado {forgotten}.")
        return model, tokenizer, prompt, settings

    def respond(
        self, message, history, model_label, entrada, temperature, top_p, top_k, max_new_tokens, repetition_penalty
    ) -> Iterator[tuple]:
        from gradio import ChatMessage

        message, entrada = strip_request(_text(message), _text(entrada))
        controls = (temperature, top_p, top_k, max_new_tokens, repetition_penalty)
        try:
            model, tokenizer, prompt, settings = self._prepare(message, history, model_label, entrada, controls)
        except Refused as reason:  # the Entrada stays to retry, unless it cannot even be sent back
            yield ChatMessage(str(reason), metadata={"title": ERROR_TITLE}), entrada if is_valid_text(entrada) else ""
            return
        shown = [ChatMessage(entrada, metadata={"title": ENTRADA_TITLE})] if entrada else []
        answer, started = "", time.monotonic()
        try:
            for piece in stream(model, tokenizer, prompt, settings):
                answer += piece
                yield (shown + [ChatMessage(answer)] if shown else ChatMessage(answer)), ""
        except Exception as error:  # logged for whoever runs the server; the user gets a sentence
            logger.exception("generation failed")
            failure = ChatMessage(
                f"El modelo falló al generar ({type(error).__name__}). Inténtalo de nuevo.",
                metadata={"title": ERROR_TITLE},
            )
            yield shown + [ChatMessage(answer), failure], ""
            return
        finished = ChatMessage(answer, metadata=FINISHED)
        yield (shown + [finished] if shown else finished), ""
        if time.monotonic() - started >= self.limits.max_seconds:
            _warn(f"Respuesta cortada: se alcanzó el límite de {self.limits.max_seconds:g} segundos.")
        if not answer.strip():
            _warn("El modelo terminó sin escribir nada: prueba otra pregunta o sube la temperatura.")


def _warn(message: str) -> None:
    import gradio as gr

    gr.Warning(message, title="Aviso")


MESSAGE_PLACEHOLDER = "Escribe una instrucción…"
MESSAGE_BOX = "mensaje"  # the message box's element id


def build_app(models: ChatModels, limits: ChatLimits = ChatLimits()):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    with gr.Blocks(title="MiniGPT-ES") as app:
        gr.Markdown(
            "# MiniGPT-ES\nUn GPT pequeño entrenado desde cero con instrucciones en español. "
            "Sus respuestas pueden ser inexactas o inventadas: no las uses como fuente."
        )
        with gr.Sidebar(label="Ajustes", position="right"):
            model_label = let_unknown_choices_through(  # the Responder answers an unknown one in Spanish
                gr.Radio(
                    models.labels,
                    value=models.labels[0],
                    label="Modelo",
                    info=f"El adaptador LoRA especializa el modelo en {spanish_list(models.adapter_categories)}."
                    if models.adapter_categories
                    else None,
                )
            )
            entrada = gr.Textbox(
                "",
                label="Entrada (opcional)",
                lines=3,
                max_length=limits.max_input_chars,
                info="Texto sobre el que trabaja la instrucción; se envía con el próximo mensaje.",
            )
            sliders = [
                gr.Slider(c.minimum, c.maximum, value=c.default, step=c.step, label=c.label, info=c.info)
                for c in controls_for(models.context).values()
            ]
        responder = Responder(models, limits)
        chat = chat_interface_keeping_placeholder(MESSAGE_PLACEHOLDER)(
            responder.respond,  # a generator method: Gradio streams what it yields
            chatbot=show_user_text_literally(
                gr.Chatbot(
                    label="Conversación", height=480, placeholder="Escribe una instrucción en español para empezar."
                )
            ),
            textbox=gr.Textbox(
                placeholder=MESSAGE_PLACEHOLDER,
                max_length=limits.max_input_chars,
                elem_id=MESSAGE_BOX,
                submit_btn="Enviar",
                stop_btn="Detener",
            ),
            additional_inputs=[model_label, entrada, *sliders],
            additional_outputs=[entrada],
            examples=[[text] for text in EXAMPLES],
            run_examples_on_click=False,
            api_name="chat",
            concurrency_limit=limits.concurrency,
            fill_height=True,
        )
        gr.Button("Borrar conversación", variant="secondary").click(
            lambda: ([], [], ""),
            outputs=[chat.chatbot, chat.chatbot_state, entrada],
            js=stop_then_clear(MESSAGE_BOX),
            queue=False,
            api_visibility="private",
        )
        # --concurrency limits the answers being generated, from the page or the API alike.
        for fn in share_concurrency(app, {"_submit_fn", responder.respond.__name__}, GENERATION_QUEUE):
            if fn.name == "_submit_fn":  # a message sent, retried, or an example clicked
                reopen_after_failure(fn, chat.textbox, MESSAGE_PLACEHOLDER)
    return app


# Gradio's own texts (its toasts, buttons and connection messages; it ships Spanish for them)
# follow the browser's language: the page says Spanish whatever the browser does.
QUEUE_FULL = "Hay demasiadas personas esperando respuesta. Inténtalo de nuevo en unos minutos."
# Answers are rendered as Markdown, so an answer could hold an image (or HTML) from anywhere,
# which the browser would fetch by itself, telling that server who reads the chat. The page
# loads images and media from the chat's own server only; a link is still shown, and opens
# only when clicked.
NO_REMOTE_CONTENT = (
    "<meta http-equiv=\"Content-Security-Policy\" content=\"img-src 'self' data: blob:; media-src 'self' data: blob:\">"
)


def launch(
    models: ChatModels,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    limits: ChatLimits = ChatLimits(),
    block: bool = True,
):
    """Serve the app; returns (app, url). With `block`, until interrupted."""
    app = build_app(models, limits)
    app.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            share=share,
            show_error=False,
            prevent_thread_lock=True,
            quiet=True,
            footer_links=[],
            head=NO_REMOTE_CONTENT + spanish_page_head(QUEUE_FULL),
            max_file_size=0,  # the chat takes no files: Gradio's upload route refuses every byte
        )
    except OSError as error:
        raise MiniGPTError(f"cannot serve on {host}:{port} ({error}): choose another --port") from None
    print(f"MiniGPT-ES chat on {url} (Ctrl+C to stop)", flush=True)
    if block:
        try:
            app.block_thread()
        finally:
            app.close()
    return app, url
