"""The official chat templates as test oracles, rendered with jinja2 the way serving stacks do."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jinja2

# The templates are carried in the repository (tests/fixtures/m2/README.md names their source).
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "m2"


class TemplateRejected(Exception):
    pass


def _raise(message: str) -> None:
    raise TemplateRejected(message)


@cache
def _template(name: str) -> jinja2.Template:
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda value, ensure_ascii=False, **_: json.dumps(value, ensure_ascii=False)
    env.globals["raise_exception"] = _raise
    return env.from_string((FIXTURES / name).read_text(encoding="utf-8"))


def render_official(messages, tools=None, *, dialect="m2", add_generation_prompt=True) -> str:
    name = "chat_template.jinja" if dialect == "m2" else "chat_template_m1.jinja"
    kwargs = {"messages": messages, "add_generation_prompt": add_generation_prompt}
    if tools is not None:
        kwargs["tools"] = tools
    return _template(name).render(**kwargs)
