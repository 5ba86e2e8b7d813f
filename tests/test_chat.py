"""The chat: its controls and context handling as functions, the app through gradio_client,
and the page in a real headless browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ["NO_PROXY"] = "127.0.0.1,localhost"  # the app is local; never route it through a proxy

from minigpt.chat import (
    CONTROLS,
    ENTRADA_TITLE,
    ERROR_TITLE,
    FINISHED,
    GENERATION_QUEUE,
    MESSAGE_PLACEHOLDER,
    QUEUE_FULL,
    ChatLimits,
    ChatModels,
    Responder,
    build_app,  # noqa: E402
    clamp,
    controls_for,
    fit_prompt,
    history_turns,
    launch,
    settings_from_controls,
    spanish_list,
)
from minigpt.decoding import GenerationSettings  # noqa: E402
from minigpt.generation import generate, stream  # noqa: E402
from minigpt.gradio_glue import escape_markup, show_user_text_literally  # noqa: E402
from minigpt.template import EOS_TOKEN, RESPONSE_HEADER, render_conversation, render_prompt  # noqa: E402
from tests.helpers import REPO, free_port  # noqa: E402

LIMITS = ChatLimits(max_input_chars=300, max_seconds=30.0, concurrency=1)
GREEDY = dict(temperature=0, top_p=1.0, top_k=0, max_new_tokens=16, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory) -> ChatModels:
    from minigpt.lora import add_adapters, save_adapter
    from minigpt.model import from_hf
    from tests.helpers import LORA

    adapter_dir = tmp_path_factory.mktemp("chat") / "lora_test"
    _, tokenizer = ChatModels(tiny_model_dir).choices[f"Base ({tiny_model_dir.name})"]
    save_adapter(add_adapters(from_hf(tiny_model_dir), LORA, seed=0), adapter_dir, LORA, tiny_model_dir, tokenizer)
    return ChatModels(tiny_model_dir, adapter_dir)


def respond(models: ChatModels, message: str, history=(), label: str | None = None, entrada: str = "", **controls):
    """Everything the chat function yields: (response, next value of the Entrada field) pairs."""
    values = GREEDY | controls
    return list(
        Responder(models, LIMITS).respond(
            message, list(history), label or models.labels[0], entrada, *(values[name] for name in CONTROLS)
        )
    )


def as_dict(message) -> dict:
    return {"role": message.role, "content": message.content, "metadata": dict(message.metadata or {})}


def finished(text: str) -> dict:
    """An answer as the chat stores one the model finished."""
    return {"role": "assistant", "content": text, "metadata": FINISHED}


def text_of(response) -> str:
    """An answer's text, from the chat function (a ChatMessage) or an API client (a dict)."""
    return response["content"] if isinstance(response, dict) else response.content


def test_controls_are_clamped_to_the_slider_ranges():
    assert clamp(CONTROLS["temperature"], 9) == 2.0 and clamp(CONTROLS["top_k"], -5) == 0
    assert clamp(CONTROLS["top_p"], "mucho") == CONTROLS["top_p"].default
    assert clamp(CONTROLS["repetition_penalty"], float("nan")) == CONTROLS["repetition_penalty"].default
    assert controls_for(64)["max_new_tokens"].maximum == 32 and controls_for(4096)["max_new_tokens"].maximum == 512
    greedy = settings_from_controls(0, 0.5, 10, 10**9, 1.2, context=64, max_seconds=5)
    assert not greedy.do_sample and greedy.max_new_tokens == 32 and greedy.max_seconds == 5  # half the context at most
    sampled = settings_from_controls(0.8, 0.5, 10.7, None, 1.2, context=64, max_seconds=5)
    assert sampled.do_sample and sampled.temperature == 0.8 and sampled.top_k == 10 and sampled.max_new_tokens == 32
    assert sampled.seed is None  # concurrent answers share torch's generator: no pretend reproducibility


