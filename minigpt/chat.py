"""The chat: a Gradio app, in Spanish, that streams answers from the trained model (and from
the model with its LoRA adapter, when one exists).

Everything a browser or an API client sends is distrusted: settings are clamped to the ranges
of the sliders, messages have a length limit, generation a time limit, and the conversation
is cut to the model's context window (oldest turns first) instead of failing at it.
The prompt is the training template (`render_conversation`), decoding is `generation.stream`.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from minigpt.errors import MiniGPTError
from minigpt.generation import GenerationSettings, context_length, load_model, stream
from minigpt.template import render_conversation

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local chat reports nothing to anyone

DEFAULT_LORA_DIR = Path("models/lora_ciencia_prog")


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
    "temperature": Control("Temperatura", 0.0, 2.0, 0.7, 0.05, "0 = siempre la palabra más probable (sin azar)"),
    "top_p": Control("Top-p", 0.05, 1.0, 0.9, 0.05, "muestrea solo entre las palabras que suman esta probabilidad"),
    "top_k": Control("Top-k", 0, 200, 50, 1, "muestrea solo entre las k palabras más probables (0 = sin límite)"),
    "max_new_tokens": Control("Máximo de tokens nuevos", 1, 512, 128, 1, "longitud máxima de la respuesta"),
    "repetition_penalty": Control("Penalización por repetición", 1.0, 2.0, 1.1, 0.05, "1 = sin penalización"),
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

    def __init__(self, model_dir: str | Path, lora_dir: str | Path | None = None, device: str = "cpu"):
        base = load_model(model_dir, device)
        self.choices: dict[str, tuple] = {f"Base ({Path(model_dir).name})": base}
        if lora_dir is not None:
            self.choices[f"Base + LoRA ({Path(lora_dir).name})"] = load_model(model_dir, device, lora=lora_dir)
        self.context = context_length(base[0])

    @property
    def labels(self) -> list[str]:
        return list(self.choices)


def clamp(name: str, value) -> float:
    """A control's value forced into its range; anything unusable becomes the default."""
    control = CONTROLS[name]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return control.default
    if not math.isfinite(number):
        return control.default
    return min(max(number, control.minimum), control.maximum)


