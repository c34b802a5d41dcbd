"""Judgments (`harness judge`) and tournament matches found in results directories, summarised for the report.

Per judgments file: its kind and judge, failures, the order-flip rate of pairwise judgments (how often
swapping the answer order changed the verdict: the two votes of one judgment disagree), ratings with
intervals (Elo over random orders and Bradley–Terry, from judges.ratings) for pairwise matches, mean scores
with 95% intervals for single and multi grading; and every judgment with the judge's rationale, for browsing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

KINDS = ("single", "multi", "pairwise")
ELO_ROUNDS = 1000  # fewer orders than `harness tournament` (10,000): the report only plots the intervals
BT_ROUNDS = 200


def _first_row(path: Path) -> dict[str, Any] | None:
    try:
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    return row if isinstance(row, dict) else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return None


def find(roots: list[Path]) -> tuple[list[Path], list[Path]]:
    """(harness judgments files, tournament *.matches.jsonl files) under the roots; run samples are left out."""
    judgments, matches = [], []
    for root in roots:
        files = [root] if root.is_file() else sorted(root.rglob("*.jsonl"))
        for f in files:
            if f.parent.name == "samples" and (f.parent.parent / "results.json").exists():
                continue
            row = _first_row(f)
            if row is None:
                continue
            if f.name.endswith(".matches.jsonl") and {"model_a", "model_b", "outcome"} <= set(row):
                matches.append(f)
            elif "judgment_id" in row and row.get("kind") in KINDS:
                judgments.append(f)
    return judgments, matches


def _read(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise HarnessError(f"{path}:{i}: not valid JSON ({e.msg})") from None
    return rows


def order_flips(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Pairwise judgments whose two orders both gave a verdict, and how many of them disagree."""
    both = [r for r in rows if isinstance(r.get("votes"), list) and len(r["votes"]) == 2 and None not in r["votes"]]
    flipped = sum(1 for r in both if r["votes"][0] != r["votes"][1])
    return {"judged_both_orders": len(both), "flipped": flipped, "rate": flipped / len(both) if both else None}


def _ratings(matches: list[Any]) -> list[dict[str, Any]]:
    from judges.ratings import bradley_terry, elo

    if not any(m.outcome is not None for m in matches):
        return []
    tables = [elo(matches, rounds=ELO_ROUNDS), bradley_terry(matches, rounds=BT_ROUNDS)]
    return [{"method": t.method, "n_matches": t.n_matches, "skipped": t.skipped,
             "ratings": [vars(r) for r in t.ratings]} for t in tables]


def _mean_scores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scores: dict[str, list[float]] = {}
    for r in rows:
        items = [(r.get("model"), r.get("score"))] if r.get("kind") == "single" else list((r.get("scores") or {}).items())
        for m, s in items:
            if isinstance(s, (int, float)):
                scores.setdefault(str(m), []).append(float(s))
    out = []
    for m, v in sorted(scores.items()):
        mean = sum(v) / len(v)
        sd = math.sqrt(sum((x - mean) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
        half = 1.959963984540054 * sd / math.sqrt(len(v))
        out.append({"model": m, "mean": mean, "lo": mean - half, "hi": mean + half, "n": len(v)})
    return out


def _verdict(r: dict[str, Any]) -> str:
    if r.get("kind") == "pairwise":
        w = r.get("winner")
        who = {"model_a": r.get("model_a"), "model_b": r.get("model_b"), "tie": "tie"}.get(w) if w else None
        return f"{who or 'no verdict'}" + (f" ({r['note']})" if r.get("note") else "")
    if r.get("kind") == "single":
        return "no score" if r.get("score") is None else f"{r['score']:g}"
    return ", ".join(f"{m}: {'–' if s is None else f'{s:g}'}" for m, s in (r.get("scores") or {}).items())


def _rationale(r: dict[str, Any]) -> str:
    raw = r.get("raw")
    if isinstance(raw, list):
        orders = r.get("orders") or [[], []]
        return "\n\n".join(f"--- order {i + 1}: {' vs '.join(map(str, o))} ---\n{t or r.get('error') or ''}"
                           for i, (t, o) in enumerate(zip(raw, orders)))
    return str(raw if raw is not None else r.get("error") or "")


def browse_rows(path: Path, rows: list[dict[str, Any]], file_index: int) -> list[list[Any]]:
    """[file, kind, question, turn, category, models, verdict, votes, rationale] per judgment, for the browser."""
    out = []
    for r in rows:
        models = [r.get("model_a"), r.get("model_b")] if r.get("kind") == "pairwise" else (
            [r.get("model")] if r.get("kind") == "single" else list(r.get("models") or r.get("scores") or []))
        votes = " / ".join(str(v) for v in r.get("votes") or []) if r.get("kind") == "pairwise" else ""
        out.append([file_index, r.get("kind"), str(r.get("question_id")), r.get("turn"), r.get("category") or "",
                    " vs ".join(map(str, models)), _verdict(r), votes, _rationale(r)])
    return out


def _failed(r: dict[str, Any]) -> bool:
    """No verdict: a parse failure or an API failure (the record keeps the reason)."""
    if r.get("kind") == "pairwise":
        return r.get("winner") is None
    if r.get("kind") == "single":
        return r.get("score") is None
    return any(s is None for s in (r.get("scores") or {}).values())


def summarise(judgment_files: list[Path], match_files: list[Path]) -> dict[str, Any]:
    """Everything the report's judges page shows: per file a summary, and all judgments for browsing."""
    from judges.formats import load_judgments
    from judges.ratings import Match

    files, browse = [], []
    for i, f in enumerate(judgment_files):
        rows = _read(f)
        kind = rows[0].get("kind") if rows else None
        failed = sum(1 for r in rows if _failed(r))
        entry: dict[str, Any] = {"path": str(f), "kind": kind, "judge": rows[0].get("judge") if rows else None,
                                 "n": len(rows), "failed": failed, "ratings": [], "scores": []}
        if kind == "pairwise":
            entry["order_flips"] = order_flips(rows)
            entry["ratings"] = _ratings(load_judgments([f]).matches)
        else:
            entry["scores"] = _mean_scores(rows)
        files.append(entry)
        browse += browse_rows(f, rows, i)
    tournaments = []
    for f in match_files:
        matches = [Match(str(r["model_a"]), str(r["model_b"]), r.get("outcome"), str(r.get("question_id", "")))
                   for r in _read(f)]
        tournaments.append({"path": str(f), "n": len(matches), "ratings": _ratings(matches)})
    return {"files": files, "tournaments": tournaments, "judgments": browse}
