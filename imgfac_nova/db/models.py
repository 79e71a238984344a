"""The tables, as the newest migration leaves them (a unit test checks that
the two agree). A new column is a new migration in ``migrations/versions``."""
import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from oslo_db.sqlalchemy import types

metadata = sa.MetaData()

#: Templates and ICICLE documents: TEXT holds only 64 KiB on MySQL/MariaDB.
LONG_TEXT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def _json_dict():
    """A dict stored as JSON text (LONGTEXT on MySQL/MariaDB)."""
    return types.JsonEncodedDict(mysql_as_long=True)


#: One image record a row: a column per field of ``images.ImageRecord``,
#: indexed where ``ImageStore.list`` filters; ``id`` orders the records
#: created in one second (``created`` has seconds); ``cancel_requested`` is set
#: when someone asks the build to stop, whichever process runs it;
#: ``extra`` keeps the fields a record had that this release does not
#: know (an imported ``.meta`` file's, a newer release's).
images = sa.Table(
    "images", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("identifier", sa.String(36), nullable=False),
    sa.Column("type", sa.String(32), nullable=False, index=True),
    sa.Column("status", sa.String(16), nullable=False, index=True),
    sa.Column("percent_complete", sa.Integer, nullable=False),
    sa.Column("status_detail", _json_dict(), nullable=False),
    # ISO 8601 UTC to the second, as images.utcnow writes them: the text
    # sorts in time order.
    sa.Column("created", sa.String(40), nullable=False, index=True),
    sa.Column("updated", sa.String(40), nullable=False),
    # "host:pid" of the process running the build.
    sa.Column("worker", sa.String(255), index=True),
    sa.Column("cancel_requested", sa.Boolean, nullable=False,
              server_default=sa.false()),
    sa.Column("project_id", sa.String(64), index=True),
    # The Keystone trust the build acts through after its caller's token.
    sa.Column("trust_id", sa.String(64)),
    sa.Column("plugin", sa.String(64)),
    sa.Column("template", LONG_TEXT),
    sa.Column("parameters", _json_dict(), nullable=False),
    sa.Column("icicle", LONG_TEXT),
    sa.Column("base_image_id", sa.String(36), index=True),
    sa.Column("target_image_id", sa.String(36), index=True),
    sa.Column("target", sa.String(255)),
    sa.Column("provider", sa.String(255)),
    sa.Column("identifier_on_provider", sa.String(255)),
    sa.Column("provider_account_identifier", sa.String(255)),
    sa.Column("data", sa.Text),
    sa.Column("log", sa.Text),
    sa.Column("properties", _json_dict(), nullable=False),
    sa.Column("timings", _json_dict(), nullable=False),
    sa.Column("extra", _json_dict(), nullable=False),
    sa.UniqueConstraint("identifier", name="uniq_images0identifier"),
    mysql_engine="InnoDB", mysql_charset="utf8mb4")

#: Build logs, where every process reads them (a worker's local
#: ``<uuid>.log`` is on its own host): each row a batch of lines of the
#: build of image ``image_id``, in ``id`` order.
build_logs = sa.Table(
    "build_logs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("image_id", sa.String(36), nullable=False, index=True),
    sa.Column("text", LONG_TEXT, nullable=False),
    mysql_engine="InnoDB", mysql_charset="utf8mb4")