def test_history_turns_keep_entradas_and_leave_out_failed_and_stopped_exchanges():
    history = [
        {"role": "user", "content": "Resume"},
        {"role": "assistant", "content": "El sol.", "metadata": {"title": ENTRADA_TITLE}},
        {"role": "assistant", "content": [{"type": "text", "text": "Sale el sol."}], "metadata": FINISHED},
        {"role": "user", "content": "x" * 999},
        {"role": "assistant", "content": "Demasiado largo", "metadata": {"title": ERROR_TITLE}},
        {"role": "user", "content": "Detenida"},
        {"role": "assistant", "content": ""},
        {"role": "user", "content": "Detenida a medias"},
        {"role": "assistant", "content": "Una respuesta que el usuario", "metadata": None},  # stopped: no end
        {"role": "user", "content": "Bien"},
        finished("Me alegro"),
    ]
    assert history_turns(history) == [
        [{"role": "user", "content": "Resume", "input": "El sol."}, {"role": "assistant", "content": "Sale el sol."}],
        [{"role": "user", "content": "Bien", "input": ""}, {"role": "assistant", "content": "Me alegro"}],
    ]
    assert history_turns([{"role": "assistant", "content": "suelto"}]) == []


def test_the_oldest_turns_are_dropped_to_fit_the_context(models):
    _, tokenizer = models.choices[models.labels[0]]
    history = []
    for i in range(8):
        history += [
            {"role": "user", "content": f"Explica el concepto número {i}."},
            finished(f"El concepto número {i} es una idea de la escuela."),
        ]
    prompt, length, dropped = fit_prompt(tokenizer, history, "¿Y el siguiente?", "una entrada", budget=150)
    assert 0 < dropped < 7 and length <= 150
    assert length == len(tokenizer(prompt, add_special_tokens=False)["input_ids"])  # turn lengths add up exactly
    kept = [m for turn in history_turns(history)[dropped:] for m in turn]
    assert prompt == render_conversation(
        kept + [{"role": "user", "content": "¿Y el siguiente?", "input": "una entrada"}], add_generation_prompt=True
    )
    assert "número 7" in prompt and "número 0" not in prompt and prompt.endswith(RESPONSE_HEADER)
    assert fit_prompt(tokenizer, [], "Hola", "", budget=60)[::2] == (render_prompt("Hola"), 0)


def test_a_conversation_is_rendered_for_the_chat_as_it_was_for_training(models):
    """A training row with a history (an OASST follow-up) and the same exchange in the chat
    give the model the same prompt tokens."""
    from minigpt.packing import encode_instructions

    _, tokenizer = models.choices[models.labels[0]]
    row = {
        "instruction": "¿Y en los hongos?",
        "input": "",
        "output": "No: los hongos no hacen fotosíntesis.",
        "history": [
            {"role": "user", "content": "¿Qué es la fotosíntesis?"},
            {"role": "assistant", "content": "Es cómo las plantas convierten la luz en energía."},
        ],
    }
    chat_history = [{"role": "user", "content": row["history"][0]["content"]}, finished(row["history"][1]["content"])]
    prompt, length, dropped = fit_prompt(tokenizer, chat_history, row["instruction"], "", budget=200)
    ((ids, targets),) = encode_instructions([row], tokenizer, train_on_prompt=False)
    assert dropped == 0 and ids[:length] == tokenizer(prompt, add_special_tokens=False)["input_ids"]
    assert not any(targets[:length]) and all(targets[length:])  # loss on this answer alone
    assert tokenizer.decode(ids[length:-1]) == row["output"]


def test_the_answer_streams_and_equals_the_evaluation_decoding(models):
    outputs = respond(models, "¿Qué es la luz?")
    partials = [text_of(response) for response, _ in outputs]
    assert as_dict(outputs[-1][0])["metadata"] == FINISHED  # the last one marks the answer finished
    assert len(partials) > 1 and all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))
    model, tokenizer = models.choices[models.labels[0]]
    expected = generate(model, tokenizer, [render_prompt("¿Qué es la luz?")], GenerationSettings(max_new_tokens=16))
    assert partials[-1].strip() == expected[0].text


def test_a_stopped_answer_is_not_marked_finished_nor_sent_back_as_complete(models):
    _, tokenizer = models.choices[models.labels[0]]
    answers = Responder(models, LIMITS).respond(
        "Hola", [], models.labels[0], "", *((GREEDY | {"max_new_tokens": 30})[name] for name in CONTROLS)
    )
    partial, _ = next(a for a in answers if text_of(a[0]).strip())  # the user presses stop: Gradio closes the stream
    answers.close()
    assert not partial.metadata  # what Gradio keeps when the stream is closed: not marked finished
    history = [{"role": "user", "content": "Hola"}, {"role": "assistant", "content": partial.content}]
    assert history_turns(history) == []
    assert EOS_TOKEN not in fit_prompt(tokenizer, history, "Sigue", "", budget=60)[0]


