"""Storage: the claims database (SQLAlchemy 2; SQLite by default, PostgreSQL in
production), its Alembic migrations, and the content-addressed blob store."""

from .blobs import BlobStore
from .db import Database, default_database_url

__all__ = ["BlobStore", "Database", "default_database_url"]
