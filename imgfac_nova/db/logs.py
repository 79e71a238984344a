"""Build logs as rows of the build_logs table: batches of lines appended
by the process running a build, read whole by any process."""
import sqlalchemy as sa

from imgfac_nova.db import models

_TABLE = models.build_logs


def append(session, identifier, text):
    session.execute(sa.insert(_TABLE).values(image_id=identifier, text=text))


def read(session, identifier):
    """The build log of ``identifier`` ("" when it has none)."""
    return "".join(session.execute(
        sa.select(_TABLE.c.text).where(_TABLE.c.image_id == identifier)
        .order_by(_TABLE.c.id)).scalars())


def delete(session, identifier):
    session.execute(sa.delete(_TABLE).where(_TABLE.c.image_id == identifier))