def test_the_entrada_is_shown_with_the_answer_sent_once_and_remembered(models):
    response, entrada_field = respond(models, "¿Qué es la luz?", entrada="Sol.")[-1]
    shown, answer = (as_dict(message) for message in response)
    assert shown == {"role": "assistant", "content": "Sol.", "metadata": {"title": ENTRADA_TITLE}}
    assert entrada_field == ""  # emptied once sent
    model, tokenizer = models.choices[models.labels[0]]
    expected = generate(
        model, tokenizer, [render_prompt("¿Qué es la luz?", "Sol.")], GenerationSettings(max_new_tokens=16)
    )
    assert answer["content"].strip() == expected[0].text and answer["metadata"] == FINISHED
    history = [{"role": "user", "content": "¿Qué es la luz?"}, shown, finished("Una estrella.")]
    assert history_turns(history)[0][0]["input"] == "Sol."


def test_the_lora_choice_is_named_by_its_categories_and_answers_with_the_adapter(models):
    assert models.labels == ["Base (model)", "Base + LoRA (ciencia)"]  # from the adapter's categories.json
    assert models.adapter_categories == ["ciencia"]
    assert respond(models, "¿Qué es la luz?", label=models.labels[1])[-1][0]
    assert [spanish_list(words) for words in ([], ["a"], ["a", "b"], ["a", "b", "c"])] == ["", "a", "a y b", "a, b y c"]


def test_a_long_conversation_never_fails_at_the_context_limit(models):
    history = []
    with pytest.warns(UserWarning, match="se ha olvidado (el turno|los .* turnos) más antiguos?"):  # shown to the user
        for turn in range(12):  # far beyond the tiny model's 64-token context
            reply = respond(models, f"Explica el concepto número {turn}.", history, max_new_tokens=16)[-1][0]
            assert as_dict(reply)["metadata"] == FINISHED  # an answer, not a refusal
            history += [
                {"role": "user", "content": f"Explica el concepto número {turn}."},
                finished(reply.content.strip() or "Es una idea de la escuela."),
            ]


@pytest.mark.parametrize(
    "message, entrada, label, error",
    [
        ("   ", "", None, "Escribe una instrucción"),
        ("\u200b\u200b \ufeff", "", None, "Escribe una instrucción"),  # only invisible characters
        ("x" * 301, "", None, "hasta 300 caracteres"),
        ("Resume", "y" * 301, None, "hasta 300 caracteres"),
        ("Hola", "", "GPT-5", "Modelo desconocido"),
        ("palabra " * 35, "", None, "Acórtalo o reduce el máximo de tokens nuevos"),  # fits the limit, not the context
    ],
)
def test_bad_requests_get_a_spanish_explanation_not_an_error(models, message, entrada, label, error):
    ((response, entrada_field),) = respond(models, message, label=label, entrada=entrada)
    assert as_dict(response)["metadata"] == {"title": ERROR_TITLE} and error in response.content
    assert entrada_field == entrada.strip()  # kept, to fix and send again


def test_a_message_that_is_not_valid_unicode_is_refused_in_spanish(models):
    ((response, entrada_field),) = respond(models, "Hola \ud800", entrada="\udcff")
    assert as_dict(response)["metadata"] == {"title": ERROR_TITLE} and "texto válido" in response.content
    assert entrada_field == ""  # what cannot be sent back is not


def test_the_command_line_refuses_undecodable_and_invisible_instructions(tiny_model_dir):
    command = [sys.executable, "-m", "minigpt", "generate", "--model", str(tiny_model_dir)]
    undecodable = subprocess.run([*command, b"hola \xff"], capture_output=True, text=True, cwd=REPO)
    invisible = subprocess.run([*command, "\u200b\u200b"], capture_output=True, text=True, cwd=REPO)
    assert undecodable.returncode == 1 and "not valid UTF-8" in undecodable.stderr
    assert invisible.returncode == 1 and "the instruction is empty" in invisible.stderr
    assert "Traceback" not in undecodable.stderr + invisible.stderr


