"""Redaction of credential-looking environment values."""

from agent.tools.secrets import redact, redact_data, secret_values


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
