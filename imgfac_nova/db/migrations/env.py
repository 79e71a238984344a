"""alembic's environment for imgfac-nova: migrations run on the connection
``imgfac_nova.db.migration`` hands over (never from a URL of their own, so
they share its transaction and, on SQLite, its write lock)."""
from alembic import context

from imgfac_nova.db import migration
from imgfac_nova.db import models

if context.is_offline_mode():
    raise SystemExit("imgfac-nova migrations run online only "
                     "(imgfac-nova-manage db sync)")

context.configure(connection=context.config.attributes["connection"],
                  target_metadata=models.metadata,
                  # SQLite alters a table by copying it; the same scripts
                  # then run everywhere.
                  render_as_batch=True,
                  version_table=migration.VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
