"""The service's dependencies in one object, opened from :class:`~refundlens.config.Settings`.

Everything the claims workflow needs — database, blob store, policy, PII cipher,
pseudonymiser, reuse index (in the database) — is built here once and passed down; nothing
is built at import time. The web app, the worker and the CLI each open one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Settings, make_data_dir
from ..security import PiiCipher, Pseudonymizer, load_or_create_key
from ..store import BlobStore, Database, default_database_url
from .policy import Policy, load_policy

if TYPE_CHECKING:
    from ..index import ReuseIndex

__all__ = ["LEGACY_REUSE_INDEX", "Service", "open_service"]

log = logging.getLogger(__name__)

#: Where a service kept its reuse index before it moved into the database (migration
#: 0005), under the data directory: a file index of its own per host.
LEGACY_REUSE_INDEX = "reuse-index"


@dataclass
class Service:
    settings: Settings
    db: Database
    blobs: BlobStore
    policy: Policy
    cipher: PiiCipher
    pseudonymize: Pseudonymizer
    #: every analysed photo, in the database (``reuse_photos``); picklable: an analysis
    #: process unpickles it as its own connection to the same table
    reuse_index: "ReuseIndex"

    def close(self) -> None:
        self.reuse_index.close()
        self.db.dispose()


def open_service(settings: Settings, *, migrate: bool = False) -> Service:
    """Open the data directory and database named by ``settings``.

    Args:
        migrate: apply pending migrations first (the embedded SQLite default does, so
            ``refundlens serve`` needs no set-up); otherwise the schema must be current.

    Raises:
        ConfigError: a setting is not accepted (the policy file, a key, a data directory
            that cannot be created).
        DatabaseError: the database cannot be reached or is at an older schema.
    """
    from ..index import ReuseIndex

    data_dir = make_data_dir(settings)
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
    legacy = data_dir / LEGACY_REUSE_INDEX
    if legacy.is_dir():
        log.warning("reuse index: %s is no longer read (since migration 0005 the index is in "
                    "the database, filled from the photos' stored analyses); `refundlens "
                    "reuse import %s` copies what it holds, then it can be deleted", legacy,
                    legacy)
    return Service(
        settings=settings,
        db=db,
        blobs=BlobStore(data_dir / "blobs"),
        policy=load_policy(settings.policy_file),
        cipher=PiiCipher(*pii_keys),
        pseudonymize=Pseudonymizer(pseudonym_key),
        reuse_index=ReuseIndex.in_database(db),
    )
