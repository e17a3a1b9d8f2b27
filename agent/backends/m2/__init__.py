"""The M2 (and M1) conversation format: messages, prompt rendering, completion parsing."""
