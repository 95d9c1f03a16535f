"""The database handle: engines, sessions and migrations for SQLite and PostgreSQL.

SQLite (the embedded default) runs in WAL mode with ``synchronous=FULL`` so a committed
claim survives a power cut, and every write transaction starts with ``BEGIN IMMEDIATE``:
SQLite's default deferred transactions let two writers both read the audit head or the same
queued job and then fail (``SQLITE_BUSY``) when they upgrade to write; taking the write lock
up front makes them queue instead (busy timeout 30 s). Writers in one process also queue on
a lock of their own before ``BEGIN IMMEDIATE``: SQLite's busy handler polls with sleeps that
grow to 100 ms, so threads contending for the write lock inside SQLite leave it idle while
they sleep (under 8 concurrent intake requests that put p99 latency past a second); a
Python lock hands it straight to the next writer. Writers in other processes (a separate
``refundlens worker``) still meet at the busy handler. Reads use a second engine whose
transactions stay deferred, so readers never wait on writers (WAL).

PostgreSQL uses one engine; writers that need an order (the audit head, job leases) lock
rows with ``SELECT … FOR UPDATE [SKIP LOCKED]``.

SQLite statements take table hints (``select().with_hint(table, "INDEXED BY ix",
"sqlite")``), which SQLAlchemy's SQLite compiler otherwise drops: SQLite plans without
statistics here (nothing runs ``ANALYZE``), and the review queue names its index.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError, RefundLensError

__all__ = ["Database", "DatabaseError", "default_database_url"]

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class DatabaseError(RefundLensError):
    """The database cannot be reached or is not at the schema this version needs."""

    code = "database_error"


def default_database_url(data_dir: str | Path) -> str:
    """SQLite in ``data_dir`` (the embedded default)."""
    return f"sqlite:///{Path(data_dir).resolve() / 'refundlens.db'}"


class Database:
    """Engines and session factories for one database URL.

    Use :meth:`write` for a transaction that changes rows and :meth:`read` for one that
    only reads; both commit or roll back as a unit.
    """

    def __init__(self, url: str, *, echo: bool = False) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(f"database URL {url!r}: not a URL; expected e.g. "
                              f"sqlite:///path/refundlens.db or "
                              f"postgresql+psycopg://user@host/db") from exc
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        self.url = parsed
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                folder = Path(database).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise ConfigError(f"database URL {url!r}: cannot create its directory "
                                      f"{str(folder)!r} ({exc.strerror}); expected a "
                                      f"directory that exists or can be created") from exc
            self.engine = _sqlite_engine(parsed, immediate=True, echo=echo)
            self.read_engine = _sqlite_engine(parsed, immediate=False, echo=echo)
        elif self.dialect == "postgresql":
            self.engine = create_engine(parsed, echo=echo, pool_pre_ping=True,
                                        pool_size=10, max_overflow=20)
            self.read_engine = self.engine
        else:
            raise ConfigError(f"database URL {url!r}: unsupported backend "
                              f"{self.dialect!r}; accepted: sqlite, postgresql")
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        self._read = sessionmaker(self.read_engine, expire_on_commit=False)
        # SQLite has one writer at a time: queue this process's writers here (see above).
        # Reentrant so a nested write fails as SQLite makes it fail, not by deadlocking.
        self._write_lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.dialect == "sqlite" else contextlib.nullcontext())

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A read-write transaction: commits on success, rolls back on any exception."""
        with self._write_lock, self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def read_rows(self) -> Iterator[Connection]:
        """A read transaction on a Core connection, without an ORM session: for the reads
        on every request's path (the API key, the claim's order)."""
        with self.read_engine.connect() as conn, conn.begin():
            yield conn

    def after_commit(self, callback: Callable[[Session], None]) -> None:
        """Call ``callback(session)`` in the committing thread after each :meth:`write`
        transaction commits."""
        event.listen(self._write, "after_commit", callback)

    def remove_after_commit(self, callback: Callable[[Session], None]) -> None:
        event.remove(self._write, "after_commit", callback)

    def dispose(self) -> None:
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()

    # --- schema --------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Apply the Alembic migrations up to ``revision``.

        Raises:
            DatabaseError: the database cannot be reached, or a migration failed in it.
        """
        from alembic import command

        self._connect().close()  # "cannot connect" apart from a migration that failed
        try:
            command.upgrade(self._alembic_config(), revision)
        except OperationalError as exc:
            raise DatabaseError(f"database {self!r}: upgrade to {revision} failed: "
                                f"{exc.orig}") from exc

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None: no schema yet).

        Raises:
            DatabaseError: the database cannot be reached.
        """
        from alembic.runtime.migration import MigrationContext

        with self._connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _connect(self) -> Connection:
        try:
            return self.engine.connect()
        except OperationalError as exc:
            raise DatabaseError(f"database {self!r}: cannot connect: {exc.orig}") from exc

    def head_revision(self) -> str:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self._alembic_config()).get_current_head()
        assert head is not None
        return head

    def check(self) -> None:
        """Raise :class:`DatabaseError` unless the database answers and is at the head
        revision (the service refuses to start on an old schema rather than fail later)."""
        current = self.current_revision()
        head = self.head_revision()
        if current != head:
            raise DatabaseError(f"database {self!r}: schema revision {current or 'none'}, "
                                f"this version needs {head}; run `refundlens db upgrade`")

    def table_names(self) -> list[str]:
        return inspect(self.engine).get_table_names()

    def _alembic_config(self) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["engine"] = self.engine
        return config

    def ping(self) -> bool:
        try:
            with self.read_engine.connect() as conn:
                conn.execute(text("select 1"))
            return True
        except OperationalError:
            return False


class _HintingSQLiteCompiler(SQLiteCompiler):
    """SQLAlchemy's SQLite compiler, writing a table's hint after its name."""

    def get_from_hint_text(self, table: Any, text: str | None) -> str | None:
        return text


def _sqlite_engine(url: Any, *, immediate: bool, echo: bool) -> Engine:
    engine = create_engine(url, echo=echo, connect_args={"timeout": 30,
                                                        "check_same_thread": False})
    engine.dialect.statement_compiler = _HintingSQLiteCompiler

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, say when a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine
