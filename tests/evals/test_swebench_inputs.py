"""SWE-bench instances as published: JSON, JSONL and parquet files, Hugging Face datasets (from the
local cache without a network, a clear error without one), built-in names, and the selection flags."""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evals.datasets import BUILTIN_DATASETS, DatasetError, parse_hf_name
from evals.suite import SuiteError, load_suite, load_tasks, select

CLI = [sys.executable, "-m", "agent", "eval"]
ROWS = [
    {
        "repo": "psf/requests",
        "instance_id": f"psf__requests-{number}",
        "base_commit": f"{number:040x}",
        "patch": "diff --git a/requests/x.py b/requests/x.py\n",
        "test_patch": "diff --git a/tests/test_x.py b/tests/test_x.py\n",
        "problem_statement": f"Issue {number}.",
        "hints_text": "",
        "created_at": "2024-01-01T00:00:00Z",
        "version": "2.0",
        # As the published datasets store them: JSON-encoded strings.
        "FAIL_TO_PASS": json.dumps([f"tests/test_x.py::test_{number}"]),
        "PASS_TO_PASS": json.dumps(["tests/test_x.py::test_ok"]),
        "environment_setup_commit": "e" * 40,
    }
    for number in range(100, 110)
]
IDS = [row["instance_id"] for row in ROWS]