def test_a_failure_during_generation_is_explained(models, monkeypatch):
    model, _ = models.choices[models.labels[0]]

    def broken(**kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(model, "generate", broken)
    response, _ = respond(models, "Hola")[-1]
    answer, failure = (as_dict(message) for message in response)
    assert failure["metadata"] == {"title": ERROR_TITLE} and "RuntimeError" in failure["content"]


def test_the_page_and_the_api_share_one_generation_queue(models):
    app = build_app(models, LIMITS)
    queues = {fn.name: fn.concurrency_id for fn in app.fns.values() if fn.name in ("_submit_fn", "respond")}
    assert set(queues) == {"_submit_fn", "respond"} and set(queues.values()) == {GENERATION_QUEUE}


def test_user_text_reaches_the_page_escaped_and_comes_back_as_typed():
    import gradio as gr

    typed = "<script>x()</script><img src=x onerror=y()> <b>negrita</b> **x** $$a^2$$ \\n &amp; [l](http://a)"
    chatbot = show_user_text_literally(gr.Chatbot())
    shown = chatbot.postprocess([{"role": "user", "content": typed}, {"role": "assistant", "content": "**sí**"}])
    user, answer = ([part.text for part in message.content] for message in shown.root)
    assert user == [escape_markup(typed)] and "<" not in user[0].replace("\\<", "")
    assert answer == ["**sí**"]  # answers stay Markdown
    back = chatbot.preprocess(shown)
    assert [part["text"] for message in back for part in message["content"]] == [typed, "**sí**"]


def test_a_missing_model_or_adapter_names_the_command_that_makes_it(tmp_path, tiny_model_dir):
    def chat(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "minigpt", "chat", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
        )

    no_model = chat("--model", str(tmp_path / "nothing"))
    assert no_model.returncode == 1 and "run 'dvc repro train' (or 'dvc pull') first" in no_model.stderr
    assert "Traceback" not in no_model.stderr
    no_adapter = chat("--model", str(tiny_model_dir), "--lora", str(tmp_path))
    assert no_adapter.returncode == 1 and "run 'dvc repro lora' first" in no_adapter.stderr


def test_the_pipelines_adapter_is_offered_only_for_the_model_it_adapts(tmp_path, monkeypatch, capsys):
    from minigpt.__main__ import _default_adapter
    from minigpt.lora import ADAPTER_WEIGHTS
    from minigpt.paths import ADAPTER

    monkeypatch.chdir(tmp_path)
    assert _default_adapter(tmp_path / "models/minigpt") is None  # none trained: nothing to say
    ADAPTER.mkdir(parents=True)
    (ADAPTER / ADAPTER_WEIGHTS).write_bytes(b"")
    (ADAPTER / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "models/minigpt"}))
    assert _default_adapter(tmp_path / "models/minigpt") == ADAPTER
    assert _default_adapter(tmp_path / "elsewhere") is None
    assert "adapts models/minigpt, not" in capsys.readouterr().out


@pytest.fixture(scope="module")
def served(models):
    app, url = launch(models, port=free_port(), limits=LIMITS, block=False)
    yield url
    app.close()


def test_the_served_page_refuses_uploads_and_loads_no_remote_images(served):
    import httpx

    refused = httpx.post(f"{served}gradio_api/upload", files={"files": ("a.txt", b"hola")})
    assert refused.status_code == 413  # the chat takes no files
    head = httpx.get(f"{served}config").json()["head"]  # what the page puts in its <head>
    assert head.startswith('<meta http-equiv="Content-Security-Policy" content="img-src \'self\' data: blob:;')


