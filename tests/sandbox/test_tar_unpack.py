"""tar_unpack against hostile archives: real tar streams written with tarfile, real files on disk, and
canaries outside the destination that must stay as they are."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from sandbox.tar_unpack import ArchiveError, ArchiveTooLarge, UnpackCaps, unpack

ROOMY = UnpackCaps(file_bytes=1 << 30, entries=1000, stream_bytes=2 << 30)


def _member(name: str, kind: bytes = tarfile.REGTYPE, *, data: bytes = b"", link: str = "", size=None):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    info.size = len(data) if size is None else size
    return info, data


def _tar(*members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buffer.getvalue()


def _chunks(data: bytes, size: int = 4096):
    return (data[i : i + size] for i in range(0, len(data), size))


@pytest.fixture
def arena(tmp_path: Path):
    """(dest, outside): an empty destination, and a canary directory beside it."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "canary").write_text("original\n")
    return dest, outside


def _fresh(parent: Path, name: str) -> Path:
    directory = parent / name
    directory.mkdir()
    return directory


def _outside_unchanged(outside: Path) -> bool:
    return (
        sorted(p.name for p in outside.iterdir()) == ["canary"]
        and (outside / "canary").read_text() == "original\n"
    )


def test_files_directories_links_and_modes_come_out_as_archived(arena):
    dest, _ = arena
    tool = _member("ws/bin/tool", data=b"#!/bin/sh\n")
    tool[0].mode = 0o755
    archive = _tar(
        _member("ws", tarfile.DIRTYPE),
        _member("ws/bin", tarfile.DIRTYPE),
        tool,
        _member("ws/a.txt", data=b"a\n"),
        _member("ws/passwd", tarfile.SYMTYPE, link="/etc/passwd"),
        _member("ws/up", tarfile.SYMTYPE, link="../../.."),
        _member("ws/again.txt", tarfile.LNKTYPE, link="ws/a.txt"),
        _member("ws/deep/er/file", data=b"implicit parents\n"),
    )
    unpack(_chunks(archive), dest, top="ws", caps=ROOMY)
    assert (dest / "a.txt").read_bytes() == b"a\n"
    assert os.access(dest / "bin/tool", os.X_OK) and not os.access(dest / "a.txt", os.X_OK)
    assert os.readlink(dest / "passwd") == "/etc/passwd"  # kept as a link, never resolved
    assert os.readlink(dest / "up") == "../../.."
    assert os.stat(dest / "again.txt").st_ino == os.stat(dest / "a.txt").st_ino
    assert (dest / "deep/er/file").read_bytes() == b"implicit parents\n"


@pytest.mark.parametrize(
    "name",
    [
        "/etc/cron.d/evil",
        "ws/../outside/canary",
        "ws/a/../../outside/canary",
        "other/file",
        "ws//x",
        "ws/./x",
    ],
)
def test_names_that_reach_outside_are_refused(arena, name):
    dest, outside = arena
    with pytest.raises(ArchiveError):
        unpack(_chunks(_tar(_member(name, data=b"pwned\n"))), dest, top="ws", caps=ROOMY)
    assert _outside_unchanged(outside)


def test_nothing_is_written_through_a_symbolic_link(arena):
    dest, outside = arena
    for trick in (
        [_member("ws/link", tarfile.SYMTYPE, link=str(outside)), _member("ws/link/canary", data=b"pwned\n")],
        [_member("ws/link", tarfile.SYMTYPE, link="../outside"), _member("ws/link/new", data=b"pwned\n")],
        [_member("ws/file", data=b"x"), _member("ws/file/below", data=b"pwned\n")],
    ):
        for entry in dest.iterdir():
            entry.unlink()
        with pytest.raises(ArchiveError, match="beneath a file or link"):
            unpack(_chunks(_tar(*trick)), dest, top="ws", caps=ROOMY)
        assert _outside_unchanged(outside)


def test_a_symbolic_link_over_an_earlier_file_is_a_link_and_the_file_is_not_followed(arena):
    dest, outside = arena
    archive = _tar(
        _member("ws/x", tarfile.SYMTYPE, link=str(outside / "canary")),
        _member("ws/x", data=b"pwned\n"),  # a later entry of the same name replaces the link
    )
    unpack(_chunks(archive), dest, top="ws", caps=ROOMY)
    assert (dest / "x").read_bytes() == b"pwned\n" and not (dest / "x").is_symlink()
    assert _outside_unchanged(outside)


