"""login attempts: console sign-in failures and lockouts shared by every process

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa
import refundlens.store.tables


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('login_attempts',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('window_started_at', refundlens.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.Column('locked_until', refundlens.store.tables.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', refundlens.store.tables.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_attempts_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_attempts_expires_at'))

    op.drop_table('login_attempts')
