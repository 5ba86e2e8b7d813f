"""The chat: its controls and context handling as functions, the app through gradio_client,
and the page in a real headless browser."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # the app is local; never route it through a proxy

import gradio as gr  # noqa: E402

from minigpt.chat import CONTROLS, ChatLimits, ChatModels, Responder, clamp, fit_prompt, history_turns, launch, \
    settings_from_controls  # noqa: E402
from minigpt.generation import GenerationSettings, generate, stream  # noqa: E402
from minigpt.template import RESPONSE_HEADER, render_conversation, render_prompt  # noqa: E402

LIMITS = ChatLimits(max_input_chars=300, max_seconds=30.0, concurrency=1)
GREEDY = dict(temperature=0, top_p=1.0, top_k=0, max_new_tokens=16, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> ChatModels:
    from minigpt.lora import add_adapters, save_adapter
    from minigpt.model import from_hf
    from tests.test_lora import LORA

    adapter_dir = tmp_path_factory.mktemp("chat") / "lora_test"
    _, tokenizer = ChatModels(tiny_model_dir).choices[f"Base ({tiny_model_dir.name})"]
    save_adapter(add_adapters(from_hf(tiny_model_dir), LORA, seed=0), adapter_dir, LORA, tiny_model_dir, tokenizer)
    return ChatModels(tiny_model_dir, adapter_dir)


def answer(models: ChatModels, message: str, history=(), label: str | None = None, entrada: str = "", **controls):
    """Every partial answer the chat function yields."""
    values = GREEDY | controls
    return list(Responder(models, LIMITS).respond(message, list(history), label or models.labels[0], entrada,
                                                  *(values[name] for name in CONTROLS)))


def test_controls_are_clamped_to_the_slider_ranges():
    assert clamp("temperature", 9) == 2.0 and clamp("top_k", -5) == 0 and clamp("repetition_penalty", 0.1) == 1.0
    assert clamp("top_p", "mucho") == CONTROLS["top_p"].default
    assert clamp("max_new_tokens", float("nan")) == clamp("max_new_tokens", None) == CONTROLS["max_new_tokens"].default
    greedy = settings_from_controls(0, 0.5, 10, 10**9, 1.2, context=64, max_seconds=5)
    assert not greedy.do_sample and greedy.max_new_tokens == 32 and greedy.max_seconds == 5  # half the context at most
    sampled = settings_from_controls(0.8, 0.5, 10.7, 20, 1.2, context=64, max_seconds=5)
    assert sampled.do_sample and sampled.temperature == 0.8 and sampled.top_k == 10 and sampled.max_new_tokens == 20


def test_history_turns_read_strings_and_content_parts():
    history = [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": [{"type": "text", "text": "¿Qué tal?"}]},
               {"role": "user", "content": "Bien"}, {"role": "assistant", "content": "Me alegro"}]
    assert history_turns(history) == [
        [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": "¿Qué tal?"}],
        [{"role": "user", "content": "Bien"}, {"role": "assistant", "content": "Me alegro"}]]
    assert history_turns([{"role": "assistant", "content": "suelto"}]) == []


def test_the_oldest_turns_are_dropped_to_fit_the_context(models):
    _, tokenizer = models.choices[models.labels[0]]
    history = []
    for i in range(8):
        history += [{"role": "user", "content": f"Explica el concepto número {i}."},
                    {"role": "assistant", "content": f"El concepto número {i} es una idea de la escuela."}]
    prompt, length, dropped = fit_prompt(tokenizer, history, "¿Y el siguiente?", "una entrada", budget=150)
    assert 0 < dropped < 7 and length <= 150
    assert length == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    kept = [m for turn in history_turns(history)[dropped:] for m in turn]
    assert prompt == render_conversation(kept + [{"role": "user", "content": "¿Y el siguiente?", "input": "una entrada"}],
                                         add_generation_prompt=True)
    assert "número 7" in prompt and "número 0" not in prompt and prompt.endswith(RESPONSE_HEADER)
    assert fit_prompt(tokenizer, [], "Hola", "", budget=60)[::2] == (render_prompt("Hola"), 0)


def test_the_answer_streams_and_equals_the_evaluation_decoding(models):
    partials = answer(models, "¿Qué es la luz?", entrada="Sol.")
    assert len(partials) > 1 and all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))
    model, tokenizer = models.choices[models.labels[0]]
    expected = generate(model, tokenizer, [render_prompt("¿Qué es la luz?", "Sol.")],
                        GenerationSettings(max_new_tokens=16))[0].text
    assert partials[-1].strip() == expected


def test_the_lora_choice_answers_with_the_adapter(models):
    assert models.labels == ["Base (model)", "Base + LoRA (lora_test)"]
    assert answer(models, "¿Qué es la luz?", label=models.labels[1])[-1]


def test_a_long_conversation_never_fails_at_the_context_limit(models):
    history = []
    with pytest.warns(UserWarning, match="se han olvidado los .* turnos más antiguos"):  # shown to the user
        for turn in range(12):  # far beyond the tiny model's 64-token context
            reply = answer(models, f"Explica el concepto número {turn}.", history, max_new_tokens=16)[-1]
            history += [{"role": "user", "content": f"Explica el concepto número {turn}."},
                        {"role": "assistant", "content": reply}]
    assert len(history) == 24


@pytest.mark.parametrize("message, entrada, label, error", [
    ("   ", "", None, "Escribe una instrucción"),
    ("x" * 301, "", None, "hasta 300 caracteres"),
    ("Resume", "y" * 301, None, "hasta 300 caracteres"),
    ("Hola", "", "GPT-5", "Modelo desconocido"),
    ("palabra " * 35, "", None, "Acórtalo o reduce el máximo de tokens nuevos"),  # fits the limit, not the context
])
def test_bad_requests_get_a_spanish_message(models, message, entrada, label, error):
    with pytest.raises(gr.Error, match=error):
        answer(models, message, label=label, entrada=entrada)


def test_a_missing_model_or_adapter_names_the_command_that_makes_it(tmp_path, tiny_model_dir):
    def chat(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "minigpt", "chat", *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120)

    no_model = chat("--model", str(tmp_path / "nothing"))
    assert no_model.returncode == 1 and "run 'dvc repro train' (or 'dvc pull') first" in no_model.stderr
    assert "Traceback" not in no_model.stderr
    no_adapter = chat("--model", str(tiny_model_dir), "--lora", str(tmp_path))
    assert no_adapter.returncode == 1 and "run 'dvc repro lora' first" in no_adapter.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(models):
    app, url = launch(models, port=_free_port(), limits=LIMITS, block=False)
    yield url
    app.close()


def test_the_served_app_streams_answers_to_an_api_client(served, models):
    from gradio_client import Client

    client = Client(served, verbose=False)
    model, tokenizer = models.choices[models.labels[0]]
    expected = "".join(stream(model, tokenizer, render_prompt("¿Qué es la luz?"), GenerationSettings(max_new_tokens=16)))
    job = client.submit(message="¿Qué es la luz?", **GREEDY, api_name="/chat")
    partials = list(job)
    assert len(partials) > 1 and partials[-1] == job.result() == expected
    assert client.predict(message="¿Y el sonido?", model_label=models.labels[1], **GREEDY, api_name="/chat")
    with pytest.raises(Exception, match="hasta 300 caracteres"):
        client.predict(message="x" * 301, api_name="/chat")


def test_the_served_app_binds_to_this_machine_only(served):
    assert served.startswith("http://127.0.0.1:")


@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("MINIGPT_REQUIRE_BROWSER"),
                    reason="chromium is not installed (.ci/run installs it)")
def test_a_browser_sees_the_answer_stream_in(served):
    from playwright.sync_api import expect, sync_playwright

    assert shutil.which("chromium"), "MINIGPT_REQUIRE_BROWSER is set but chromium is not installed"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page()
            page.goto(served, wait_until="load")
            textbox = page.locator("#mensaje textarea")
            expect(textbox).to_be_editable(timeout=30_000)
            # Record every text the answer shows while it grows: more than one means it streamed.
            page.evaluate("""() => {
                window.seenAnswers = new Set();
                new MutationObserver(() => {
                    const bots = document.querySelectorAll('[data-testid="bot"]');
                    if (bots.length) window.seenAnswers.add(bots[bots.length - 1].innerText);
                }).observe(document.body, {subtree: true, childList: true, characterData: true});
            }""")
            textbox.fill("¿Qué es la luz?")
            textbox.press("Enter")
            expect(page.locator('[data-testid="user"]').first).to_contain_text("¿Qué es la luz?")
            bot = page.locator('[data-testid="bot"]').last
            expect(bot).not_to_be_empty(timeout=60_000)
            expect(textbox).to_be_editable(timeout=60_000)  # disabled while the answer streams
            seen = {text for text in page.evaluate("() => [...window.seenAnswers]") if text.strip()}
            assert len(seen) > 1, seen
            page.get_by_role("button", name="Borrar conversación").click()
            expect(page.locator('[data-testid="bot"]')).to_have_count(0)
        finally:
            browser.close()
