"""What differs between DB-API drivers, in one table (`PROFILES`), keyed by the driver's package.

DB-API 2.0 leaves three things open that `namewire.db` needs to know: how a transaction begins,
whether a running statement can be interrupted from another thread, and which connect arguments
name a database that one connection cannot share with another. A driver without an entry gets the
DB-API defaults: transactions begin implicitly with the first statement, statements run to the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

__all__ = ["PROFILES", "Connector", "DriverProfile", "connector_of", "profile_of"]

Connector = Callable[..., Any]
"""A DB-API ``connect`` function: called with the arguments given to `namewire.db.connect`."""


@dataclass(frozen=True)
class DriverProfile:
    """How `namewire.db` treats one driver.

    ``defaults``: keyword arguments added to the driver's ``connect`` unless the caller gave them.
    ``begin``: the statement that opens a transaction, or None when the driver opens one itself
    before the first statement (the DB-API rule). ``interrupt``: called from the event loop's thread
    with a connection whose statement should stop (a cancelled caller), or None when the driver has
    no safe, non-blocking way. ``label``: how error messages name the database, from the connect
    arguments (never a DSN, which may carry a password). ``private``: True when the arguments name a
    database only one connection can see (SQLite's ``:memory:``), so the pool must hold one.
    """

    begin: str | None = None
    interrupt: Callable[[Any], None] | None = None
    defaults: Mapping[str, Any] = field(default_factory=dict)
    label: Callable[[tuple[Any, ...], Mapping[str, Any]], str | None] = lambda args, kwargs: None
    private: Callable[[tuple[Any, ...], Mapping[str, Any]], bool] = lambda args, kwargs: False


def _sqlite_target(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    target = args[0] if args else kwargs.get("database", "")
    return os.fsdecode(target) if isinstance(target, str | bytes | os.PathLike) else str(target)


def _sqlite_private(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> bool:
    target = _sqlite_target(args, kwargs)
    return target in ("", ":memory:") or (
        bool(kwargs.get("uri")) and "mode=memory" in target and "cache=shared" not in target
    )


PROFILES: dict[str, DriverProfile] = {
    # Both drivers below run in autocommit mode, and `transaction()` sends an explicit BEGIN: one
    # statement on its own then costs no COMMIT round trip, and a transaction covers every
    # statement in it. (sqlite3's legacy mode would open one only before DML, so a transaction that
    # reads first would read outside it.) sqlite3's interrupt() is documented as safe from any
    # thread, and a no-op when nothing runs.
    "sqlite3": DriverProfile(
        begin="BEGIN",
        interrupt=lambda connection: connection.interrupt(),
        defaults={"isolation_level": None},
        label=_sqlite_target,
        private=_sqlite_private,
    ),
    # psycopg 3's cancel() makes a network round trip of its own and would block the loop: a
    # cancelled statement runs to its end (bound one with statement_timeout).
    "psycopg": DriverProfile(begin="BEGIN", defaults={"autocommit": True}),
}


def connector_of(driver: ModuleType | Connector) -> Connector:
    """The ``connect`` function of a driver module, or the callable itself."""
    if isinstance(driver, ModuleType):
        connect = getattr(driver, "connect", None)
        if not callable(connect):
            raise TypeError(f"driver module {driver.__name__} has no connect() function")
        return connect  # type: ignore[no-any-return]
    if not callable(driver):
        raise TypeError(f"driver must be a DB-API module or its connect function, not {driver!r}")
    return driver


def package_of(driver: ModuleType | Connector) -> str:
    """The driver's top-level package name: ``sqlite3`` for the module, ``sqlite3.connect`` or
    a factory defined in ``_sqlite3``."""
    module = driver.__name__ if isinstance(driver, ModuleType) else getattr(driver, "__module__", "")
    return (module or "").split(".")[0].lstrip("_") or "unknown"


def profile_of(driver: ModuleType | Connector) -> tuple[str, DriverProfile]:
    """The driver's package name and its profile (the DB-API defaults when it has none)."""
    package = package_of(driver)
    return package, PROFILES.get(package, DriverProfile())
