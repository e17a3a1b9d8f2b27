"""Placeholder: filled in shortly."""

TOOLS: list = []
