"""M2 tokenizer (byte-level BPE from the checkpoint's tokenizer.json) and incremental detokenization.

Markers such as `]~b]` and `[e~[` are added tokens, so they come out of `encode` as single ids wherever
they appear in the text (the prompt renderer writes them), and no BOS is ever added.
"""

from __future__ import annotations

import codecs
import json
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

EOS = "[e~["  # closes a role block; generation stops here
THINK_END = "</think>"


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of the GPT-2 byte-level alphabet: printable stand-in character -> raw byte."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class M2Tokenizer:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            path = path / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no tokenizer.json")
        self.tok = Tokenizer.from_file(str(path))
        self.vocab_size = self.tok.get_vocab_size(with_added_tokens=True)
        eos = self.tok.token_to_id(EOS)
        if eos is None:
            raise ValueError(f"{path}: the tokenizer has no {EOS!r} token; not an M2 tokenizer")
        self.eos_id = eos
        self.think_end_id = self.tok.token_to_id(THINK_END)
        self._bytes = self._token_bytes(json.loads(path.read_text(encoding="utf-8")))

    def _token_bytes(self, spec: dict) -> list[bytes] | None:
        """id -> the exact bytes it stands for, when the decoder is byte-level (M2's is)."""
        decoder = spec.get("decoder") or {}
        kinds = {decoder.get("type")} | {d.get("type") for d in decoder.get("decoders", [])}
        if "ByteLevel" not in kinds:
            return None
        table = _byte_decoder()
        added = {t["id"]: t["content"] for t in spec.get("added_tokens", [])}
        out: list[bytes] = []
        for i in range(self.vocab_size):
            if i in added:
                out.append(added[i].encode("utf-8"))
                continue
            piece = self.tok.id_to_token(i) or ""
            try:
                out.append(bytes(table[c] for c in piece))
            except KeyError:
                return None
        return out

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=False)

    def token_id(self, token: str) -> int | None:
        return self.tok.token_to_id(token)

    def stream(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Token ids in, text out, one token at a time; never emits half a UTF-8 character.

    With a byte-level vocabulary each id maps to exact bytes and an incremental UTF-8 decoder holds back
    an incomplete sequence. Other vocabularies fall back to re-decoding a short window of ids."""

    def __init__(self, tokenizer: M2Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._ids: list[int] = []
        self._prefix = 0  # fallback: ids before this index are already emitted
        self._read = 0

    def push(self, token_id: int) -> str:
        table = self.tokenizer._bytes
        if table is not None:
            piece = table[token_id] if 0 <= token_id < len(table) else b""
            return self._utf8.decode(piece)
        self._ids.append(token_id)
        done = self.tokenizer.decode(self._ids[self._prefix : self._read])
        text = self.tokenizer.decode(self._ids[self._prefix :])
        if text.endswith("\ufffd") or len(text) <= len(done):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(done) :]

    def flush(self) -> str:
        if self.tokenizer._bytes is not None:
            return self._utf8.decode(b"", final=True)
        rest = self.tokenizer.decode(self._ids[self._prefix :])
        done = self.tokenizer.decode(self._ids[self._prefix : self._read])
        self._prefix = self._read = len(self._ids)
        return rest[len(done) :]
