"""The Keystone trust a daemon's build acts through once its caller's token
has expired (resume, clean-up after a crash): its id only, never a secret.

Revision ID: 0002
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("images", sa.Column("trust_id", sa.String(64)))
