"""Content-addressed blob store: every upload kept byte-for-byte under its sha256.

A blob is written to a temporary file in the same directory, flushed and fsynced, then
renamed into place, so a crash leaves either the whole blob or nothing under its name.
Writing the same bytes twice is a no-op; a blob is never modified in place. Blobs are
fanned out over two levels of directories (``ab/cd/abcd…``) so no directory grows past a
few thousand entries at millions of photos.

Blobs are written *before* the rows that name them are committed, so a request that fails
(or a process killed) in between leaves a blob no row names. Nothing deletes blobs on the
request path — another request may be storing the same bytes at that moment. Instead
:meth:`BlobStore.sweep` removes blobs that no row names and that nobody has stored for a
grace period; every :meth:`put` of bytes already present refreshes the blob's time, which
is what makes the sweep safe against a request storing those bytes while it runs (see
:meth:`sweep`).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..errors import RefundLensError

__all__ = ["BlobNotFound", "BlobStore", "SweepReport"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRASH_PREFIX = ".sweep-"

#: Threads writing one request's blobs: their fsyncs overlap (the GIL is released).
_WRITERS = ThreadPoolExecutor(max_workers=4, thread_name_prefix="blob-write")


class BlobNotFound(RefundLensError):
    """No blob with that sha256 in the store."""

    code = "blob_not_found"


@dataclass(frozen=True)
class SweepReport:
    """What one :meth:`BlobStore.sweep` did."""

    examined: int
    removed: int
    removed_bytes: int
    kept_in_use: int

    def to_dict(self) -> dict[str, int]:
        return {"examined": self.examined, "removed": self.removed,
                "removed_bytes": self.removed_bytes, "kept_in_use": self.kept_in_use}


class BlobStore:
    """Blobs on the local disk under ``root`` (a shared file system for several hosts)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise BlobNotFound(f"blob {sha256!r}: not a sha256 (expected 64 lowercase hex digits)")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes, *, sha256: str | None = None) -> str:
        """Store ``data`` durably; returns its sha256 (hex).

        Args:
            sha256: the digest of ``data`` when the caller already computed it.
        """
        sha = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if _touch(target, len(data)):
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)
        return sha

    def put_many(self, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Store several ``(sha256, bytes)`` at once, their writes and fsyncs overlapping."""
        if len(blobs) == 1:
            self.put(blobs[0][1], sha256=blobs[0][0])
            return
        futures = [_WRITERS.submit(self.put, data, sha256=sha) for sha, data in blobs]
        for future in futures:
            future.result()

    def get(self, sha256: str) -> bytes:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256}: not in the store at {self.root}") from None

    def exists(self, sha256: str) -> bool:
        try:
            return self.path(sha256).exists()
        except BlobNotFound:
            return False

    def sweep(self, in_use: Callable[[list[str]], set[str]], *, grace_s: float,
              batch: int = 500) -> SweepReport:
        """Remove blobs that no row names and that nobody stored in the last ``grace_s``.

        ``in_use(shas)`` returns those of ``shas`` that committed rows name. A request
        stores its blobs (each :meth:`put` refreshing the time of one already there)
        before it commits its rows, so a blob can be in use by a commit that happens
        after ``in_use`` looked. Hence, per candidate: it is renamed aside (from then on
        a :meth:`put` of it writes a new copy), and if its time moved past the cutoff
        before that rename — someone stored it meanwhile — it is put back; only then is
        it deleted. Stray temporary files of killed writers older than the grace period
        go too. ``grace_s`` must exceed the longest request (minutes; a day by default).
        """
        cutoff = time.time() - grace_s
        examined = removed = removed_bytes = kept = 0
        for chunk in _chunks(self._old_blobs(cutoff), batch):
            examined += len(chunk)
            used = in_use([sha for sha, _ in chunk])
            kept += len(used)
            for sha, path in chunk:
                if sha in used:
                    continue
                size = _remove_unless_touched(path, cutoff)
                if size is not None:
                    removed += 1
                    removed_bytes += size
        return SweepReport(examined, removed, removed_bytes, kept)

    def _old_blobs(self, cutoff: float) -> Iterator[tuple[str, Path]]:
        if not self.root.is_dir():
            return
        for first in sorted(self.root.iterdir()):
            if not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                if not second.is_dir():
                    continue
                for entry in os.scandir(second):
                    try:
                        mtime = entry.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if mtime >= cutoff:
                        continue
                    if entry.name.startswith((".tmp-", _TRASH_PREFIX)):
                        Path(entry.path).unlink(missing_ok=True)  # a killed writer's
                    elif _SHA256.match(entry.name):
                        yield entry.name, Path(entry.path)


def _touch(target: Path, size: int) -> bool:
    """Refresh ``target``'s time if it is there whole; False if it must be written."""
    try:
        if target.stat().st_size != size:
            return False
        os.utime(target)
        return True
    except FileNotFoundError:
        return False


def _remove_unless_touched(path: Path, cutoff: float) -> int | None:
    """Delete ``path`` unless it was stored again after ``cutoff``; its size if deleted."""
    aside = path.with_name(_TRASH_PREFIX + path.name)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    stat = aside.stat()
    if stat.st_mtime >= cutoff:
        # stored again while we looked: put it back (unless a new copy is already there)
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
        aside.unlink()
        return None
    aside.unlink()
    return stat.st_size


def _chunks(items: Iterable[tuple[str, Path]], size: int) -> Iterator[list[tuple[str, Path]]]:
    chunk: list[tuple[str, Path]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: the directory entry lives in the directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