def write_all_formats(folder):
    folder.mkdir(exist_ok=True)
    (folder / "list.json").write_text(json.dumps(ROWS))
    (folder / "by_id.json").write_text(json.dumps({row["instance_id"]: row for row in ROWS}))
    (folder / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    pq.write_table(pa.Table.from_pylist(ROWS), folder / "rows.parquet")
    return folder


def records(path) -> list[dict]:
    return [task.to_record() for task in load_tasks(path)]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket is closed


def no_hub(tmp_path) -> dict[str, str]:
    """An environment in which the hub cannot be reached and the Hugging Face cache is empty."""
    return {
        "HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_OFFLINE": "",
        "HTTPS_PROXY": "",
        "https_proxy": "",
        "ALL_PROXY": "",
        "all_proxy": "",
    }


def test_json_jsonl_and_parquet_files_of_swebench_rows_load_identically(tmp_path):
    folder = write_all_formats(tmp_path / "formats")
    expected = records(folder / "list.json")
    assert [r["instance_id"] for r in expected] == IDS
    assert expected[0]["FAIL_TO_PASS"] == ["tests/test_x.py::test_100"]  # the JSON strings are parsed
    assert expected[0]["environment_setup_commit"] == "e" * 40
    for name in ("by_id.json", "rows.jsonl", "rows.parquet"):
        assert records(folder / name) == expected, name
    only_parquet = tmp_path / "dir"
    only_parquet.mkdir()
    (only_parquet / "rows.parquet").write_bytes((folder / "rows.parquet").read_bytes())
    assert records(only_parquet) == expected  # a directory of parquet files is a suite too


def test_parquet_values_json_cannot_hold_become_strings(tmp_path):
    row = {**ROWS[0], "created_at": datetime.datetime(2024, 5, 6, 7, 8, 9)}
    pq.write_table(pa.Table.from_pylist([row]), tmp_path / "one.parquet")
    [task] = load_tasks(tmp_path / "one.parquet")
    assert task.created_at == "2024-05-06T07:08:09"
    json.dumps(task.to_record())  # what `eval run` saves in tasks.jsonl


def test_a_broken_parquet_file_is_a_suite_error_naming_it(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(SuiteError, match=r"bad\.parquet: not a readable parquet file"):
        load_tasks(bad)


def test_selection_filters_by_id_then_shuffles_with_the_seed_then_slices(tmp_path):
    tasks = load_tasks(write_all_formats(tmp_path / "f") / "rows.jsonl")
    assert [t.instance_id for t in select(tasks, None, slice_spec="0:3")] == IDS[:3]
    assert [t.instance_id for t in select(tasks, None, slice_spec="-2:")] == IDS[-2:]
    assert [t.instance_id for t in select(tasks, None, slice_spec="::4")] == IDS[::4]
    shuffled = [t.instance_id for t in select(tasks, None, shuffle_seed=7)]
    assert sorted(shuffled) == sorted(IDS) and shuffled != IDS
    assert [t.instance_id for t in select(tasks, None, shuffle_seed=7)] == shuffled  # deterministic
    assert [t.instance_id for t in select(tasks, None, shuffle_seed=7, slice_spec=":4")] == shuffled[:4]
    named = [IDS[5], IDS[1], IDS[8]]
    chosen = select(tasks, [",".join(named)], slice_spec="1:")
    assert [t.instance_id for t in chosen] == [IDS[5], IDS[8]]  # ids keep the file's order, then the slice


@pytest.mark.parametrize("bad", ["5", "a:b", "1:2:0", "1:2:3:4", "", "50:60"])
def test_bad_slices_are_suite_errors(tmp_path, bad):
    suite = write_all_formats(tmp_path / "f") / "rows.jsonl"
    with pytest.raises(SuiteError, match="--slice"):
        load_suite(suite, slice_spec=bad)


def test_bad_selection_flags_exit_2_before_anything_runs(tmp_path):
    suite = write_all_formats(tmp_path / "f") / "rows.jsonl"
    output = str(tmp_path / "out")
    result = cli("run", str(suite), "--agent", "gold", "-o", output, "--slice", "1:x")
    assert result.returncode == 2 and "--slice '1:x'" in result.stderr
    result = cli("validate", str(suite), "--slice", "0:0")
    assert result.returncode == 2 and "selects no task" in result.stderr
    result = cli("run", str(suite), "--agent", "gold", "-o", output, "--shuffle", "x")
    assert result.returncode == 2
    assert not (tmp_path / "out").exists()


def test_builtin_dataset_names_resolve_to_the_published_datasets():
    assert {name: parse_hf_name(name) for name in BUILTIN_DATASETS} == {
        "swe-bench-lite": ("princeton-nlp/SWE-bench_Lite", "test"),
        "swe-bench-verified": ("princeton-nlp/SWE-bench_Verified", "test"),
        "swe-bench": ("princeton-nlp/SWE-bench", "test"),
    }
    assert parse_hf_name("hf:SWE-bench/SWE-bench_Lite:dev") == ("SWE-bench/SWE-bench_Lite", "dev")
    for bad in ("hf:", "hf::test", "hf:a/b/c", "hf:a/b:te st"):
        with pytest.raises(DatasetError, match="not a dataset name"):
            parse_hf_name(bad)


def test_hf_datasets_without_a_network_exit_2_with_what_to_do(tmp_path):
    env = no_hub(tmp_path)
    output = str(tmp_path / "out")
    result = cli("run", "hf:princeton-nlp/SWE-bench_Lite:dev", "--agent", "gold", "-o", output, env=env)
    assert result.returncode == 2, result.stderr
    assert "no network to reach the Hugging Face Hub" in result.stderr
    assert "princeton-nlp/SWE-bench_Lite (split 'dev')" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    result = cli("run", "swe-bench-verified", "--agent", "gold", "-o", output, env=env)
    assert result.returncode == 2 and "princeton-nlp/SWE-bench_Verified (split 'test')" in result.stderr
    assert "pypi-fixes" in cli("run", "no-such-suite", "--agent", "gold", "-o", output).stderr


def test_a_dataset_in_the_local_hugging_face_cache_is_read_without_a_network(tmp_path):
    env = no_hub(tmp_path)
    snapshot = tmp_path / "hf-home" / "hub" / "datasets--princeton-nlp--SWE-bench_Lite"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("0" * 40)
    data = snapshot / "snapshots" / ("0" * 40) / "data"
    data.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(ROWS[:4]), data / "test-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(ROWS[4:]), data / "dev-00000-of-00001.parquet")
    script = (
        "import json, sys; from evals.suite import load_suite; "
        "print(json.dumps([t.instance_id for t in load_suite(sys.argv[1], shuffle_seed=1, slice_spec='0:3')]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "swe-bench-lite"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    expected = [
        t.instance_id for t in select(load_tasks_from_rows(tmp_path, ROWS[:4]), None, shuffle_seed=1)
    ][:3]
    assert json.loads(result.stdout) == expected


def load_tasks_from_rows(tmp_path, rows):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    return load_tasks(path)


@pytest.mark.parametrize(
    ("missing", "suite", "message"),
    [
        ("datasets", "hf:princeton-nlp/SWE-bench_Lite", "needs `datasets`"),
        ("pyarrow", "rows.parquet", "reading parquet needs pyarrow"),
    ],
)
def test_without_the_extra_the_error_names_it(tmp_path, missing, suite, message):
    folder = write_all_formats(tmp_path / "f")
    script = (
        f"import sys; sys.modules[{missing!r}] = None; sys.modules[{missing + '.parquet'!r}] = None\n"
        "from evals.suite import SuiteError, load_tasks\n"
        "try:\n    load_tasks(sys.argv[1])\nexcept SuiteError as e:\n    print(e)\n"
    )
    argument = str(folder / suite) if suite.endswith(".parquet") else suite
    result = subprocess.run(
        [sys.executable, "-c", script, argument],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **no_hub(tmp_path)},
    )
    assert message in result.stdout and "pip install 'mmx-agent[swebench]'" in result.stdout, result.stderr


# Prepares the cache `datasets` leaves after loading a hub dataset once: the same arrow files and
# dataset_info.json, made here by its parquet builder and placed where a hub download puts them.
PREPARE_DATASETS_CACHE = """
import shutil, sys
from pathlib import Path
import datasets
parquet, cache = sys.argv[1], Path(sys.argv[2])
datasets.load_dataset("parquet", data_files={"test": parquet}, split="test", cache_dir=str(cache / "built"))
[built] = (cache / "built" / "parquet").glob("default-*/0.0.0/*/dataset_info.json")
target = cache / "princeton-nlp___swe-bench_verified" / "default" / "0.0.0" / "0123abcd"
target.mkdir(parents=True)
shutil.copy(built, target / "dataset_info.json")
shutil.copy(built.parent / "parquet-test.arrow", target / "swe-bench_verified-test.arrow")
"""


def test_a_dataset_that_datasets_cached_earlier_is_read_without_a_network(tmp_path):
    env = {**os.environ, **no_hub(tmp_path), "HF_HUB_OFFLINE": "1"}
    folder = write_all_formats(tmp_path / "f")
    cache = tmp_path / "hf-home" / "datasets"
    prepare = [sys.executable, "-c", PREPARE_DATASETS_CACHE, str(folder / "rows.parquet"), str(cache)]
    prepared = subprocess.run(prepare, capture_output=True, text=True, timeout=120, env=env)
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    env["HF_HUB_OFFLINE"] = ""  # the run finds out by itself that there is no network
    script = "import sys; from evals.suite import load_tasks; print(len(load_tasks(sys.argv[1])))"
    result = subprocess.run(
        [sys.executable, "-c", script, "swe-bench-verified"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [str(len(ROWS))]
