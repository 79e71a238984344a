"""Build logs in the database, so that every API process can show the log
of a build running on another host: batches of lines per image.

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "build_logs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("text", sa.Text().with_variant(mysql.LONGTEXT(), "mysql",
                                                 "mariadb"), nullable=False),
        mysql_engine="InnoDB", mysql_charset="utf8mb4")
    op.create_index("ix_build_logs_image_id", "build_logs", ["image_id"])