def test_the_served_app_streams_answers_to_an_api_client(served, models):
    from gradio_client import Client

    client = Client(served, verbose=False)
    model, tokenizer = models.choices[models.labels[0]]
    expected = "".join(
        stream(model, tokenizer, render_prompt("¿Qué es la luz?"), GenerationSettings(max_new_tokens=16))
    )
    job = client.submit(message="¿Qué es la luz?", **GREEDY, api_name="/chat")
    partials = [response for response, _ in job]
    assert len(partials) > 1 and partials[-1] == job.result()[0]
    assert text_of(partials[-1]) == expected and partials[-1]["metadata"] == FINISHED
    assert not partials[0]["metadata"]  # what a client that stops early keeps: not finished
    response, _ = client.predict(message="¿Y el sonido?", model_label=models.labels[1], **GREEDY, api_name="/chat")
    assert text_of(response) and response["metadata"] == FINISHED
    refused, _ = client.predict(message="x" * 301, api_name="/chat")
    assert refused["metadata"]["title"] == ERROR_TITLE and "hasta 300 caracteres" in refused["content"]


def test_one_client_is_one_conversation_until_it_resets_its_session(served, monkeypatch):
    """What docs/chat.md tells API users: earlier turns are part of the prompt of later ones
    within one Client; `reset_session()` (or a new Client) starts afresh. An unknown model is
    answered in Spanish."""
    from gradio_client import Client

    import minigpt.chat

    histories = []

    def recording(tokenizer, history, *rest):
        histories.append([message["content"] for message in history])
        return fit_prompt(tokenizer, history, *rest)

    monkeypatch.setattr(minigpt.chat, "fit_prompt", recording)
    client = Client(served, verbose=False)
    first, _ = client.predict(message="¿Qué es la luz?", **GREEDY, api_name="/chat")
    client.predict(message="¿Y el sonido?", **GREEDY, api_name="/chat")
    client.reset_session()
    client.predict(message="¿Y el sonido?", **GREEDY, api_name="/chat")
    assert histories == [[], ["¿Qué es la luz?", first["content"]], []]
    unknown, _ = client.predict(message="Hola", model_label="Otro modelo", api_name="/chat")
    assert unknown["metadata"]["title"] == ERROR_TITLE and "Modelo desconocido" in unknown["content"]


def test_concurrent_clients_are_all_served_and_over_long_inputs_refused(served):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    def conversation(index: int) -> tuple[str, dict]:
        client = Client(served, verbose=False)
        answered, _ = client.predict(message=f"Explica el concepto número {index}.", **GREEDY, api_name="/chat")
        refused, _ = client.predict(message="x" * 301, api_name="/chat")
        return answered, refused

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(conversation, range(8)))  # 16 requests through a queue of one answer at a time
    assert len(results) == 8 and all(answered["metadata"] == FINISHED for answered, _ in results)
    assert all(refused["metadata"]["title"] == ERROR_TITLE for _, refused in results)


def test_the_served_app_binds_to_this_machine_only(served):
    assert served.startswith("http://127.0.0.1:")


@pytest.fixture
def page(served):
    if shutil.which("chromium") is None:
        if os.environ.get("MINIGPT_REQUIRE_BROWSER"):
            pytest.fail("MINIGPT_REQUIRE_BROWSER is set but chromium is not installed")
        pytest.skip("chromium is not installed (.ci/run installs it)")
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(locale="en-US")  # the chat must not depend on it
            page.goto(served, wait_until="load")
            expect(page.locator("#mensaje textarea")).to_be_editable(timeout=30_000)
            yield page
        finally:
            browser.close()


def send(page, text: str) -> None:
    textbox = page.locator("#mensaje textarea")
    textbox.fill(text)
    textbox.press("Enter")


def test_a_browser_sees_the_answer_stream_in(page):
    from playwright.sync_api import expect

    # Record every text the answer shows while it grows: more than one means it streamed.
    page.evaluate("""() => {
        window.seenAnswers = new Set();
        new MutationObserver(() => {
            const bots = document.querySelectorAll('[data-testid="bot"]');
            if (bots.length) window.seenAnswers.add(bots[bots.length - 1].innerText);
        }).observe(document.body, {subtree: true, childList: true, characterData: true});
    }""")
    send(page, "¿Qué es la luz?")
    expect(page.locator('[data-testid="user"]').first).to_contain_text("¿Qué es la luz?")
    expect(page.locator('[data-testid="bot"]').last).not_to_be_empty(timeout=60_000)
    expect(page.locator("#mensaje textarea")).to_be_editable(timeout=60_000)  # disabled while the answer streams
    seen = {text for text in page.evaluate("() => [...window.seenAnswers]") if text.strip()}
    assert len(seen) > 1, seen
    expect(page.locator("#mensaje textarea")).to_have_attribute("placeholder", MESSAGE_PLACEHOLDER)  # kept
    assert page.evaluate("navigator.language") == "es"  # what Gradio picks its own texts by, in an English browser


