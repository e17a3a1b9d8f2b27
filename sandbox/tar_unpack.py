"""Unpacking a tar stream we do not trust into a private host directory.

The stream is a container's workspace as the engine archived it, so the names, link targets and
sizes in it are whatever the model made. The rules:

- names stay inside the destination: no absolute paths, no `..`, no empty or `.` components, and
  nothing is ever created beneath a symbolic link or a file (the unpacker tracks what it made
  instead of asking the file system, so no link is followed);
- symbolic links are kept as links with their target text as it is (they are data for git,
  never opened); hard links must point at a file unpacked earlier, and are made as links;
- devices, FIFOs and anything else that is not a file, directory or link are skipped (git could
  not carry them anyway), as is every path with a `.git` component: the model's changes to git's
  own files never reach the host;
- caps on the bytes read, the logical bytes of files (a hard link counts again, a sparse file at
  its full size) and the number of entries; past one, ArchiveTooLarge and nothing more is read.
  Runs of zeros are not written (the file is left sparse), so a sparse file costs no disk.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sandbox.base import SandboxError

CHUNK = 1 << 20


class ArchiveError(SandboxError):
    """The archive has an entry that cannot be unpacked safely."""


class ArchiveTooLarge(ArchiveError):
    """The archive is over one of its caps."""


@dataclass(frozen=True)
class UnpackCaps:
    file_bytes: int  # logical bytes of all files, hard links and sparse files at full size
    entries: int  # members of the archive, of every kind
    stream_bytes: int  # raw bytes read (headers included)


class _CappedStream:
    """A file object over an iterator of chunks that refuses to read past `limit` bytes."""

    def __init__(self, chunks: Iterable[bytes], limit: int):
        self._chunks: Iterator[bytes] = iter(chunks)
        self._chunk = b""
        self._offset = 0  # into _chunk: tarfile reads 10 KiB at a time from 2 MiB chunks
        self._left = limit
        self.limit = limit

    def read(self, size: int) -> bytes:
        pieces: list[bytes] = []
        while size > 0:
            if self._offset == len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._left -= len(chunk)
                if self._left < 0:
                    raise ArchiveTooLarge(f"the archive is larger than {self.limit:,} bytes")
                self._chunk, self._offset = chunk, 0
            piece = self._chunk[self._offset : self._offset + size]
            self._offset += len(piece)
            size -= len(piece)
            pieces.append(piece)
        return b"".join(pieces)


def unpack(chunks: Iterable[bytes], dest: str | os.PathLike[str], *, top: str, caps: UnpackCaps) -> None:
    """Unpacks the members of the tar stream `chunks` under `top` (the archived directory's own
    name) into the existing, empty, private directory `dest`."""
    dest = Path(dest)
    made: dict[str, str] = {"": "dir"}  # relative path -> "dir" | "file" | "other", all we created
    entries = file_bytes = 0
    stream = _CappedStream(chunks, caps.stream_bytes)
    try:
        with tarfile.open(fileobj=stream, mode="r|", errors="surrogateescape") as tar:  # type: ignore[call-overload]
            for member in tar:
                entries += 1
                if entries > caps.entries:
                    raise ArchiveTooLarge(f"the archive has more than {caps.entries:,} entries")
                relative = _relative_name(member.name, top)
                if _in_git_dir(relative):
                    continue
                if member.isfile() or member.islnk():
                    size = member.size if member.isfile() else _linked_size(dest, made, member, top)
                    file_bytes += size
                    if file_bytes > caps.file_bytes:
                        raise ArchiveTooLarge(
                            f"the archive's files add up to more than {caps.file_bytes:,} bytes"
                        )
                _unpack_member(tar, member, relative, dest, made, top)
    except tarfile.TarError as e:
        raise ArchiveError(f"the archive is not a readable tar stream: {e}") from None
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # stops the engine's stream when we gave up early


def _relative_name(name: str, top: str) -> str:
    """`name` relative to `top` ("" for top itself); ArchiveError when it reaches outside."""
    name = name.rstrip("/")
    if name == top:
        return ""
    if not name.startswith(top + "/"):
        raise ArchiveError(f"the archive has an entry outside {top}/: {name!r}")
    relative = name[len(top) + 1 :]
    if any(part in ("", ".", "..") for part in relative.split("/")) or "\0" in relative:
        raise ArchiveError(f"the archive has an entry with an unsafe name: {name!r}")
    return relative


def _in_git_dir(relative: str) -> bool:
    return any(part.lower() == ".git" for part in relative.split("/"))


def _linked_size(dest: Path, made: dict[str, str], member: tarfile.TarInfo, top: str) -> int:
    target = _relative_name(member.linkname, top)
    if made.get(target) != "file":
        raise ArchiveError(f"the archive has a hard link to something it did not hold: {member.linkname!r}")
    return os.lstat(dest / target).st_size


def _unpack_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, relative: str, dest: Path, made: dict[str, str], top: str
) -> None:
    if relative == "":
        return  # the top directory itself is `dest`
    _make_parents(relative, dest, made)
    path = dest / relative
    if made.get(relative) == "dir":
        if member.isdir():
            return
        raise ArchiveError(f"the archive replaces the directory {relative!r} with something else")
    if relative in made:
        os.unlink(path)  # a later entry of the same name wins, as with tar itself
        del made[relative]
    if member.isdir():
        os.mkdir(path, 0o700)
        made[relative] = "dir"
    elif member.isfile():
        source = tar.extractfile(member)
        assert source is not None
        _write_file(path, source, member.size, executable=bool(member.mode & stat.S_IXUSR))
        made[relative] = "file"
    elif member.issym():
        os.symlink(member.linkname, path)  # kept as it is: never resolved, never opened
        made[relative] = "other"
    elif member.islnk():
        target = _relative_name(member.linkname, top)
        os.link(dest / target, path, follow_symlinks=False)
        made[relative] = "file"
    # Devices, FIFOs and other special files are skipped.


def _make_parents(relative: str, dest: Path, made: dict[str, str]) -> None:
    parts = relative.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        parent = "/".join(parts[:depth])
        kind = made.get(parent)
        if kind == "dir":
            continue
        if kind is not None:
            raise ArchiveError(f"the archive has an entry beneath a file or link: {relative!r}")
        os.mkdir(dest / parent, 0o700)
        made[parent] = "dir"


def _write_file(path: Path, source: IO[bytes], size: int, *, executable: bool) -> None:
    """Writes `size` bytes; runs of zeros become holes, so a sparse file stays sparse."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    with os.fdopen(os.open(path, flags, 0o700 if executable else 0o600), "wb") as out:
        left = size
        while left > 0:
            chunk = source.read(min(CHUNK, left))
            if not chunk:
                raise ArchiveError(f"the archive ends inside {path.name!r}")
            left -= len(chunk)
            if chunk.count(0) == len(chunk):
                out.seek(len(chunk), os.SEEK_CUR)
            else:
                out.write(chunk)
        out.truncate(size)
