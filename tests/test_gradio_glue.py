"""The Gradio internals `minigpt.gradio_glue` leans on still exist: an upgrade that moves one
fails here by name (the behaviour itself is checked in a browser by tests/test_chat.py)."""

from __future__ import annotations

import inspect
import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

gr = pytest.importorskip("gradio")

from minigpt.gradio_glue import (  # noqa: E402
    chat_interface_keeping_placeholder,
    escape_markup,
    let_unknown_choices_through,
    share_concurrency,
    spanish_page_head,
    unescape_markup,
)


def app_with_an_answer_event():
    """Blocks with one event, named after its function `answer`."""
    with gr.Blocks() as app:
        box = gr.Textbox()

        def answer(text):
            return text

        box.submit(answer, box, box)
    return app


def test_chat_interface_still_clears_its_textbox_through_the_method_we_override():
    original = gr.ChatInterface._clear_and_save_textbox
    assert list(inspect.signature(original).parameters) == ["self", "message"]
    keeping = chat_interface_keeping_placeholder("Escribe…")
    assert keeping._clear_and_save_textbox is not original and issubclass(keeping, gr.ChatInterface)


def test_event_listeners_still_take_failure_follow_ups_after_an_event_function_s_id():
    from gradio.events import EventListener

    accepted = inspect.signature(EventListener.__init__).parameters
    assert {"trigger_after", "trigger_only_on_failure", "has_trigger"} <= set(accepted)
    app = app_with_an_answer_event()
    (event,) = share_concurrency(app, {"answer"}, "one-queue")
    assert isinstance(event._id, int)


def test_blocks_still_list_events_with_a_name_and_a_concurrency_id():
    app = app_with_an_answer_event()
    (event,) = share_concurrency(app, {"answer"}, "one-queue")
    assert event.concurrency_id == "one-queue"
    with pytest.raises(RuntimeError, match=r"cannot find the events \['missing'\]"):
        share_concurrency(app, {"missing"}, "one-queue")


def test_the_chatbot_still_gives_the_page_messages_with_typed_parts():
    shown = gr.Chatbot().postprocess([{"role": "user", "content": "hola"}])
    (message,) = shown.root
    assert message.role == "user" and [(part.type, part.text) for part in message.content] == [("text", "hola")]


def test_a_radio_still_refuses_unknown_values_in_preprocess_and_the_wrapper_lets_them_through():
    with pytest.raises(gr.Error, match="not in the list of choices"):
        gr.Radio(["a", "b"]).preprocess("c")  # what the wrapper works around
    radio = let_unknown_choices_through(gr.Radio(["a", "b"], type="index"))
    assert radio.preprocess("c") == "c" and radio.preprocess("b") == 1  # known values as Gradio gives them


def test_markup_escaping_round_trips_and_the_page_head_swaps_the_queue_message():
    typed = "<b>x</b> **y** [l](http://a) \\n"
    assert unescape_markup(escape_markup(typed)) == typed
    head = spanish_page_head("Demasiadas personas.")
    assert "This application is currently busy. Please try again." in head and "Demasiadas personas." in head
