from __future__ import annotations

import pytest

from agent.tools.search.glob_pattern import compile_glob, literal_prefix
from agent.tools.search.tools import GlobTool, LsTool


def glob(ctx, **args):
    return GlobTool().run(args, ctx)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.py", "a.py", True),
        ("*.py", "src/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "src/deep/a.py", True),
        ("src/**", "src/deep/a.py", True),
        ("src/**/test_*.py", "src/test_x.py", True),
        ("src/**/test_*.py", "src/a/b/test_x.py", True),
        ("src/**/test_*.py", "srcx/test_x.py", False),
        ("*.{js,ts}", "app.ts", True),
        ("*.{js,ts}", "app.tsx", False),
        ("**/*.{ts,{m,c}js}", "lib/x.mjs", True),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("[!a]*.py", "b.py", True),
        ("[!a]*.py", "a.py", False),
        ("[a-c].py", "b.py", True),
        ("a+b(c).py", "a+b(c).py", True),
        ("./src/*.py", "src/a.py", True),
    ],
)
def test_glob_syntax(pattern, path, expected):
    assert bool(compile_glob(pattern).match(path)) is expected


def test_literal_prefix():
    assert literal_prefix("src/app/**/*.ts") == "src/app"
    assert literal_prefix("**/*.py") == ""
    assert literal_prefix("docs/*.md") == "docs"
    assert literal_prefix("README.md") == ""


def test_glob_tool_lists_files_and_marks_directories(tricky_ctx):
    result = glob(tricky_ctx, pattern="src/**")
    assert result.ok
    assert result.output.splitlines() == [
        "src/build.py",
        "src/deep/",
        "src/deep/a/",
        "src/deep/a/b/",
        "src/deep/a/b/c.py",
        "src/generated_keep.py",
        "src/main.py",
        "src/space name.py",
        "src/ünï.py",
    ]


def test_glob_tool_skips_hidden_ignored_and_symlinks(tricky_ctx):
    paths = glob(tricky_ctx, pattern="**/*").data["paths"]
    for skipped in ("build/", "debug.log", ".hidden.py", "src/generated_a.py", "link_to_a.py", "link_dir/"):
        assert skipped not in paths
    assert "keep.log" in paths


def test_glob_tool_relative_to_path_and_explicit_hidden_dir(tricky_ctx):
    assert glob(tricky_ctx, pattern="*.py", path="src/deep/a/b").data["paths"] == ["src/deep/a/b/c.py"]
    assert glob(tricky_ctx, pattern=".config/*.py").data["paths"] == [".config/settings.py"]


def test_glob_tool_caps_output(make_ctx):
    ctx = make_ctx({f"f{i:03}.txt": "" for i in range(30)})
    result = glob(ctx, pattern="*.txt", max_results=10)
    assert len(result.data["paths"]) == 10 and result.data["total"] == 30
    assert result.output.endswith("[20 more paths not shown; narrow the pattern or raise max_results]")


def test_glob_tool_errors(tricky_ctx):
    assert not glob(tricky_ctx, pattern="").ok
    assert not glob(tricky_ctx, pattern="*", path="../").ok
    assert "is a file" in glob(tricky_ctx, pattern="*", path="a.py").output
    assert glob(tricky_ctx, pattern="nothing/*.zz").output == "No paths match 'nothing/*.zz'."


def test_ls_marks_dirs_sizes_and_counts_ignored(tricky_ctx):
    result = LsTool().run({}, tricky_ctx)
    assert result.ok
    lines = result.output.splitlines()
    assert ".config/" in lines and "src/" in lines and "a/" in lines
    assert "a.py  9B" in lines
    assert "link_dir@" in lines and "link_to_a.py@" in lines
    assert ".git/" not in lines and ".gitignore  37B" in lines
    ignored_note = lines[-1]
    assert ignored_note.startswith("[5 gitignored entries not shown:")
    for name in ("build/", "debug.log", "excluded_by_git.txt", "ignored_by_dot_ignore.txt", "top_only.txt"):
        assert name in ignored_note
    entry = next(e for e in result.data["entries"] if e["name"] == "a.py")
    assert entry == {"name": "a.py", "type": "file", "size": 9}


def test_ls_subdirectory_uses_nested_ignores(tricky_ctx):
    result = LsTool().run({"path": "src"}, tricky_ctx)
    names = [e["name"] for e in result.data["entries"]]
    assert "generated_keep.py" in names and "generated_a.py" not in names
    assert result.data["ignored"] == ["generated_a.py"]


def test_ls_caps_and_errors(make_ctx):
    ctx = make_ctx({f"d{i:02}/x": "" for i in range(12)})
    result = LsTool().run({"max_entries": 5}, ctx)
    assert result.output.splitlines()[-1] == "[7 more entries not shown]"
    assert not LsTool().run({"path": "d00/x"}, ctx).ok
    assert not LsTool().run({"path": "/etc"}, ctx).ok
