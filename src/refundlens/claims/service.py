"""The service's dependencies in one object, opened from :class:`~refundlens.config.Settings`.

Everything the claims workflow needs — database, blob store, policy, PII cipher,
pseudonymiser, reuse index location — is built here once and passed down; nothing is
built at import time. The web app, the worker and the CLI each open one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..config import Settings
from ..security import PiiCipher, Pseudonymizer, load_or_create_key
from ..store import BlobStore, Database, default_database_url
from .policy import Policy, load_policy

__all__ = ["Service", "open_service"]

log = logging.getLogger(__name__)


@dataclass
class Service:
    settings: Settings
    db: Database
    blobs: BlobStore
    policy: Policy
    cipher: PiiCipher
    pseudonymize: Pseudonymizer
    reuse_index_path: Path
    #: called after a commit that queued jobs, so in-process workers look at once
    wake_workers: Callable[[], None] = field(default=lambda: None)

    def close(self) -> None:
        self.db.dispose()


def open_service(settings: Settings, *, migrate: bool = False) -> Service:
    """Open the data directory and database named by ``settings``.

    Args:
        migrate: apply pending migrations first (the embedded SQLite default does, so
            ``refundlens serve`` needs no set-up); otherwise the schema must be current.

    Raises:
        ConfigError: a setting is not accepted (the policy file, a key).
        DatabaseError: the database cannot be reached or is at an older schema.
    """
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.database_url or default_database_url(data_dir))
    if migrate:
        db.upgrade()
    db.check()
    keys_dir = data_dir / "keys"
    pii_keys = [load_or_create_key(k, name="REFUNDLENS_PII_KEYS", file=None)
                for k in settings.pii_keys] or \
        [load_or_create_key(None, name="REFUNDLENS_PII_KEYS", file=keys_dir / "pii.key")]
    pseudonym_key = load_or_create_key(settings.pseudonym_key or None,
                                       name="REFUNDLENS_PSEUDONYM_KEY",
                                       file=keys_dir / "pseudonym.key")
    return Service(
        settings=settings,
        db=db,
        blobs=BlobStore(data_dir / "blobs"),
        policy=load_policy(settings.policy_file),
        cipher=PiiCipher(*pii_keys),
        pseudonymize=Pseudonymizer(pseudonym_key),
        reuse_index_path=data_dir / "reuse-index",
    )
