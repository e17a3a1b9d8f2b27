"""mmx-agent: a terminal coding agent built around the MiniMax-M2 model family."""

__version__ = "0.1.0"
