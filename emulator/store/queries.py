"""The store methods whose SQL is the same in SQLite and PostgreSQL but for the placeholder.

A mixin of both stores: each gives `MARK` (its driver's placeholder), `_read` (a query after the
queued writes) and `_write` (statements in one transaction); the SQL here is written with `?`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from emulator.store.base import Row
from emulator.store.rows import cloud_call_row, delivery_row, newest_page, newest_page_sql


class SharedQueries:
    MARK: str

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Row]:
        raise NotImplementedError

    def _write(self, statements: Callable[[Any], Any]) -> Any:
        raise NotImplementedError

    def _sql(self, text: str) -> str:
        return text.replace("?", self.MARK)

    def _changed(self, conn: Any, kind: str, arg: str | None = None) -> None:
        """Tell other processes sharing the database (PostgreSQL) of a change; in `conn`'s
        transaction. A store no other process shares has nobody to tell."""

    def load_config(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._read("SELECT * FROM config")}

    def list_rules(self) -> list[Row]:
        rows = self._read("SELECT id, match, scenario FROM rules ORDER BY id")
        return [{**r, "match": json.loads(r["match"])} for r in rows]

    def delete_rule(self, rule_id: int) -> bool:
        sql = self._sql("DELETE FROM rules WHERE id = ?")

        def run(conn: Any) -> bool:
            self._changed(conn, "rules")
            return bool(conn.execute(sql, (rule_id,)).rowcount)

        return bool(self._write(run))

    def delete_scenario(self, name: str) -> None:
        sql = self._sql("DELETE FROM scenarios WHERE name = ?")

        def run(conn: Any) -> None:
            conn.execute(sql, (name,))
            self._changed(conn, "scenarios")

        self._write(run)

    def app_callbacks(self) -> dict[int, str]:
        return {r["sdk_app_id"]: r["url"] for r in self._read("SELECT * FROM app_callbacks")}

    def task_events(self, task_id: str, limit: int = 1000) -> list[Row]:
        sql = self._sql("SELECT * FROM events WHERE task_id = ? ORDER BY seq LIMIT ?")
        return self._read(sql, (task_id, limit))

    def pending_events(self) -> list[Row]:
        return self._read(
            "SELECT * FROM events WHERE state IN ('scheduled', 'delivering') ORDER BY due_at, id"
        )

    def get_event(self, event_id: int) -> Row | None:
        rows = self._read(self._sql("SELECT * FROM events WHERE id = ?"), (event_id,))
        return rows[0] if rows else None

    def get_delivery(self, delivery_id: int) -> Row | None:
        rows = self._read(self._sql("SELECT * FROM deliveries WHERE id = ?"), (delivery_id,))
        return delivery_row(rows[0]) if rows else None

    def list_cloud_calls(
        self, *, action: str | None, task_id: str | None, limit: int, before: int | None
    ) -> tuple[list[Row], int | None]:
        filters = (("action", action), ("task_id", task_id))
        sql, args = newest_page_sql("cloud_calls", filters, limit, before, None, mark=self.MARK)
        return newest_page(self._read(sql, args), limit, cloud_call_row)
