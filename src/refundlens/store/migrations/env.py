"""Alembic environment: runs migrations on the engine :class:`refundlens.store.Database`
passes in (``config.attributes["engine"]``); there is no alembic.ini."""

from alembic import context

from refundlens.store.tables import Base

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
