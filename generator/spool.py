"""Output files kept in an unlinked temporary file instead of in memory.

A cold render of a large repository gets every model's files from worker processes
(generator/workers.py). Held as bytes until the write, they were a fifth of the
parent's peak memory at 10,000 specs. Spooled, the parent keeps only where each file's
bytes lie and their digest. The write reads each file back once; a whole-build entry
copies them from the spool inside the kernel (wholebuild.store_build()).

The spool is this process's own: created after the workers are forked, unlinked from
the start, closed when nothing refers to it any more.
"""

from __future__ import annotations

import errno
import os
import tempfile
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

from generator.buildcache import Range
from generator.outindex import digest


class Span(NamedTuple):
    """Where one file's bytes lie in a spool, and their outindex.digest()."""

    spool: Spool
    offset: int
    length: int
    digest: bytes


class Spool:
    """An append-only temporary file of output files' bytes."""

    def __init__(self, fd: int | None = None) -> None:
        """A new spool; with `fd`, a read-only view of a file someone else keeps open
        (a whole-build entry, see wholebuild.Latest.seeds())."""
        self.fd = _unnamed_file() if fd is None else fd
        self._writable = fd is None
        if fd is None:
            weakref.finalize(self, os.close, self.fd)  # and so it is gone
        self._end = 0

    def put(self, files: Mapping[str, bytes]) -> SpooledFiles:
        """Append one model's files, in path order (then a model's files are one run of
        the spool, and one run of a whole build's sorted bytes section)."""
        spans, offset, pieces = {}, self._end, []
        for path in sorted(files):
            data = files[path]
            spans[path] = Span(self, offset, len(data), digest(data))
            offset += len(data)
            pieces.append(data)
        self._write(b"".join(pieces))
        return SpooledFiles(spans)

    def append(self, data: bytes) -> Span:
        """Append one piece of bytes (a model's text): where it lies."""
        span = Span(self, self._end, len(data), digest(data))
        self._write(data)
        return span

    def _write(self, data: bytes) -> None:
        if not self._writable:
            raise OSError(errno.EBADF, "a read-only spool")
        left = memoryview(data)
        while left:  # at its own offset: nothing another user of the fd does moves it
            written = os.pwrite(self.fd, left, self._end)
            left, self._end = left[written:], self._end + written

    def read_span(self, span: Span) -> bytes:
        """The bytes of one of this spool's spans."""
        return self.read(span.offset, span.length)

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        while len(data) < length:  # a short read: regular files give them only at the end
            more = os.pread(self.fd, length - len(data), offset + len(data))
            if not more:
                raise OSError(f"the spool ends {length - len(data)} bytes early")
            data += more
        return data


def _unnamed_file() -> int:
    """A new file in the temporary folder that no other process can open by name."""
    folder = tempfile.gettempdir()
    try:
        return os.open(folder, os.O_TMPFILE | os.O_RDWR, 0o600)
    except (AttributeError, OSError):  # not Linux, or a file system without it
        fd, name = tempfile.mkstemp(dir=folder)
        Path(name).unlink()
        return fd


def spool() -> Spool | None:
    """A new spool; None where no temporary file can be made (then bytes stay in memory)."""
    try:
        return Spool()
    except OSError:
        return None


class SpooledFiles(Mapping[str, bytes]):
    """Files whose bytes lie in a spool, each read when asked for (outindex.Digested)."""

    def __init__(self, spans: Mapping[str, Span | bytes]) -> None:
        self._spans = spans

    def spans(self) -> Mapping[str, Span | bytes]:
        """Each file's span, or its bytes where they are held in memory."""
        return self._spans

    def __getitem__(self, path: str) -> bytes:
        found = self._spans[path]
        return found if isinstance(found, bytes) else found.spool.read_span(found)

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)

    def __contains__(self, path: object) -> bool:
        return path in self._spans

    def __eq__(self, other: object) -> bool:
        """Equal to other spooled files of the same paths and digests, none of them read
        (a watcher asks after every batch whether its new tree differs from the last)."""
        if not isinstance(other, SpooledFiles):
            return super().__eq__(other)
        mine, theirs = self._spans, other._spans
        return mine.keys() == theirs.keys() and all(
            _digest_of(found) == _digest_of(theirs[path]) for path, found in mine.items()
        )

    def lengths(self) -> Iterator[tuple[str, int]]:
        """Each file's path and length, none of them read."""
        return ((path, _length_of(found)) for path, found in self._spans.items())

    def digests(self) -> Mapping[str, bytes]:
        """outindex.digest() of each file, none of them read (a view, not a copy)."""
        return _Digests(self._spans)

    def pieces(self) -> Iterator[bytes | Range]:
        """The files' bytes one after the other, as buildcache.write_entry() takes them:
        runs of the spool as one range each, bytes held in memory as they are."""
        run: Range | None = None
        for found in self._spans.values():
            if isinstance(found, bytes):
                if run is not None:
                    yield run
                    run = None
                yield found
                continue
            fd = found.spool.fd
            if run is not None and run[0] == fd and run[1] + run[2] == found.offset:
                run = (fd, run[1], run[2] + found.length)
                continue
            if run is not None:
                yield run
            run = (fd, found.offset, found.length)
        if run is not None:
            yield run


class _Digests(Mapping[str, bytes]):
    def __init__(self, spans: Mapping[str, Span | bytes]) -> None:
        self._spans = spans

    def __getitem__(self, path: str) -> bytes:
        return _digest_of(self._spans[path])

    def __iter__(self) -> Iterator[str]:
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)


def _length_of(found: Span | bytes) -> int:
    return len(found) if isinstance(found, bytes) else found.length


def _digest_of(found: Span | bytes) -> bytes:
    return digest(found) if isinstance(found, bytes) else found.digest


def merged(spooled: Mapping[str, Span | bytes], held: Mapping[str, bytes]) -> SpooledFiles:
    """One tree of spooled files and files held in memory, in path order."""
    both: dict[str, Span | bytes] = {**spooled, **held}
    return SpooledFiles({path: both[path] for path in sorted(both)})