def test_after_a_refusal_the_page_still_works(page):
    from playwright.sync_api import expect

    send(page, "palabra " * 35)  # under the character limit, over the tiny model's context
    expect(page.get_by_text(ERROR_TITLE)).to_be_visible(timeout=30_000)
    expect(page.locator("#mensaje textarea")).to_be_editable(timeout=30_000)
    send(page, "Hola")
    expect(page.locator('[data-testid="user"]')).to_have_count(2, timeout=30_000)
    expect(page.locator("#mensaje textarea")).to_be_editable(timeout=60_000)


def test_clearing_during_an_answer_stops_it_and_forgets_the_conversation(page, models):
    from playwright.sync_api import expect

    model, _ = models.choices[models.labels[0]]
    slow = model.register_forward_pre_hook(lambda *_: time.sleep(0.2))  # an answer now takes seconds
    try:
        send(page, "Hola")
        expect(page.locator('[data-testid="bot"]').last).not_to_be_empty(timeout=30_000)
        page.get_by_role("button", name="Borrar conversación").click()
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
        expect(page.locator("#mensaje textarea")).to_be_editable(timeout=30_000)
        page.wait_for_timeout(1500)  # a stream that was not stopped would redraw the conversation by now
        expect(page.locator('[data-testid="user"]')).to_have_count(0)
    finally:
        slow.remove()


def test_typed_html_and_markdown_are_shown_as_typed_and_never_run(page):
    from playwright.sync_api import expect

    typed = '<script>window.ran = 1</script><img src=x onerror="window.ran = 2"> <b>negrita</b> **fuerte**'
    send(page, typed)
    bubble = page.locator('[data-testid="user"]').last
    expect(bubble).to_have_text(typed, timeout=30_000)
    assert bubble.locator("img, b, strong, script").count() == 0
    expect(page.locator("#mensaje textarea")).to_be_editable(timeout=60_000)
    assert page.evaluate("window.ran") is None


def test_a_full_queue_turns_the_next_user_away_in_spanish_and_recovers(page, served, models):
    """One answer generating and a queue of 32 waiting, held at the model's first step: the
    next user is refused (in Spanish on the page), keeps a working message box, and is
    answered once the queue drains."""
    import threading

    import httpx
    from gradio_client import Client
    from gradio_client.utils import QueueError
    from playwright.sync_api import expect

    model, _ = models.choices[models.labels[0]]
    gate = threading.Event()

    def wait_for_gate(*_) -> None:  # returning None leaves the model's inputs as they are
        gate.wait(120)

    held = model.register_forward_pre_hook(wait_for_gate)
    try:
        client = Client(served, verbose=False)
        jobs = [
            client.submit(message=f"Pregunta {i}", **GREEDY, api_name="/chat")
            for i in range(LIMITS.concurrency + LIMITS.queue_size)
        ]
        status = f"{served.rstrip('/')}/gradio_api/queue/status"  # {"queue_size": events waiting}
        deadline = time.monotonic() + 60
        while httpx.get(status).json()["queue_size"] < LIMITS.queue_size:
            assert time.monotonic() < deadline, httpx.get(status).json()
            time.sleep(0.05)
        with pytest.raises(QueueError):  # API clients: gradio_client's own message
            client.submit(message="Una más", **GREEDY, api_name="/chat").result(timeout=30)
        send(page, "Hola")
        expect(page.get_by_text(QUEUE_FULL)).to_be_visible(timeout=30_000)
        expect(page.locator("#mensaje textarea")).to_be_editable(timeout=30_000)
    finally:
        gate.set()
        held.remove()
    assert all(job.result(timeout=120)[0]["metadata"] == FINISHED for job in jobs)
    send(page, "¿Y ahora?")
    expect(page.locator('[data-testid="user"]').last).to_have_text("¿Y ahora?", timeout=30_000)
    expect(page.locator('[data-testid="bot"]').last).not_to_be_empty(timeout=60_000)
    expect(page.locator("#mensaje textarea")).to_be_editable(timeout=60_000)
