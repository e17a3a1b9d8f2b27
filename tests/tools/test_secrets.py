"""Redaction of credential-looking environment values."""

from agent.secrets import redact, redact_data, secret_values


def test_credential_names_are_matched_case_insensitively():
    env = {
        "OPENAI_API_KEY": "sk-aaaaaaaa",
        "github_token": "ghp_bbbbbbbb",
        "Client_Secret": "cccccccc",
        "DB_PASSWORD": "dddddddd",
        "PATH": "/usr/bin:/bin",
        "EDITOR": "vim-eeeeee",
    }
    assert set(secret_values(env).values()) == {
        "OPENAI_API_KEY",
        "github_token",
        "Client_Secret",
        "DB_PASSWORD",
    }


def test_short_values_are_left_alone():
    assert redact("use true and 12345", {"USE_TOKEN": "true", "PIN_KEY": "12345"}) == "use true and 12345"


def test_longest_values_are_replaced_first():
    env = {"SHORT_KEY": "abcdef", "LONG_KEY": "abcdef-and-more"}
    assert redact("x abcdef-and-more y abcdef", env) == "x [REDACTED:LONG_KEY] y [REDACTED:SHORT_KEY]"


def test_nested_data_is_redacted():
    env = {"API_TOKEN": "t0k3n-value"}
    data = {"a": ["t0k3n-value", 3, {"b": "x t0k3n-value"}], "n": None}
    assert redact_data(data, env) == {
        "a": ["[REDACTED:API_TOKEN]", 3, {"b": "x [REDACTED:API_TOKEN]"}],
        "n": None,
    }


# -- every form, every cut --------------------------------------------------------------------

import hypothesis.strategies as st  # noqa: E402
from hypothesis import assume, given, settings  # noqa: E402

from agent.secrets import Redactor  # noqa: E402
from sandbox.local import CappedOutput  # noqa: E402
from tests.secret_forms import SECRET, all_forms_text, forms, leaks  # noqa: E402


def test_every_encoded_form_is_redacted():
    redactor = Redactor({SECRET: "API_KEY"})
    text = redactor.redact("before\n" + all_forms_text() + "after")
    assert leaks(text) == []
    assert text.startswith("before\n[REDACTED:API_KEY]\n") and text.endswith("after")


@settings(max_examples=150, deadline=None)
@given(
    secret=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=6, max_size=40
    ).filter(lambda s: len(s.strip()) >= 6),
    before=st.text(max_size=20),
)
def test_forms_of_any_secret_are_redacted(secret, before):
    shown = forms(secret)
    assume(not any(form in "[REDACTED:K]\n" for form in shown.values()))
    assume(not any(form in before for form in shown.values()))
    redacted = Redactor({secret: "K"}).redact(before + "\n" + "\n".join(shown.values()))
    assert [name for name, form in shown.items() if form in redacted] == []


def test_the_backend_key_is_secret_whatever_its_variable_is_called():
    redactor = Redactor.for_environment({"MY_VAR": "plain-value-123"}, extra={"MY_VAR": "plain-value-123"})
    assert redactor.redact("x plain-value-123 y") == "x [REDACTED:MY_VAR] y"
    assert (
        Redactor.for_environment({"MY_VAR": "plain-value-123"}).redact("plain-value-123") == "plain-value-123"
    )


def test_a_secret_cut_at_the_head_or_the_tail_shows_no_piece():
    """Every position of the secret across each cut of a 200-byte cap (100 head, 100 tail)."""
    redactor = Redactor({SECRET: "K"})
    size = len(SECRET.encode())
    for offset in range(-size - 2, 3):
        for where in ("head", "tail"):
            capped = CappedOutput(200, redactor)
            data = SECRET.encode()
            if where == "head":
                stream = b"a" * (100 + offset) + data + b"b" * 400
            else:
                stream = b"a" * 400 + data + b"b" * (100 - size - offset)
            for i in range(0, len(stream), 7):  # in pieces, as a pipe delivers it
                capped.add(stream[i : i + 7])
            text = capped.text()
            assert leaks(text, prefix=2) == [], (where, offset, text)
            assert "bytes elided" in text


def test_a_whole_secret_at_the_end_is_not_taken_for_a_cut_one():
    redactor = Redactor({"abcabc": "K"})
    assert redactor.unfinished_end("x abcabc") == len("x abcabc")
    assert redactor.unfinished_end("x abcabcab") == len("x abcabc")
    assert redactor.unfinished_start("bcabc y") == len("bcabc")


def test_output_below_the_cap_is_redacted_whole():
    capped = CappedOutput(10_000, Redactor({SECRET: "K"}))
    capped.add(f"x {SECRET} y".encode())
    assert capped.text() == "x [REDACTED:K] y"


def test_a_stream_holds_back_what_may_begin_a_secret():
    redactor = Redactor({SECRET: "K"})
    stream = redactor.stream()
    text = f"say {SECRET} and {SECRET[:5]} then stop"
    pieces = [stream.feed(c) for c in text] + [stream.flush()]
    assert "".join(pieces) == f"say [REDACTED:K] and {SECRET[:5]} then stop"
    assert all(SECRET[:3] not in piece for piece in pieces[: text.index(" and")])


def test_text_cut_by_a_tool_marker_drops_what_may_be_a_secret():
    redactor = Redactor({SECRET: "K"})
    cut = redactor.trim_cut(f"line {SECRET[:9]}... [line cut: 40 more characters]\nnext", "... [line cut: ")
    assert cut == "line ... [line cut: 40 more characters]\nnext"


def test_each_line_of_a_multi_line_secret_is_secret():
    body = ["MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"]
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n"
    redactor = Redactor.for_environment({"TLS_KEY": pem})
    shown = redactor.redact(
        "     1\t-----BEGIN PRIVATE KEY-----\n     2\t" + body[0] + "\n     3\t" + body[1]
    )
    assert body[0] not in shown and body[1] not in shown and "-----BEGIN PRIVATE KEY-----" in shown
