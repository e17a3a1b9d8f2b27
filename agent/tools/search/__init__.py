"""The search tools (tools.py: grep, glob, ls), grep's two engines (ripgrep and pure Python), glob
patterns, and the ignore rules all of them share with the repo map."""
