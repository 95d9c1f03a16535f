"""A throwaway PostgreSQL cluster for the test suite (started by the tests, not assumed).

``REFUNDLENS_TEST_DATABASE_URL`` points the suite at an existing server instead. Without
it, a cluster is created with the Debian ``postgresql`` package's ``initdb`` in a
temporary directory (as the ``postgres`` user when the suite runs as root, which
``initdb`` refuses), listening on 127.0.0.1 and a free port, and stopped at the end.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer"]


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError("PostgreSQL is not installed: the suite tests against a real "
                       "PostgreSQL; install the Debian package `postgresql` (make setup does) "
                       "or set REFUNDLENS_TEST_DATABASE_URL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """``durable``: keep fsync and full-page writes on (benchmarks); the suite turns them
    off, as a throwaway cluster needs no crash safety."""

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.external = os.environ.get("REFUNDLENS_TEST_DATABASE_URL")
        self.dir: Path | None = None
        self.port = 0
        self._as: list[str] = []

    def start(self) -> str:
        """Start the cluster; returns the URL of its ``postgres`` database."""
        if self.external:
            return self.external
        bindir = _bin_dir()
        self.dir = Path(tempfile.mkdtemp(prefix="refundlens-pg-"))
        self.port = _free_port()
        user = "postgres" if os.geteuid() == 0 else None
        if user:
            shutil.chown(self.dir, user)
            self._as = ["runuser", "-u", user, "--"]
        data = self.dir / "data"
        subprocess.run([*self._as, str(bindir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres", "--no-sync", "-E", "UTF8"],
                       check=True, capture_output=True)
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                   "-c max_connections=200")
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        subprocess.run([*self._as, str(bindir / "pg_ctl"), "-D", str(data), "-o", options,
                        "-l", str(self.dir / "log"), "-w", "start"], check=True,
                       capture_output=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        if self.external or self.dir is None:
            return
        subprocess.run([*self._as, str(_bin_dir() / "pg_ctl"), "-D", str(self.dir / "data"),
                        "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