@pytest.mark.parametrize("target", ["/etc/passwd", "ws/../outside/canary", "ws/missing", "ws/link"])
def test_hard_links_only_to_files_unpacked_earlier(arena, target):
    dest, outside = arena
    archive = _tar(
        _member("ws/link", tarfile.SYMTYPE, link="/etc/passwd"),
        _member("ws/hard", tarfile.LNKTYPE, link=target),
    )
    with pytest.raises(ArchiveError):
        unpack(_chunks(archive), dest, top="ws", caps=ROOMY)
    assert _outside_unchanged(outside)
    assert os.stat("/etc/passwd").st_nlink == 1


def test_devices_fifos_and_git_directories_are_skipped(arena):
    dest, _ = arena
    archive = _tar(
        _member("ws/null", tarfile.CHRTYPE),
        _member("ws/disk", tarfile.BLKTYPE),
        _member("ws/pipe", tarfile.FIFOTYPE),
        _member("ws/.git", tarfile.DIRTYPE),
        _member("ws/.git/config", data=b"[core]\n\tfsmonitor = touch /tmp/pwned\n"),
        _member("ws/sub/.GIT/hooks/pre-commit", data=b"#!/bin/sh\n"),
        _member("ws/kept", data=b"k"),
    )
    unpack(_chunks(archive), dest, top="ws", caps=ROOMY)
    assert sorted(p.name for p in dest.iterdir()) == ["kept"]


def test_a_directory_cannot_be_replaced_by_a_file(arena):
    dest, _ = arena
    archive = _tar(_member("ws/d", tarfile.DIRTYPE), _member("ws/d", data=b"x"))
    with pytest.raises(ArchiveError, match="replaces the directory"):
        unpack(_chunks(archive), dest, top="ws", caps=ROOMY)


def test_caps_on_entries_file_bytes_and_stream_bytes(tmp_path):
    many = _tar(*(_member(f"ws/f{i}", data=b"") for i in range(50)))
    dest = _fresh(tmp_path, "many")
    with pytest.raises(ArchiveTooLarge, match="more than 10 entries"):
        unpack(_chunks(many), dest, top="ws", caps=UnpackCaps(1 << 20, entries=10, stream_bytes=1 << 30))
    assert len(list(dest.iterdir())) == 10  # stopped at the cap

    big = _tar(_member("ws/a", data=b"a" * 4000), _member("ws/b", data=b"b" * 4000))
    with pytest.raises(ArchiveTooLarge, match="more than 6,000 bytes"):
        unpack(_chunks(big), _fresh(tmp_path, "big"), top="ws", caps=UnpackCaps(6000, 10, 1 << 30))

    # A hard link counts again: git reads the content once per name.
    links = (_member(f"ws/l{i}", tarfile.LNKTYPE, link="ws/one") for i in range(3))
    linked = _tar(_member("ws/one", data=b"x" * 4000), *links)
    with pytest.raises(ArchiveTooLarge):
        unpack(_chunks(linked), _fresh(tmp_path, "linked"), top="ws", caps=UnpackCaps(10_000, 10, 1 << 30))


def test_the_stream_cap_stops_reading_early(arena):
    dest, _ = arena
    archive = _tar(_member("ws/big", data=b"z" * 200_000))
    read = []

    def chunks():
        for chunk in _chunks(archive):
            read.append(len(chunk))
            yield chunk

    with pytest.raises(ArchiveTooLarge, match="larger than 50,000 bytes"):
        unpack(chunks(), dest, top="ws", caps=UnpackCaps(file_bytes=1 << 30, entries=10, stream_bytes=50_000))
    assert sum(read) <= 50_000 + 4096


def test_runs_of_zeros_are_left_as_holes(arena):
    dest, _ = arena
    size = 64 << 20
    archive = _tar(_member("ws/sparse", data=b"\0" * size), _member("ws/after", data=b"data"))
    unpack(_chunks(archive, 1 << 20), dest, top="ws", caps=ROOMY)
    written = dest / "sparse"
    assert written.stat().st_size == size
    assert written.stat().st_blocks * 512 < size // 16  # not written out: a sparse 1 GB file costs no disk
    with written.open("rb") as f:
        assert f.read(1 << 20) == b"\0" * (1 << 20)
    assert (dest / "after").read_bytes() == b"data"


def test_a_truncated_or_corrupt_stream_is_an_archive_error(tmp_path):
    archive = _tar(_member("ws/file", data=b"x" * 10_000))
    with pytest.raises(ArchiveError):
        unpack(_chunks(archive[:5000]), _fresh(tmp_path, "truncated"), top="ws", caps=ROOMY)
    with pytest.raises(ArchiveError):
        unpack(_chunks(b"\x01" * 2048), _fresh(tmp_path, "garbage"), top="ws", caps=ROOMY)