def settings_from_controls(temperature, top_p, top_k, max_new_tokens, repetition_penalty, context: int,
                           max_seconds: float) -> GenerationSettings:
    """Generation settings from (untrusted) control values. Half the context at most goes to
    the answer, so that a question always fits."""
    temperature = clamp("temperature", temperature)
    return GenerationSettings(
        max_new_tokens=min(int(clamp("max_new_tokens", max_new_tokens)), context // 2),
        do_sample=temperature > 0, temperature=temperature if temperature > 0 else 1.0,
        top_p=clamp("top_p", top_p), top_k=int(clamp("top_k", top_k)),
        repetition_penalty=clamp("repetition_penalty", repetition_penalty),
        seed=random.randrange(2**31), max_seconds=max_seconds)


def _text(content) -> str:
    """A chat message's text: Gradio gives a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return ""


def history_turns(history: Sequence[Mapping]) -> list[list[dict]]:
    """Past messages grouped into turns (a user message and the answers that followed)."""
    turns: list[list[dict]] = []
    for message in history or []:
        role, text = message.get("role"), _text(message.get("content"))
        if role == "user":
            turns.append([{"role": "user", "content": text}])
        elif role == "assistant" and turns:
            turns[-1].append({"role": "assistant", "content": text})
    return turns


def fit_prompt(tokenizer, history: Sequence[Mapping], message: str, entrada: str, budget: int) -> tuple[str, int, int]:
    """The prompt for `message` after as many of the latest turns as fit in `budget` tokens.

    Returns (prompt, its length in tokens, number of oldest turns dropped). The new message
    alone may still be over budget: the caller decides what to tell the user.
    """
    turns = history_turns(history)
    request = [{"role": "user", "content": message, "input": entrada}]
    dropped = 0
    while True:
        prompt = render_conversation([m for turn in turns[dropped:] for m in turn] + request, add_generation_prompt=True)
        length = len(tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
        if length <= budget or dropped == len(turns):
            return prompt, length, dropped
        dropped += 1


class Responder:
    """The chat function, `respond(message, history, controls...)`: yields the growing answer."""

    def __init__(self, models: ChatModels, limits: ChatLimits):
        self.models, self.limits = models, limits

    def respond(self, message, history, model_label, entrada, temperature, top_p, top_k, max_new_tokens,
                 repetition_penalty) -> Iterator[str]:
        import gradio as gr

        message, entrada = _text(message).strip(), _text(entrada).strip()
        if not message:
            raise gr.Error("Escribe una instrucción.")
        if len(message) > self.limits.max_input_chars or len(entrada) > self.limits.max_input_chars:
            raise gr.Error(f"El mensaje y la entrada pueden tener hasta {self.limits.max_input_chars} caracteres cada uno.")
        if model_label not in self.models.choices:
            raise gr.Error(f"Modelo desconocido: elige uno de {', '.join(self.models.labels)}.")
        model, tokenizer = self.models.choices[model_label]
        context = self.models.context
        settings = settings_from_controls(temperature, top_p, top_k, max_new_tokens, repetition_penalty, context,
                                          self.limits.max_seconds)
        budget = context - settings.max_new_tokens
        prompt, length, dropped = fit_prompt(tokenizer, history, message, entrada, budget)
        if length > budget:
            raise gr.Error(f"El mensaje ocupa {length} tokens y el modelo solo admite {budget} antes de responder "
                           f"(contexto de {context}, {settings.max_new_tokens} reservados para la respuesta). "
                           "Acórtalo o reduce el máximo de tokens nuevos.")
        if dropped:
            gr.Warning(f"La conversación no cabe en el contexto del modelo: se han olvidado los {dropped} "
                       "turnos más antiguos.")
        answer, started = "", time.monotonic()
        for piece in stream(model, tokenizer, prompt, settings):
            answer += piece
            yield answer
        if time.monotonic() - started >= self.limits.max_seconds:
            gr.Warning(f"Respuesta cortada: se alcanzó el límite de {self.limits.max_seconds:g} segundos.")
        if not answer.strip():
            gr.Warning("El modelo terminó sin escribir nada: prueba otra pregunta o sube la temperatura.")


def build_app(models: ChatModels, limits: ChatLimits = ChatLimits()):
    """The Gradio Blocks app (not launched)."""
    import gradio as gr

    with gr.Blocks(title="MiniGPT-ES") as app:
        gr.Markdown("# MiniGPT-ES\nUn GPT pequeño entrenado desde cero con instrucciones en español. "
                    "Sus respuestas pueden ser inexactas o inventadas: no las uses como fuente.")
        with gr.Sidebar(label="Ajustes", position="right"):
            model_label = gr.Radio(models.labels, value=models.labels[0], label="Modelo",
                                   info="El adaptador LoRA especializa el modelo en ciencia y programación.")
            entrada = gr.Textbox("", label="Entrada (opcional)", lines=3, max_length=limits.max_input_chars,
                                 info="Texto sobre el que trabaja la instrucción; acompaña al próximo mensaje.")
            sliders = [gr.Slider(c.minimum, c.maximum, value=c.default, step=c.step, label=c.label, info=c.info)
                       for c in CONTROLS.values()]
        chat = gr.ChatInterface(
            Responder(models, limits).respond,  # a generator method: Gradio streams what it yields
            chatbot=gr.Chatbot(label="Conversación", height=480,
                               placeholder="Escribe una instrucción en español para empezar."),
            textbox=gr.Textbox(placeholder="Escribe una instrucción…", max_length=limits.max_input_chars, elem_id="mensaje",
                               submit_btn="Enviar", stop_btn="Detener"),
            additional_inputs=[model_label, entrada, *sliders],
            examples=[[text] for text in EXAMPLES], examples_label="Ejemplos", run_examples_on_click=False,
            api_name="chat", concurrency_limit=limits.concurrency, fill_height=True)
        gr.Button("Borrar conversación", variant="secondary").click(
            lambda: ([], []), outputs=[chat.chatbot, chat.chatbot_state], queue=False, api_visibility="private")
    return app


def launch(models: ChatModels, host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           limits: ChatLimits = ChatLimits(), block: bool = True):
    """Serve the app; returns (app, url). With `block`, until interrupted."""
    app = build_app(models, limits)
    app.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    try:
        _, url, _ = app.launch(server_name=host, server_port=port, share=share, show_error=False,
                               prevent_thread_lock=True, quiet=True, footer_links=[])
    except OSError as error:
        raise MiniGPTError(f"cannot serve on {host}:{port} ({error}): choose another --port") from None
    print(f"MiniGPT-ES chat on {url} (Ctrl+C to stop)", flush=True)
    if block:
        try:
            app.block_thread()
        finally:
            app.close()
    return app, url
