"""Content-addressed blob store: every upload kept byte-for-byte under its sha256.

A blob is written to a temporary file in the same directory, flushed and fsynced, then
renamed into place, so a crash leaves either the whole blob or nothing under its name.
Writing the same bytes twice is a no-op; a blob is never modified in place. Blobs are
fanned out over two levels of directories (``ab/cd/abcd…``) so no directory grows past a
few thousand entries at millions of photos.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..errors import RefundLensError

__all__ = ["BlobNotFound", "BlobStore"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BlobNotFound(RefundLensError):
    """No blob with that sha256 in the store."""

    code = "blob_not_found"


class BlobStore:
    """Blobs on the local disk under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"BlobStore({str(self.root)!r})"

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise BlobNotFound(f"blob {sha256!r}: not a sha256 (expected 64 lowercase hex digits)")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes) -> str:
        """Store ``data`` durably; returns its sha256 (hex)."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.exists() and target.stat().st_size == len(data):
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
