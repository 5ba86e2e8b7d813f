"""The instruction format, spelled once, rendered identically by Python and by the chat template."""

from __future__ import annotations

import jinja2
import pytest

from minigpt import template
from tests.helpers import CONVERSATIONS


def render_with_jinja(messages, add_generation_prompt: bool) -> str:
    """Render the chat template the way transformers does (sandboxed Jinja, raise_exception)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(template.chat_template()).render(
        messages=messages, add_generation_prompt=add_generation_prompt, eos_token=template.EOS_TOKEN
    )


def test_prompt_without_input():
    assert template.render_prompt("¿Qué es un átomo?") == "### Instrucción:\n¿Qué es un átomo?\n\n### Respuesta:\n"


def test_prompt_with_input():
    assert template.render_prompt("Resume.", "Texto largo.") == (
        "### Instrucción:\nResume.\n\n### Entrada:\nTexto largo.\n\n### Respuesta:\n"
    )


def test_example_is_prompt_answer_and_end_of_text():
    assert template.render_example("Di hola.", "", "Hola.") == template.render_prompt("Di hola.") + "Hola.<|endoftext|>"


def test_a_conversation_is_its_examples_concatenated():
    messages = CONVERSATIONS[2] + [{"role": "assistant", "content": "Goodbye"}]
    assert template.render_conversation(messages) == (
        template.render_example("Traduce al inglés.", "Hola", "Hello")
        + template.render_example("¿Y «adiós»?", "", "Goodbye")
    )


@pytest.mark.parametrize("messages", CONVERSATIONS)
@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_the_jinja_chat_template_renders_exactly_like_python(messages, add_generation_prompt):
    assert render_with_jinja(messages, add_generation_prompt) == template.render_conversation(
        messages, add_generation_prompt
    )


def test_unsupported_roles_are_refused_by_both():
    messages = [{"role": "system", "content": "Eres útil."}, {"role": "user", "content": "Hola"}]
    with pytest.raises(ValueError, match="unsupported chat role 'system'"):
        template.render_conversation(messages)
    with pytest.raises(jinja2.exceptions.TemplateError, match="unsupported chat role system"):
        render_with_jinja(messages, True)
