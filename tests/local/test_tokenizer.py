"""The checkpoint's tokenizer: M2 markers as single tokens, no BOS, UTF-8-safe streaming."""

from __future__ import annotations

import pytest

from agent.backends.local.tokenizer import M2Tokenizer

MARKERS = ["]~!b[", "]~b]", "[e~[", "<think>", "</think>", "<minimax:tool_call>", "</minimax:tool_call>"]
TEXT = (
    "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nLis « café » 日本語 🙂 naïve[e~[\n"
    ']~b]ai\n<think>\nplan\n</think>\n\n<minimax:tool_call>\n<invoke name="bash">\n'
    '<parameter name="cmd">ls</parameter>\n</invoke>\n</minimax:tool_call>[e~['
)


@pytest.fixture(scope="module")
def tok(random_checkpoint):
    return M2Tokenizer(random_checkpoint)


def test_markers_are_single_tokens(tok):
    for marker in MARKERS:
        ids = tok.encode(marker)
        assert len(ids) == 1 and tok.decode(ids) == marker
    ids = tok.encode(TEXT)
    assert ids[0] == tok.token_id("]~!b[")  # nothing added in front: the renderer writes the BOS itself
    assert ids.count(tok.eos_id) == 3
    assert tok.decode(ids) == TEXT


def test_no_prefix_space_and_byte_level(tok):
    assert tok.decode(tok.encode("x")) == "x"
    assert tok.decode(tok.encode("\x00\x7f\u2028 tab\tend")) == "\x00\x7f\u2028 tab\tend"


def test_streaming_never_splits_a_character(tok):
    ids = tok.encode(TEXT)
    assert any("\ufffd" in tok.decode([i]) for i in ids)  # some tokens hold part of a character
    stream = tok.stream()
    pieces = [stream.push(i) for i in ids] + [stream.flush()]
    assert "".join(pieces) == TEXT
    assert not any("\ufffd" in p for p in pieces)


def test_fallback_streaming_for_non_byte_level_vocabularies(random_checkpoint):
    tok = M2Tokenizer(random_checkpoint)
    tok._bytes = None  # what a vocabulary without a byte-level decoder gets: re-decoding a window of ids
    stream = tok.stream()
    pieces = [stream.push(i) for i in tok.encode(TEXT)] + [stream.flush()]
    assert "".join(pieces) == TEXT and not any("\ufffd" in p for p in pieces)
