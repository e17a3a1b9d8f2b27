"""Remote backends: MiniMax's API, OpenAI-style and Anthropic-style endpoints, raw completions.

Start at presets.make_backend; http.py holds what they share (retries, keys, the round loop).
"""

from agent.backends.remote.presets import BACKEND_KINDS, make_backend

__all__ = ["BACKEND_KINDS", "make_backend"]
