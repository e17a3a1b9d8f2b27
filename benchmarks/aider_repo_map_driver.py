"""Builds aider's repo map once and prints JSON timings. Runs with aider's own venv python
(see repo_map.py); imports nothing of ours.

    python aider_repo_map_driver.py ROOT MAP_TOKENS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> None:
    root, map_tokens = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network here
    from aider.io import InputOutput
    from aider.models import Model
    from aider.repomap import RepoMap

    # The same file list aider's coder would hand over: git's tracked files.
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True)
    files = [os.path.join(root, name) for name in listing.stdout.split("\0") if name]
    model = Model("gpt-4o")
    io = InputOutput(yes=True, pretty=False, fancy_input=False)
    repo_map = RepoMap(map_tokens=map_tokens, root=root, main_model=model, io=io, verbose=False)
    started = time.perf_counter()
    text = repo_map.get_repo_map(chat_files=[], other_files=files) or ""
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"seconds": seconds, "chars": len(text), "tokens": model.token_count(text), "files": len(files)}
        )
    )


if __name__ == "__main__":
    main()
