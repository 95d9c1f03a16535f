"""api key lineage: the first key of each key's rotation chain, for Idempotency-Keys

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lineage', sa.String(length=40), nullable=True))
    # Backfill: follow each rotated key's `replaces` links to the first key of its chain.
    keys = sa.table('api_keys', sa.column('id', sa.String), sa.column('replaces', sa.String),
                    sa.column('lineage', sa.String))
    conn = op.get_bind()
    replaces = dict(conn.execute(sa.select(keys.c.id, keys.c.replaces)).all())
    for key_id, previous in replaces.items():
        if not previous:
            continue
        first, seen = key_id, {key_id}
        while previous and previous not in seen:
            first = previous
            seen.add(previous)
            previous = replaces.get(previous)
        conn.execute(sa.update(keys).where(keys.c.id == key_id).values(lineage=first))


def downgrade() -> None:
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_column('lineage')
