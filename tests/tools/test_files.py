"""read_file, write_file, edit_file, multi_edit on real files, and the workspace boundary."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agent.tools.files import MAX_READ_BYTES, EditFile, MultiEdit, ReadFile, WriteFile

read, write, edit, multi = ReadFile(), WriteFile(), EditFile(), MultiEdit()


def _untouched(path: Path):
    """A check that the file kept its bytes and its mtime."""
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    return lambda: (path.read_bytes(), path.stat().st_mtime_ns) == before


# -- read_file --------------------------------------------------------------------------------


def test_read_numbers_lines_like_cat_n(ctx, workspace):
    (workspace / "a.py").write_text("import os\n\nprint(os.sep)\n")
    result = read.run({"path": "a.py"}, ctx)
    assert result.ok
    assert result.output == "     1\timport os\n     2\t\n     3\tprint(os.sep)"
    assert result.data == {"path": "a.py", "total_lines": 3, "start_line": 1, "end_line": 3}


def test_read_pages_with_offset_and_limit_and_says_how_to_continue(ctx, workspace):
    (workspace / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    result = read.run({"path": "long.txt", "offset": 10, "limit": 5}, ctx)
    assert result.output.splitlines()[:5] == [f"{n:6}\tline {n}" for n in range(10, 15)]
    assert "showing lines 10-14 of 100; continue with offset=15" in result.output
    past = read.run({"path": "long.txt", "offset": 101}, ctx)
    assert not past.ok and "past the end" in past.output and "100 lines" in past.output


def test_read_caps_long_lines_and_total_output(ctx, workspace):
    (workspace / "wide.txt").write_text("y" * 5000 + "\n")
    assert "[line cut: 3000 more characters]" in read.run({"path": "wide.txt"}, ctx).output
    (workspace / "big.txt").write_text("".join(f"{i:099d}\n" for i in range(3000)))
    result = read.run({"path": "big.txt"}, ctx)
    assert "output capped at about 100 KB" in result.output
    assert f"continue with offset={result.data['end_line'] + 1}" in result.output


def test_read_refuses_files_over_the_size_cap_without_reading_them(ctx, workspace):
    with open(workspace / "huge.bin", "wb") as f:
        f.truncate(MAX_READ_BYTES + 1)  # sparse: costs no disk
    result = read.run({"path": "huge.bin"}, ctx)
    assert not result.ok and "larger than" in result.output and "sed -n" in result.output


def test_read_detects_binary_files(ctx, workspace):
    (workspace / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    result = read.run({"path": "img.png"}, ctx)
    assert not result.ok and "binary file" in result.output and result.data["binary"]


def test_read_shows_undecodable_bytes_as_replacement_characters_with_a_note(ctx, workspace):
    (workspace / "latin1.txt").write_bytes("café\nnaïve\n".encode("latin-1"))
    result = read.run({"path": "latin1.txt"}, ctx)
    assert result.ok
    assert "caf\ufffd" in result.output
    assert "not valid UTF-8: 2 undecodable byte sequence(s)" in result.output


def test_read_empty_missing_and_directory(ctx, workspace):
    (workspace / "empty.txt").write_text("")
    (workspace / "config.yaml").write_text("x")
    (workspace / "src").mkdir()
    assert read.run({"path": "empty.txt"}, ctx).output == "(empty.txt is empty)"
    missing = read.run({"path": "config.yml"}, ctx)
    assert (
        not missing.ok and "file not found: config.yml" in missing.output and "config.yaml" in missing.output
    )
    directory = read.run({"path": "src"}, ctx)
    assert not directory.ok and "is a directory" in directory.output


def test_read_refuses_a_fifo_instead_of_waiting_for_a_writer(ctx, workspace):
    os.mkfifo(workspace / "pipe")
    result = read.run({"path": "pipe"}, ctx)
    assert not result.ok and "not a regular file" in result.output


def test_read_crlf_file_shows_clean_lines(ctx, workspace):
    (workspace / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    assert read.run({"path": "win.txt"}, ctx).output == "     1\tone\n     2\ttwo"


# -- write_file -------------------------------------------------------------------------------


def test_write_creates_parents_and_reports(ctx, workspace):
    result = write.run({"path": "pkg/sub/mod.py", "content": "x = 1\ny = 2\n"}, ctx)
    assert result.ok and result.data["created"]
    assert "created pkg/sub/mod.py (2 lines" in result.output
    assert (workspace / "pkg/sub/mod.py").read_text() == "x = 1\ny = 2\n"


def test_write_overwrites_and_keeps_the_mode(ctx, workspace):
    script = workspace / "run.sh"
    script.write_text("#!/bin/sh\necho old\n")
    script.chmod(0o755)
    result = write.run({"path": "run.sh", "content": "#!/bin/sh\necho new\n"}, ctx)
    assert result.ok and not result.data["created"] and "overwrote" in result.output
    assert script.read_text().endswith("echo new\n")
    assert stat.S_IMODE(script.stat().st_mode) == 0o755


def test_write_refuses_a_directory(ctx, workspace):
    (workspace / "src").mkdir()
    result = write.run({"path": "src", "content": "x"}, ctx)
    assert not result.ok and "is a directory" in result.output


# -- edit_file --------------------------------------------------------------------------------


def test_edit_exact_unique_match(ctx, workspace):
    (workspace / "m.py").write_text("def f():\n    return 1\n")
    result = edit.run({"path": "m.py", "old": "return 1", "new": "return 2"}, ctx)
    assert result.ok and result.data["strategies"] == ["exact"]
    assert (workspace / "m.py").read_text() == "def f():\n    return 2\n"
    assert "     2\t    return 2" in result.output


def test_edit_ambiguous_match_is_refused_with_line_numbers_unless_replace_all(ctx, workspace):
    path = workspace / "m.py"
    path.write_text("x = 0\ny = 0\nx = 0\n")
    same = _untouched(path)
    result = edit.run({"path": "m.py", "old": "x = 0", "new": "x = 1"}, ctx)
    assert not result.ok and "matches 2 places" in result.output and "lines 1, 3" in result.output
    assert "replace_all" in result.output and same()
    result = edit.run({"path": "m.py", "old": "x = 0", "new": "x = 1", "replace_all": True}, ctx)
    assert result.ok and result.data["replacements"] == 2
    assert path.read_text() == "x = 1\ny = 0\nx = 1\n"


def test_edit_not_found_leaves_the_file_untouched_and_shows_the_closest_region(ctx, workspace):
    path = workspace / "calc.py"
    path.write_text(
        "import math\n\n\ndef area(r):\n    return math.pi * r ** 2\n\n\ndef other():\n    pass\n"
    )
    same = _untouched(path)
    result = edit.run(
        {"path": "calc.py", "old": "def area(radius):\n    return math.pi * r**2", "new": "x"}, ctx
    )
    assert not result.ok and same()
    assert "not found" in result.output
    assert "closest region is lines 4-5" in result.output
    assert "     4\tdef area(r):" in result.output
    assert "-def area(radius):" in result.output and "+def area(r):" in result.output
    assert "The file was not changed." in result.output


def test_edit_fallback_ignoring_trailing_whitespace_is_reported(ctx, workspace):
    path = workspace / "t.py"
    path.write_text("a = 1   \nb = 2\t\nc = 3\n")
    result = edit.run({"path": "t.py", "old": "a = 1\nb = 2\n", "new": "a = 10\nb = 20\n"}, ctx)
    assert result.ok and result.data["strategies"] == ["ignoring trailing whitespace"]
    assert "no exact match; matched ignoring trailing whitespace" in result.output
    assert path.read_text() == "a = 10\nb = 20\nc = 3\n"


def test_edit_fallback_reindents_new_when_the_model_lost_indentation(ctx, workspace):
    path = workspace / "cls.py"
    path.write_text("class A:\n    def f(self):\n        if x:\n            return 1\n        return 2\n")
    old = "if x:\n    return 1\nreturn 2"
    new = "if x:\n    return 10\nelse:\n    return 20"
    result = edit.run({"path": "cls.py", "old": old, "new": new}, ctx)
    assert result.ok and result.data["strategies"] == ["ignoring indentation"]
    assert path.read_text() == (
        "class A:\n    def f(self):\n        if x:\n            return 10\n        else:\n            return 20\n"
    )


def test_edit_fallback_removes_indentation_when_the_model_added_some(ctx, workspace):
    path = workspace / "flat.py"
    path.write_text("def g():\n    return 1\n")
    result = edit.run(
        {"path": "flat.py", "old": "    def g():\n        return 1", "new": "    def g():\n        return 3"},
        ctx,
    )
    assert result.ok and result.data["strategies"] == ["ignoring indentation"]
    assert path.read_text() == "def g():\n    return 3\n"


def test_edit_fallback_line_trimmed_takes_new_as_given(ctx, workspace):
    path = workspace / "mixed.py"
    path.write_text("if a:\n\tb()\n  c()\n")
    result = edit.run({"path": "mixed.py", "old": "if a:\n    b()\n    c()", "new": "if a:\n    d()"}, ctx)
    assert result.ok and result.data["strategies"] == ["ignoring whitespace around each line"]
    assert path.read_text() == "if a:\n    d()\n"


def test_edit_fuzzy_ambiguity_is_an_error(ctx, workspace):
    path = workspace / "dup.py"
    path.write_text("x = 1  \ny = 2\nx = 1 \n")
    result = edit.run({"path": "dup.py", "old": "x = 1\n", "new": "x = 5\n"}, ctx)
    assert not result.ok and "matches 2 places (ignoring trailing whitespace)" in result.output


def test_edit_deleting_lines_with_empty_new(ctx, workspace):
    path = workspace / "d.txt"
    path.write_text("keep\ndrop me  \nkeep too\n")
    assert edit.run({"path": "d.txt", "old": "drop me\n", "new": ""}, ctx).ok
    assert path.read_text() == "keep\nkeep too\n"


def test_edit_keeps_crlf_line_endings(ctx, workspace):
    path = workspace / "win.txt"
    path.write_bytes(b"alpha\r\nbeta\r\ngamma\r\n")
    assert edit.run({"path": "win.txt", "old": "beta\ngamma", "new": "BETA\nGAMMA"}, ctx).ok
    assert path.read_bytes() == b"alpha\r\nBETA\r\nGAMMA\r\n"


def test_edit_preserves_undecodable_bytes_elsewhere_in_the_file(ctx, workspace):
    path = workspace / "legacy.txt"
    path.write_bytes(b"caf\xe9\nvalue = 1\n")
    assert edit.run({"path": "legacy.txt", "old": "value = 1", "new": "value = 2"}, ctx).ok
    assert path.read_bytes() == b"caf\xe9\nvalue = 2\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"old": "", "new": "x"}, "`old` is empty"),
        ({"old": "same", "new": "same"}, "identical"),
    ],
)
def test_edit_rejects_useless_edits(ctx, workspace, args, message):
    (workspace / "f.txt").write_text("same\n")
    result = edit.run({"path": "f.txt", **args}, ctx)
    assert not result.ok and message in result.output


def test_edit_refuses_binary_and_missing_files(ctx, workspace):
    (workspace / "blob.bin").write_bytes(b"\x00\x01abc")
    assert "binary file" in edit.run({"path": "blob.bin", "old": "abc", "new": "x"}, ctx).output
    assert "file not found" in edit.run({"path": "nope.py", "old": "a", "new": "b"}, ctx).output


def test_edit_keeps_the_mode(ctx, workspace):
    path = workspace / "tool.sh"
    path.write_text("echo a\n")
    path.chmod(0o700)
    assert edit.run({"path": "tool.sh", "old": "echo a", "new": "echo b"}, ctx).ok
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


# -- multi_edit -------------------------------------------------------------------------------


def test_multi_edit_applies_in_sequence_and_writes_once(ctx, workspace):
    path = workspace / "m.py"
    path.write_text("a = 1\nb = 2\n")
    edits = [{"old": "a = 1", "new": "a = 10"}, {"old": "a = 10\nb = 2", "new": "a = 10\nb = 20"}]
    result = multi.run({"path": "m.py", "edits": edits}, ctx)
    assert result.ok and result.data["strategies"] == ["exact", "exact"]
    assert "edit 1:" in result.output and "edit 2:" in result.output
    assert path.read_text() == "a = 10\nb = 20\n"


def test_multi_edit_is_all_or_nothing(ctx, workspace):
    path = workspace / "m.py"
    path.write_text("a = 1\nb = 2\n")
    same = _untouched(path)
    edits = [{"old": "a = 1", "new": "a = 10"}, {"old": "c = 3", "new": "c = 30"}, {"old": "b", "new": "B"}]
    result = multi.run({"path": "m.py", "edits": edits}, ctx)
    assert not result.ok and "edit 2 of 3 failed" in result.output and "not changed" in result.output
    assert same()


# -- the workspace boundary -------------------------------------------------------------------


def test_paths_outside_the_workspace_are_refused(ctx, workspace, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    for path in ["../secret.txt", str(secret), "sub/../../secret.txt"]:
        assert not read.run({"path": path}, ctx).ok
        result = write.run({"path": path, "content": "pwned"}, ctx)
        assert not result.ok and "outside the workspace" in result.output
    assert secret.read_text() == "outside"


def test_symlinks_that_escape_the_workspace_are_refused(ctx, workspace, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("outside")
    (workspace / "link.txt").symlink_to(outside / "data.txt")
    (workspace / "dirlink").symlink_to(outside)
    for path in ["link.txt", "dirlink/data.txt", "dirlink/new.txt"]:
        result = write.run({"path": path, "content": "pwned"}, ctx)
        assert not result.ok and "symlink" in result.output
        assert not read.run({"path": path}, ctx).ok
        assert not edit.run({"path": path, "old": "outside", "new": "pwned"}, ctx).ok
    assert (outside / "data.txt").read_text() == "outside"
    assert sorted(os.listdir(outside)) == ["data.txt"]


def test_absolute_paths_inside_and_symlinks_within_the_workspace_are_fine(ctx, workspace):
    (workspace / "real.txt").write_text("inside\n")
    (workspace / "alias.txt").symlink_to("real.txt")
    assert read.run({"path": str(workspace / "real.txt")}, ctx).ok
    assert edit.run({"path": "alias.txt", "old": "inside", "new": "changed"}, ctx).ok
    assert (workspace / "alias.txt").is_symlink()
    assert (workspace / "real.txt").read_text() == "changed\n"
