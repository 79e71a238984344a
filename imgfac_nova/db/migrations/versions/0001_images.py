"""The images table: every field of an image record, the build's worker
and cancel request, the fields this release does not know (extra), and an
id in the order records were added.

Revision ID: 0001
Revises:
"""
from alembic import op
from oslo_db.sqlalchemy import types
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def json_dict():
    return types.JsonEncodedDict(mysql_as_long=True)


def long_text():
    return sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade():
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("identifier", sa.String(36), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("percent_complete", sa.Integer, nullable=False),
        sa.Column("status_detail", json_dict(), nullable=False),
        sa.Column("created", sa.String(40), nullable=False),
        sa.Column("updated", sa.String(40), nullable=False),
        sa.Column("worker", sa.String(255)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False,
                  server_default=sa.false()),
        sa.Column("project_id", sa.String(64)),
        sa.Column("plugin", sa.String(64)),
        sa.Column("template", long_text()),
        sa.Column("parameters", json_dict(), nullable=False),
        sa.Column("icicle", long_text()),
        sa.Column("base_image_id", sa.String(36)),
        sa.Column("target_image_id", sa.String(36)),
        sa.Column("target", sa.String(255)),
        sa.Column("provider", sa.String(255)),
        sa.Column("identifier_on_provider", sa.String(255)),
        sa.Column("provider_account_identifier", sa.String(255)),
        sa.Column("data", sa.Text),
        sa.Column("log", sa.Text),
        sa.Column("properties", json_dict(), nullable=False),
        sa.Column("timings", json_dict(), nullable=False),
        sa.Column("extra", json_dict(), nullable=False),
        sa.UniqueConstraint("identifier", name="uniq_images0identifier"),
        mysql_engine="InnoDB", mysql_charset="utf8mb4")
    for column in ("type", "status", "created", "worker", "project_id",
                   "base_image_id", "target_image_id"):
        op.create_index("ix_images_%s" % column, "images", [column])
