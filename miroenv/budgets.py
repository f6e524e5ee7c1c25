"""Machine-wide budgets for live backends: rate limits and spend caps shared by every process.

State lives in one SQLite file (default `~/.cache/miroenv/budgets.sqlite`, or `$MIROENV_BUDGET_DB`); every
change is one `BEGIN IMMEDIATE` transaction, so many envs in many processes draw from the same token bucket
and the same cap without a coordinator, and a killed process leaves the state consistent.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE IF NOT EXISTS spend (name TEXT PRIMARY KEY, spent REAL NOT NULL);
"""


class BudgetExceededError(RuntimeError):
    """A spend cap would be exceeded, or a rate-limit wait would outlast its timeout; nothing was charged."""


def default_budget_path() -> Path:
    """Where the shared budget state lives unless told otherwise."""
    configured = os.environ.get("MIROENV_BUDGET_DB")
    return Path(configured) if configured else Path.home() / ".cache" / "miroenv" / "budgets.sqlite"


class SharedBudget:
    """Token-bucket rate limits and spend caps, shared through one SQLite file by all processes of a machine."""

    def __init__(self, path: str | Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path) if path is not None else default_budget_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._local = threading.local()
        self._conn().executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _take(self, name: str, rate: float, burst: float) -> float:
        """Take one token if there is one (returns 0), else return how long to wait for the next."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = self._clock()
            row = conn.execute("SELECT tokens, updated FROM buckets WHERE name = ?", (name,)).fetchone()
            tokens = burst if row is None else min(burst, row[0] + (now - row[1]) * rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate
            conn.execute(
                "INSERT INTO buckets (name, tokens, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                (name, tokens, now),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return wait

    def acquire(self, name: str, *, rate: float, burst: float = 1.0, timeout: float = 60.0) -> float:
        """Wait for a token of bucket `name` (`rate` per second, at most `burst` saved up); returns the wait."""
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        start = time.monotonic()
        while True:
            wait = self._take(name, rate, burst)
            if wait == 0.0:
                return time.monotonic() - start
            if time.monotonic() - start + wait > timeout:
                raise BudgetExceededError(f"rate limit {name!r}: no slot within {timeout:g} s")
            time.sleep(wait)

    def charge(self, name: str, cost: float, *, cap: float | None = None) -> float:
        """Add `cost` to `name`'s spend, refusing (and charging nothing) if that would pass `cap`; returns the
        new total."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT spent FROM spend WHERE name = ?", (name,)).fetchone()
            spent = (row[0] if row else 0.0) + cost
            if cap is not None and spent > cap:
                raise BudgetExceededError(
                    f"spend cap {name!r} reached: {spent - cost:g} spent, {cost:g} more would pass the cap {cap:g}"
                )
            conn.execute(
                "INSERT INTO spend (name, spent) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spent = excluded.spent",
                (name, spent),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return spent

    def spent(self, name: str) -> float:
        """What `name` has spent so far."""
        row = self._conn().execute("SELECT spent FROM spend WHERE name = ?", (name,)).fetchone()
        return float(row[0]) if row else 0.0

    def reset(self, name: str) -> None:
        """Forget `name`'s spend and bucket (a new billing period, a new experiment)."""
        conn = self._conn()
        conn.execute("DELETE FROM spend WHERE name = ?", (name,))
        conn.execute("DELETE FROM buckets WHERE name = ?", (name,))


class CallBudget:
    """What one live backend may use: a shared rate limit and a spend cap in calls, under one name."""

    def __init__(
        self,
        name: str,
        *,
        rate: float | None = None,
        burst: float = 1.0,
        max_calls: float | None = None,
        shared: SharedBudget | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.rate = rate
        self.burst = burst
        self.max_calls = max_calls
        self.shared = shared or SharedBudget()
        self.timeout = timeout

    def before_call(self) -> None:
        """Wait for the rate limit and charge one call against the cap (raises `BudgetExceededError`)."""
        if self.rate is not None:
            self.shared.acquire(self.name, rate=self.rate, burst=self.burst, timeout=self.timeout)
        self.shared.charge(self.name, 1.0, cap=self.max_calls)
