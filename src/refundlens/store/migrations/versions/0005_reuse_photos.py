"""reuse photos: the service's reuse index in the database, shared by every worker and host

Before this revision each host kept its reuse index in a SQLite file under its data
directory (``<data_dir>/reuse-index``). The analysed photos' hashes are also in their
stored analyses (``claim_photos.analysis``, the reuse detector's info), so an existing
deployment's index is rebuilt from the database, all hosts' photos at once: when there are
analysed photos, this migration queues one ``backfill_reuse_index`` job, which a worker runs
in short batches (``refundlens reuse backfill`` runs it in the foreground).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
import refundlens.store.tables


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reuse_photos',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('hash_version', sa.SmallInteger(), nullable=False),
    sa.Column('h_full', sa.BigInteger(), nullable=True),
    sa.Column('h_mirrored', sa.BigInteger(), nullable=True),
    sa.Column('h_crop92', sa.BigInteger(), nullable=True),
    sa.Column('h_crop84', sa.BigInteger(), nullable=True),
    sa.Column('h_crop76', sa.BigInteger(), nullable=True),
    sa.Column('fine', sa.LargeBinary(), nullable=True),
    sa.Column('added_at', refundlens.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('reuse_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reuse_photos_sha256'), ['sha256'], unique=False)

    conn = op.get_bind()
    photos = sa.table('claim_photos', sa.column('analysis', sa.JSON()))
    analysed = conn.execute(sa.select(sa.literal(1)).select_from(photos)
                            .where(photos.c.analysis.is_not(None)).limit(1)).first()
    if analysed:
        jobs = sa.table('jobs', sa.column('kind', sa.String), sa.column('payload', sa.JSON()),
                        sa.column('status', sa.String), sa.column('attempts', sa.Integer),
                        sa.column('max_attempts', sa.Integer),
                        sa.column('run_after', refundlens.store.tables.UTCDateTime()),
                        sa.column('created_at', refundlens.store.tables.UTCDateTime()))
        now = datetime.now(timezone.utc)
        conn.execute(sa.insert(jobs).values(kind='backfill_reuse_index', payload={},
                                            status='queued', attempts=0, max_attempts=5,
                                            run_after=now, created_at=now))


def downgrade() -> None:
    with op.batch_alter_table('reuse_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reuse_photos_sha256'))

    op.drop_table('reuse_photos')
