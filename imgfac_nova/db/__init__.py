"""The image records' database: oslo.db's enginefacade over SQLAlchemy, the
schema kept by alembic migrations (``migrations/``); see
:class:`imgfac_nova.store.ImageStore` for the records' interface."""
