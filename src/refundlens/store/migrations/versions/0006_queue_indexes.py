"""queue indexes: the review queue read in its order, reason codes by code, merchants by name

Before this revision a queue page sorted every waiting claim to show 50 (the ORDER BY put
NULLs last with ``NULLS LAST``, which no index on SQLite can give), and the filter by
reason code searched the text of every photo's stored analysis. This revision adds:

- ``ix_claims_waiting``: waiting claims (in review, appealed) in the queue's order —
  deadline then risk, NULLs placed by ``IS NULL`` keys — with the filtered columns, and
  ``ix_claims_waiting_merchant``, the same by merchant;
- ``photo_codes``: each photo's finding codes, one row each, filled here from the stored
  analyses in batches (one pass over ``claim_photos``) and from then on by the analysis;
- ``ix_merchants_name``: the console's merchant choices by name.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    op.create_table('photo_codes',
    sa.Column('photo_id', sa.String(length=40), nullable=False),
    sa.Column('code', sa.String(length=60), nullable=False),
    sa.Column('claim_id', sa.String(length=40), nullable=False),
    sa.ForeignKeyConstraint(['claim_id'], ['claims.id'], ),
    sa.ForeignKeyConstraint(['photo_id'], ['claim_photos.id'], ),
    sa.PrimaryKeyConstraint('photo_id', 'code')
    )
    waiting = sa.text("status IN ('in_review', 'appealed')")
    with op.batch_alter_table('photo_codes', schema=None) as batch_op:
        batch_op.create_index('ix_photo_codes_code', ['code', 'claim_id'], unique=False)
    queue = [sa.text('(review_due_at IS NULL)'), 'review_due_at', sa.text('(risk_score IS NULL)'),
             sa.text('risk_score DESC'), 'id', 'status', 'risk_level', 'created_at']
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.create_index('ix_claims_waiting', queue, unique=False,
                              sqlite_where=waiting, postgresql_where=waiting)
        batch_op.create_index('ix_claims_waiting_merchant', ['merchant_id', *queue],
                              unique=False, sqlite_where=waiting, postgresql_where=waiting)
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.create_index('ix_merchants_name', ['name', 'id'], unique=False)
    _fill_photo_codes(op.get_bind())


def _fill_photo_codes(conn: sa.Connection) -> None:
    """The codes of the findings of every analysed photo, ``BATCH`` photos at a time."""
    photos = sa.table('claim_photos', sa.column('id', sa.String), sa.column('claim_id', sa.String),
                      sa.column('analysis', sa.JSON()))
    codes = sa.table('photo_codes', sa.column('photo_id', sa.String), sa.column('code', sa.String),
                     sa.column('claim_id', sa.String))
    last = ''
    while True:
        rows = conn.execute(sa.select(photos.c.id, photos.c.claim_id, photos.c.analysis)
                            .where(photos.c.id > last, photos.c.analysis.is_not(None))
                            .order_by(photos.c.id).limit(BATCH)).all()
        if not rows:
            return
        found = [{'photo_id': photo_id, 'claim_id': claim_id, 'code': code}
                 for photo_id, claim_id, analysis in rows if isinstance(analysis, dict)
                 for code in sorted({f.get('code') for f in analysis.get('findings') or []
                                     if isinstance(f, dict) and f.get('code')})]
        if found:
            conn.execute(sa.insert(codes), found)
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table('merchants', schema=None) as batch_op:
        batch_op.drop_index('ix_merchants_name')
    with op.batch_alter_table('claims', schema=None) as batch_op:
        batch_op.drop_index('ix_claims_waiting_merchant')
        batch_op.drop_index('ix_claims_waiting')
    with op.batch_alter_table('photo_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_photo_codes_code')
    op.drop_table('photo_codes')
