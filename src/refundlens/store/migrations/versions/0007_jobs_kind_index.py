"""jobs: an index to lease the oldest ready job of given kinds without reading the others

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_jobs_kind_ready', 'jobs', ['kind', 'status', 'run_after', 'id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_kind_ready', table_name='jobs')
