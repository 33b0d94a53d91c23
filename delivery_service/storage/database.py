"""Engine, session maker and the database clock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, event, func, select, text
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from delivery_service.settings import Settings


class DatabaseUnavailable(Exception):
    """The database could not be reached or dropped the connection: retry later.

    The driver says so in many ways (a refused or reset socket, a connect timeout, a statement
    timeout on a dead link, PostgreSQL's "terminating connection due to administrator command"),
    some of them raw OSErrors that SQLAlchemy does not wrap. The engine turns all of them into
    this one type, so the edges answer one retryable code instead of a server error.
    """


# SQLSTATE classes that mean "not now" rather than "wrong": connection exception (08),
# insufficient resources (53: too many connections), operator intervention (57P: shutdown,
# crash, not accepting connections yet).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        # One connection serialises every transaction of the embedded demo, so SQLite never
        # answers "database is locked"; the demo is one process with modest load.
        engine = create_async_engine(
            settings.database_url, pool_size=1, max_overflow=0, connect_args={"timeout": 30}
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(
            settings.database_url,
            pool_size=10,
            max_overflow=10,
            pool_pre_ping=True,
            pool_timeout=settings.database_pool_timeout_seconds,
            connect_args={
                "timeout": settings.database_connect_timeout_seconds,
                "command_timeout": settings.database_command_timeout_seconds,
                # A worker that loses its link mid-transaction never says goodbye: without
                # this its backend stays "idle in transaction" with the attempt's row locked,
                # and that candidate's answers on every other worker wait for the lock.
                "server_settings": {
                    "idle_in_transaction_session_timeout": str(
                        int(settings.database_idle_transaction_timeout_seconds * 1000)
                    )
                },
            },
        )
    event.listen(engine.sync_engine, "handle_error", _connection_lost)
    return engine


def _connection_lost(context: ExceptionContext) -> BaseException | None:
    """Raise DatabaseUnavailable for a lost or refused connection (and drop that connection
    from the pool); leave every other error as it is."""
    if context.is_pre_ping:
        return None  # the pool's own liveness check: it handles a dead connection itself
    error = context.original_exception
    if not (context.is_disconnect or lost_connection(error)):
        return None
    context.is_disconnect = True
    return DatabaseUnavailable(f"{type(error).__name__}: {error}")


def lost_connection(error: BaseException) -> bool:
    if isinstance(error, OSError | TimeoutError):  # refused, reset, unreachable, timed out
        return True
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(_UNAVAILABLE_SQLSTATES)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged answer survives a power cut, the same promise as PostgreSQL's
    # synchronous_commit=on.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def db_now(session: AsyncSession) -> datetime:
    """The one clock that decides (DESIGN.md §3): the database server's, read in the transaction.

    clock_timestamp() rather than now(): now() is the transaction's start, which can be well
    before a row lock was granted.
    """
    dialect = session.get_bind().dialect.name
    return clock_value(dialect, (await session.execute(_CLOCKS[dialect])).scalar_one())


def clock_column(dialect: str) -> ColumnElement[Any]:
    """The database clock as a column, for a statement that reads it beside other things."""
    return _CLOCK_COLUMNS[dialect]


def clock_value(dialect: str, raw: Any) -> datetime:
    if dialect == "postgresql":
        return raw.astimezone(UTC)  # type: ignore[no-any-return]
    return datetime.fromisoformat(raw).replace(tzinfo=UTC)


# Built once: every decision reads the clock, and building a statement costs more CPU than
# running one of these (statements are immutable values, safe to share).
_CLOCK_COLUMNS: dict[str, ColumnElement[Any]] = {
    "postgresql": func.clock_timestamp().label("now"),
    "sqlite": func.strftime("%Y-%m-%d %H:%M:%f", "now").label("now"),
}
_CLOCKS = {dialect: select(column) for dialect, column in _CLOCK_COLUMNS.items()}


DURABLE_COMMIT_LEVELS = frozenset({"on", "remote_write", "remote_apply"})


async def check_durability(session: AsyncSession) -> str:
    """Refuse to serve when a commit can be lost after it returned (DESIGN.md §2 rule 1).

    An answer is acknowledged once its transaction commits; with synchronous_commit=off (or
    local, which skips a synchronous standby) PostgreSQL may report a commit it has not flushed.
    """
    if session.get_bind().dialect.name != "postgresql":
        return "sqlite synchronous=FULL"
    level = str((await session.execute(text("SHOW synchronous_commit"))).scalar_one())
    if level not in DURABLE_COMMIT_LEVELS:
        raise RuntimeError(
            f"PostgreSQL synchronous_commit is {level!r}: acknowledged answers could be lost. "
            "Set it to 'on' for the examserver database."
        )
    return level
