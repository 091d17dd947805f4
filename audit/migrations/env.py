"""Alembic environment for the audit schema.

Run through ``audit.db.upgrade`` (which builds the Config in code and passes an open
connection in ``config.attributes["connection"]``); a URL in the ``sqlalchemy.url`` option
works too, for the ``alembic`` command line during development.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from audit.db import make_engine
from audit.models import Base
from audit.partitions import include_name


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection given and no sqlalchemy.url set")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


_main()
