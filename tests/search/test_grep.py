from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agent.tools.base import ToolContext
from agent.tools.search.grep_engines import MAX_FILE_BYTES, GrepQuery, python_grep, rg_grep
from agent.tools.search.tools import GrepTool, format_grep
from tests.search.conftest import ENGINES, has_rg, require_engine, write_tree


def grep(ctx, engine, **args):
    require_engine(ctx, engine)
    return GrepTool(engine).run(args, ctx)


def matched_paths(result) -> list[str]:
    return sorted({m["path"] for m in result.data["matches"]})


@pytest.mark.parametrize("engine", ENGINES)
def test_skips_what_rg_skips(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern="needle", max_results=500)
    assert result.ok
    paths = matched_paths(result)
    assert paths == [
        "a-b.py",
        "a.py",
        "a/b.py",
        "bom.txt",
        "context.txt",
        "crlf.txt",
        "keep.log",
        "latin1.txt",
        "long.txt",
        "no_newline.txt",
        "src/build.py",
        "src/deep/a/b/c.py",
        "src/generated_keep.py",
        "src/main.py",
        "src/space name.py",
        "src/ünï.py",
        "sub/top_only.txt",
    ]
    assert result.data["engine"] == engine


@pytest.mark.parametrize("engine", ENGINES)
def test_output_groups_by_file_with_line_numbers(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern=r"^needle\(\)|class Needle", path="src/main.py")
    assert result.output == "src/main.py\n7:class Needle:\n9:needle()"
    assert result.data["matches"] == [
        {"path": "src/main.py", "line": 7, "text": "class Needle:"},
        {"path": "src/main.py", "line": 9, "text": "needle()"},
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_context_lines_merge_and_separate(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern="needle", path="context.txt", context=1)
    assert result.output.splitlines() == [
        "context.txt",
        "4-line 4",
        "5:line 5 needle",
        "6-line 6",
        "7:line 7 needle",
        "8-line 8",
        "--",
        "19-line 19",
        "20:line 20 needle",
        "21-line 21",
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_encodings_and_line_endings(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern="needle", glob="*.txt", max_results=500)
    texts = {(m["path"], m["line"]): m["text"] for m in result.data["matches"]}
    assert texts[("bom.txt", 1)] == "needle after bom"
    assert texts[("latin1.txt", 1)] == "caf\ufffd needle"
    assert texts[("crlf.txt", 2)] == "needle two"
    assert texts[("no_newline.txt", 2)] == "needle last"
    assert texts[("long.txt", 1)].endswith("…[+707 chars]")


@pytest.mark.parametrize("engine", ENGINES)
def test_truncation_note_counts_what_is_hidden(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern="needle", max_results=3)
    assert len(result.data["matches"]) == 3
    total = result.data["total_matches"]
    assert total == 21
    assert f"[{total - 3} more matches not shown ({total} in 17 files)" in result.output


@pytest.mark.parametrize("engine", ENGINES)
def test_glob_include_and_exclude(tricky_ctx, engine):
    only_py = grep(tricky_ctx, engine, pattern="needle", glob="*.py", max_results=500)
    assert all(p.endswith(".py") for p in matched_paths(only_py))
    # As with rg -g, a glob that names a file wins over .gitignore and the hidden rule.
    anchored = grep(tricky_ctx, engine, pattern="needle", glob="src/*.py", max_results=500)
    assert matched_paths(anchored) == [
        "src/build.py",
        "src/generated_a.py",
        "src/generated_keep.py",
        "src/main.py",
        "src/space name.py",
        "src/ünï.py",
    ]
    assert ".hidden.py" in matched_paths(grep(tricky_ctx, engine, pattern="needle", glob="*.py"))
    not_src = grep(tricky_ctx, engine, pattern="needle", glob="!src", max_results=500)
    assert not any(p.startswith("src/") for p in matched_paths(not_src))
    assert "a.py" in matched_paths(not_src)


@pytest.mark.parametrize("engine", ENGINES)
def test_explicit_path_searches_hidden_and_ignored(tricky_ctx, engine):
    assert grep(tricky_ctx, engine, pattern="needle", path="debug.log").data["total_matches"] == 1
    assert matched_paths(grep(tricky_ctx, engine, pattern="needle", path=".config")) == [
        ".config/settings.py"
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_ignore_case_and_regex_classes(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern=r"^needle\w*\s*=", path="src/deep", ignore_case=True)
    assert [m["line"] for m in result.data["matches"]] == [2, 3]
    sensitive = grep(tricky_ctx, engine, pattern=r"^needle\w*\s*=", path="src/deep")
    assert [m["line"] for m in sensitive.data["matches"]] == [3]


@pytest.mark.parametrize("engine", ENGINES)
def test_bad_input_is_reported(tricky_ctx, engine):
    bad_regex = grep(tricky_ctx, engine, pattern="needle(")
    assert not bad_regex.ok and "invalid regex" in bad_regex.output
    assert not grep(tricky_ctx, engine, pattern="x", path="../outside").ok
    assert "symlink" in grep(tricky_ctx, engine, pattern="x", path="link_to_outside.txt").output
    assert "does not exist" in grep(tricky_ctx, engine, pattern="x", path="nope").output
    assert not grep(tricky_ctx, engine, pattern="").ok


@pytest.mark.parametrize("engine", ENGINES)
def test_no_matches(tricky_ctx, engine):
    result = grep(tricky_ctx, engine, pattern="zzz_not_there")
    assert (
        result.ok and result.output == "No matches for 'zzz_not_there'." and result.data["total_matches"] == 0
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_fifo_in_the_tree_is_skipped_not_waited_on(make_ctx, engine):
    ctx = make_ctx({"a.txt": "needle\n"})
    os.mkfifo(Path(ctx.root) / "pipe.txt")  # no writer: opening it for reading would block
    result = grep(ctx, engine, pattern="needle")
    assert result.ok and matched_paths(result) == ["a.txt"]


PARITY_QUERIES = [
    {"pattern": "needle", "max_results": 1000},
    {"pattern": "needle", "context": 2, "max_results": 1000},
    {"pattern": "needle", "max_results": 4, "context": 3},
    {"pattern": r"^$"},
    {"pattern": r"x*", "max_results": 7},
    {"pattern": r"\bneedle\b", "ignore_case": True},
    {"pattern": r"[A-Z]{3,}"},
    {"pattern": r"(one|two)$"},
    {"pattern": "needle", "glob": "!*.txt"},
    {"pattern": "needle", "glob": "**/a/*.py"},
    {"pattern": "needle", "glob": "*.log"},
    {"pattern": "needle", "glob": "build/*.py"},
    {"pattern": "needle", "glob": ".config/*"},
    {"pattern": "needle", "path": "src"},
    {"pattern": "line \\d+ needle", "path": "context.txt", "context": 6},
]


@pytest.mark.parametrize("args", PARITY_QUERIES, ids=lambda a: repr(a))
def test_rg_and_python_agree(tricky_ctx, args):
    require_engine(tricky_ctx, "rg")
    with_rg = GrepTool("rg").run(args, tricky_ctx)
    with_python = GrepTool("python").run(args, tricky_ctx)
    assert with_rg.output == with_python.output
    assert {**with_rg.data, "engine": None} == {**with_python.data, "engine": None}


def test_auto_engine_checks_for_rg_once(tricky_ctx):
    tool = GrepTool()
    first = tool.run({"pattern": "needle"}, tricky_ctx)
    assert first.data["engine"] == ("rg" if has_rg(tricky_ctx) else "python")
    tricky_ctx.rg_available = False  # the cached answer is what decides
    assert tool.run({"pattern": "needle"}, tricky_ctx).data["engine"] == "python"


@pytest.mark.parametrize("engine", ENGINES)
def test_output_size_is_capped(make_ctx, engine):
    ctx = make_ctx({f"f{i}.txt": "".join(f"needle {n} {'y' * 290}\n" for n in range(300)) for i in range(3)})
    result = grep(ctx, engine, pattern="needle", max_results=2000)
    shown = len(result.data["matches"])
    assert 100 < shown < 900 and result.data["total_matches"] == 900
    assert len(result.output) < 50_200
    assert result.output.endswith(
        f"[{900 - shown} more matches not shown (900 in 3 files); the output size limit was reached]"
    )


def test_auto_engine_falls_back_to_python_when_the_sandbox_has_no_rg(tmp_path, make_sandbox):
    root = write_tree(tmp_path / "ws", {"a.py": "needle\n", "b.txt": "no\n"})
    # In the workspace (a hidden directory, which grep skips): a confined sandbox's private /tmp
    # would hide the rest of tmp_path from its commands.
    only_bash = root / ".bin"
    only_bash.mkdir()
    (only_bash / "bash").symlink_to(shutil.which("bash"))
    sandbox = make_sandbox(root)
    sandbox.env["PATH"] = str(only_bash)  # for its commands: a sandbox without rg, whatever the host has
    result = GrepTool().run({"pattern": "needle"}, ToolContext(sandbox))
    assert result.ok and result.data["engine"] == "python"
    assert result.data["matches"] == [{"path": "a.py", "line": 1, "text": "needle"}]


# -- hostile trees: FIFOs, huge files, huge lines, floods of matches ----------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_fifo_named_explicitly_is_refused_not_waited_on(make_ctx, engine):
    ctx = make_ctx({"a.txt": "needle\n"})
    os.mkfifo(Path(ctx.root) / "pipe.txt")  # no writer: rg would block on it until its timeout
    (Path(ctx.root) / "alias.txt").symlink_to("pipe.txt")
    for path in ("pipe.txt", "alias.txt"):
        result = grep(ctx, engine, pattern="needle", path=path)
        assert not result.ok and "is not a regular file" in result.output


@pytest.mark.parametrize("engine", ENGINES)
def test_files_over_the_size_cap_are_not_searched(make_ctx, engine):
    ctx = make_ctx({"a.txt": "needle\n", "big.log": "needle\n" * (MAX_FILE_BYTES // 7 + 1)})
    with open(Path(ctx.root) / "sparse.bin", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB and sparse; the link to it is a few bytes long
    (Path(ctx.root) / "small.txt").symlink_to("sparse.bin")
    result = grep(ctx, engine, pattern="needle", glob="*")
    assert result.ok and matched_paths(result) == ["a.txt"] and result.data["total_matches"] == 1
    for path, size in (("big.log", "52 MB"), ("small.txt", "1074 MB")):
        result = grep(ctx, engine, pattern="needle", path=path)
        assert not result.ok and f"is {size}, more than the 50 MiB grep reads" in result.output


@pytest.mark.parametrize("engine", ENGINES)
def test_a_huge_line_comes_back_cut_to_its_start(make_ctx, engine):
    # One 20 MB line of matches once cost rg --json about 1 GB of memory (every match is a JSON object).
    ctx = make_ctx({"one_line.txt": "needle " * 3_000_000 + "\n", "b.txt": "x\nneedle b\n"})
    result = grep(ctx, engine, pattern="needle")
    assert result.data["total_matches"] == 2
    assert result.data["matches"][1] == {
        "path": "one_line.txt",
        "line": 1,
        "text": ("needle " * 43)[:300] + "…[long line cut]",
    }
    assert result.data["matches"][0] == {"path": "b.txt", "line": 2, "text": "needle b"}


@pytest.mark.parametrize("engine", ENGINES)
def test_a_flood_of_matches_reads_only_what_is_shown(make_ctx, engine):
    ctx = make_ctx({"flood.txt": "needle\n" * 300_000, "z.txt": "needle z\n"})
    result = grep(ctx, engine, pattern="needle", max_results=5, context=2)
    assert result.data["total_matches"] == 300_001
    assert result.output.startswith(
        "flood.txt\n1:needle\n2:needle\n3:needle\n4:needle\n5:needle\n6:needle\n7:needle"
    )
    assert "[299996 more matches not shown (300001 in 2 files)" in result.output


@pytest.mark.parametrize("engine", ENGINES)
def test_the_output_budget_stops_reading_and_says_so(make_ctx, engine):
    ctx = make_ctx(
        {f"f{i:02}.txt": "".join(f"needle {i} {n} {'y' * 150}\n" for n in range(5)) for i in range(30)}
    )
    require_engine(ctx, engine)
    root = ctx.root
    query = GrepQuery(
        pattern="needle", target=root, target_is_file=False, max_results=2000, output_budget=10_000
    )
    outcome = (rg_grep if engine == "rg" else python_grep)(ctx.sandbox, root, query)
    assert outcome.cut and outcome.total_matches == 150
    kept = sum(len(found.lines) for found in outcome.files)
    assert 0 < kept < 80  # about 10 KB of 170-byte lines
    assert all(list(found.lines) == sorted(found.lines) for found in outcome.files)
    result = format_grep(outcome, query)
    assert result.data["cut"] and "[the search stopped reading lines after 10,000 bytes" in result.output
    uncut = (rg_grep if engine == "rg" else python_grep)(
        ctx.sandbox, root, GrepQuery(pattern="needle", target=root, target_is_file=False, max_results=2000)
    )
    assert not uncut.cut and sum(len(found.lines) for found in uncut.files) == 150
