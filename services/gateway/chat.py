"""Chat messages to a prompt: the model directory's chat template, or a documented default.

Looked up as Hugging Face does: `chat_template.jinja`, else `chat_template` in
`tokenizer_config.json` (a string, or a list of named templates of which "default" is used).
The default, for models without one (the tiny test model), renders each message as
`<|role|>\\ncontent\\n` and ends with `<|assistant|>\\n`.
"""

from __future__ import annotations

from datetime import datetime

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.gateway.errors import invalid
from services.gateway.text import ModelFiles

DEFAULT_TEMPLATE = (
    "{% for message in messages %}<|{{ message.role }}|>\n{{ message.content }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def _raise(message: str) -> None:
    raise jinja2.TemplateError(message)


class ChatTemplate:
    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=["jinja2.ext.loopcontrols"])
        env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.now().strftime(fmt))
        self.template = env.from_string(source)
        self.source = source
        self.bos_token = bos_token
        self.eos_token = eos_token

    @classmethod
    def for_model(cls, files: ModelFiles) -> ChatTemplate:
        path = files.directory / "chat_template.jinja"
        source = path.read_text() if path.is_file() else files.tokenizer_config.get("chat_template")
        if isinstance(source, list):
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
        return cls(source or DEFAULT_TEMPLATE, files.special_token("bos_token"), files.special_token("eos_token"))

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt for `messages`, ending where the assistant's answer starts."""
        try:
            return self.template.render(messages=messages, add_generation_prompt=True, bos_token=self.bos_token,
                                        eos_token=self.eos_token)
        except jinja2.TemplateError as exc:
            raise invalid(f"messages: the chat template refused them: {exc}") from None
