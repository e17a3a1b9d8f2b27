"""SWE-bench instance rows as published: parquet files, and Hugging Face datasets (`hf:NAME[:SPLIT]`).

JSON and JSONL files are read by suite.py; this module adds the formats that need a library
(pyarrow, datasets: both come with the `swebench` extra) and resolves the built-in dataset names.

A Hugging Face dataset is looked for in this order: without a network (or with HF_HUB_OFFLINE=1),
a copy in the local Hugging Face cache (a snapshot downloaded with `hf download --repo-type dataset`,
or the prepared cache an earlier `datasets.load_dataset` left); with one, `datasets.load_dataset`.
Neither: a DatasetError saying what to do, quickly (the network is probed once, with a short
timeout, instead of letting the hub client retry for half a minute).
"""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

HF_PREFIX = "hf:"
DEFAULT_SPLIT = "test"
BUILTIN_DATASETS = {
    "swe-bench-lite": "hf:princeton-nlp/SWE-bench_Lite:test",
    "swe-bench-verified": "hf:princeton-nlp/SWE-bench_Verified:test",
    "swe-bench": "hf:princeton-nlp/SWE-bench:test",
}
EXTRA_HINT = "install the `swebench` extra: pip install 'mmx-agent[swebench]'"
PROBE_SECONDS = 3.0
DATA_SUFFIXES = (".parquet", ".jsonl", ".json")


class DatasetError(ValueError):
    """The dataset cannot be read; the message says why and what to do."""


def is_dataset_name(name: str) -> bool:
    return name.startswith(HF_PREFIX) or name in BUILTIN_DATASETS


def parse_hf_name(name: str) -> tuple[str, str]:
    """(repository id, split) from `hf:NAME[:SPLIT]` or a built-in name."""
    spec = BUILTIN_DATASETS.get(name, name)[len(HF_PREFIX) :]
    repo_id, _, split = spec.partition(":")
    split = split or DEFAULT_SPLIT
    if not repo_id or repo_id.count("/") > 1 or not split.replace("-", "_").replace(".", "_").isidentifier():
        raise DatasetError(
            f"{name!r} is not a dataset name: use hf:OWNER/NAME[:SPLIT], e.g. hf:princeton-nlp/SWE-bench_Lite:test"
        )
    return repo_id, split


def _jsonable(value: Any) -> Any:
    """Row values as JSON has them (parquet can hold timestamps, bytes, numpy scalars)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "item"):  # numpy scalars
        return _jsonable(value.item())
    return str(value)


def read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(f"{path}: reading parquet needs pyarrow; {EXTRA_HINT}") from None
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DatasetError(f"{path}: not a readable parquet file ({e})") from None
    return [_jsonable(row) for row in rows]


def _network_reachable() -> bool:
    """Whether the hub answers at all (a proxy is trusted: the client will go through it)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=PROBE_SECONDS):
            return True
    except OSError:
        return False


def _snapshot_rows(repo_id: str, split: str) -> list[dict[str, Any]] | None:
    """Rows of `split` from a snapshot in the hub cache, or None when there is none."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        root = Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.name.endswith(DATA_SUFFIXES)
        and (p.name.startswith((f"{split}-", f"{split}.")) or p.parent.name == split)
    )
    if not files:
        return None
    from evals.suite import read_rows  # the same readers as for local files

    return [row for file in files for row, _ in read_rows(file)]


def _datasets_rows(repo_id: str, split: str) -> list[dict[str, Any]]:
    import datasets

    dataset = datasets.load_dataset(repo_id, split=split)
    return [_jsonable(row) for row in dataset]


def load_hf_rows(name: str) -> list[dict[str, Any]]:
    """The rows of a Hugging Face dataset split (see the module docstring for where from)."""
    repo_id, split = parse_hf_name(name)
    online = _network_reachable()
    if not online:
        # Both libraries read this when imported: set before the first import, so that nothing
        # waits on a network that is not there.
        os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import datasets  # noqa: F401
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise DatasetError(f"{name}: loading a Hugging Face dataset needs `datasets`; {EXTRA_HINT}") from None
    if not online:
        rows = _snapshot_rows(repo_id, split)
        if rows is not None:
            return rows
    try:
        return _datasets_rows(repo_id, split)
    except Exception as e:  # the hub client raises many kinds; each becomes one clear line
        if not online:
            raise DatasetError(
                f"{name}: no network to reach the Hugging Face Hub, and no copy of {repo_id} (split "
                f"{split!r}) in the local Hugging Face cache. Download it once where there is a network "
                f"(`hf download --repo-type dataset {repo_id}`, or run this command there), or pass the "
                "instances as a JSON, JSONL or parquet file."
            ) from None
        raise DatasetError(
            f"{name}: cannot load {repo_id} split {split!r}: {type(e).__name__}: {e}"
        ) from None
