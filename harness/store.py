"""SQLite store of answers keyed by (model identity, request key).

Every batch is committed as it finishes, so a run killed at any point (even kill -9) keeps all
answers it got, and `--resume` asks the model only for the rest. A different model, adapter,
quantisation or dtype has another identity and can never read these answers.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from harness.errors import HarnessError
from harness.requests import Answer, answer_from_json, answer_to_json


class Store:
    @classmethod
    def open(cls, path: Path, resume: bool = False) -> Store:
        """The store at `path`; one that is not a readable answer store is a one-line error naming it."""
        try:
            store = cls(path)
            store.db.execute("SELECT model, key, kind, answer FROM answers LIMIT 1").fetchall()
            return store
        except sqlite3.DatabaseError as e:
            hint = "delete it to start fresh (its answers are lost), or pass another --output-dir"
            raise HarnessError(f"{path}: not a readable answer store ({e}); {hint}") from None

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS answers (model TEXT, key TEXT, kind TEXT, answer TEXT,"
            " PRIMARY KEY (model, key))"
        )
        self.db.commit()

    def get_many(self, model: str, keys: list[str]) -> dict[str, Answer]:
        found: dict[str, Answer] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            q = f"SELECT key, kind, answer FROM answers WHERE model=? AND key IN ({','.join('?' * len(chunk))})"
            for key, kind, answer in self.db.execute(q, [model, *chunk]):
                found[key] = answer_from_json(kind, json.loads(answer))
        return found

    def put_many(self, model: str, items: Iterable[tuple[str, str, Answer]]) -> None:
        """Record (key, kind, answer) triples in one transaction."""
        self.db.executemany(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)",
            [(model, k, kind, json.dumps(answer_to_json(a))) for k, kind, a in items],
        )
        self.db.commit()

    def close(self) -> None:
        self.db.close()
