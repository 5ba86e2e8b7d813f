"""Where the chat reaches past Gradio's public API: each piece here works around one Gradio
behaviour, says which, and leans on internals that `tests/test_gradio_glue.py` checks exist,
so a Gradio upgrade that moves them fails a test by name instead of breaking the page quietly.
Checked with Gradio 6.31. The app itself (`minigpt.chat`) uses only what is public.
"""

from __future__ import annotations

import re

# ASCII punctuation: what a Markdown backslash escape covers, and all that Markdown or HTML
# needs to turn typed text into markup (`<b>`, `**`, `$$`, `[link](…)`).
_MARKUP = re.compile(r"([!-/:-@\[-`{-~])")
_ESCAPED_MARKUP = re.compile(r"\\([!-/:-@\[-`{-~])")


def escape_markup(text: str) -> str:
    return _MARKUP.sub(r"\\\1", text)


def unescape_markup(text: str) -> str:
    return _ESCAPED_MARKUP.sub(r"\1", text)


def show_user_text_literally(chatbot):
    """The user's messages shown exactly as typed, the model's answers as Markdown: the page gets
    the user's text with its punctuation escaped, and what the page sends back is unescaped, so
    the conversation the model sees keeps the raw text. Gradio has no per-message option for
    this; the methods are wrapped on the instance because a Component subclass makes Gradio
    write a type stub beside this module. Leans on: `Chatbot.postprocess` returning a model
    whose `.root` messages have `.role` and `.content` parts with `.type` and `.text`, and
    `Chatbot.preprocess` receiving dicts of the same shape."""
    to_page, from_page = chatbot.postprocess, chatbot.preprocess

    def user_text_parts(messages, get):
        return (part for message in messages if get(message, "role") == "user" for part in get(message, "content"))

    def postprocess(value):
        shown = to_page(value)
        for part in user_text_parts(shown.root, getattr):
            if part.type == "text":
                part.text = escape_markup(part.text)
        return shown

    def preprocess(payload):
        messages = from_page(payload)
        for part in user_text_parts(messages, dict.get):
            if part.get("type") == "text":
                part["text"] = unescape_markup(part["text"])
        return messages

    chatbot.postprocess, chatbot.preprocess = postprocess, preprocess
    return chatbot


def let_unknown_choices_through(radio):
    """A Radio whose value, when not one of its choices, still reaches the event function: Gradio
    refuses it first with an English `Error("Value: … is not in the list of choices")` and a
    server traceback, so an API client naming an unknown model never got the chat's own Spanish
    answer. Wrapped on the instance, as above. Leans on: `Radio.preprocess(payload)` running
    before the function and `Radio.choices` holding (label, value) pairs."""
    check = radio.preprocess

    def preprocess(payload):
        return payload if payload not in [value for _, value in radio.choices] else check(payload)

    radio.preprocess = preprocess
    return radio


def chat_interface_keeping_placeholder(placeholder: str):
    """`gr.ChatInterface` whose message box keeps `placeholder` after the first message: Gradio
    clears the box while an answer streams and never puts the placeholder back. Leans on the
    private `ChatInterface._clear_and_save_textbox(self, message)`."""
    import gradio as gr

    class ChatInterface(gr.ChatInterface):
        def _clear_and_save_textbox(self, message):
            return type(self.textbox)("", interactive=False, placeholder=placeholder), message

    return ChatInterface


def stop_then_clear(textbox_id: str) -> str:
    """Page code that stops a streaming answer (Gradio's stop button) before the conversation is
    cleared, or the answer's next update would bring it back. Leans on the stop button's
    `.stop-button` class inside the textbox's element."""
    return f"() => {{ document.querySelector('#{textbox_id} .stop-button')?.click(); }}"


def reopen_after_failure(submit_event, textbox, placeholder: str) -> None:
    """Make the message box usable again after the page's request fails: Gradio runs only
    failure follow-ups then, so ChatInterface's own re-enabling never comes and the box stays
    disabled until a reload. A full queue is such a failure, and so is the stop button, so
    only the box is touched. Leans on `gradio.events.EventListener`'s `trigger_after`,
    `trigger_only_on_failure` and `has_trigger`, and on the `_id` of `submit_event`, one of
    `Blocks.fns`' event functions."""
    import gradio as gr
    from gradio.events import EventListener

    EventListener("failure", trigger_after=submit_event._id, trigger_only_on_failure=True, has_trigger=False).listener(
        textbox,
        lambda: gr.Textbox(interactive=True, placeholder=placeholder, submit_btn="Enviar", stop_btn=False),
        None,
        [textbox],
        queue=False,
        api_visibility="private",
    )


def share_concurrency(app, names: set[str], concurrency_id: str) -> list:
    """Put the app's events named `names` in one concurrency group and return them: the page and
    the API are separate events to Gradio, each with its own slots, so a limit on answers being
    generated, whoever asks, needs one id. Leans on `Blocks.fns` (events with `.name` and
    `.concurrency_id`)."""
    events = [fn for fn in app.fns.values() if fn.name in names]
    if {fn.name for fn in events} != names:
        raise RuntimeError(f"cannot find the events {sorted(names)} in this Gradio version: check build_app")
    for fn in events:
        fn.concurrency_id = concurrency_id
    return events


# Gradio's page shows a fixed English sentence for a full queue, outside its translations
# (which follow the browser's language, Spanish included): the page swaps it for `spanish`.
# Leans on the toast's `data-testid="toast-text"`.
QUEUE_FULL_ENGLISH = "This application is currently busy. Please try again."


def spanish_page_head(queue_full: str) -> str:
    """A `<head>` script: the page reports Spanish before Gradio's scripts ask, and the
    full-queue toast reads `queue_full`."""
    return (
        "<script>Object.defineProperty(navigator, 'language', {get: () => 'es'});"
        "Object.defineProperty(navigator, 'languages', {get: () => ['es']});"
        "new MutationObserver(() => document.querySelectorAll('[data-testid=\"toast-text\"]').forEach(toast => {"
        f"if (toast.textContent.trim() === '{QUEUE_FULL_ENGLISH}') toast.textContent = '{queue_full}';"
        "})).observe(document.documentElement, {subtree: true, childList: true});</script>"
    )
