"""Judgment files in, matches and scores out: our JSONL, FastChat review tables, QLoRA ratings-gpt4 files.

- ours: rows written by `harness judge` with "kind" = pairwise | single | multi.
- FastChat legacy review tables (`review_<model1>_<model2>.jsonl`): rows with "score": [s1, s2] from one
  judge call that graded both answers; [-1, -1] marks a judge reply FastChat could not parse.
- QLoRA's `relative-gpt-3.5` files (`<model>-vs-gpt-3.5-gpt4-reviewer.jsonl`) hold score pairs the same way.
- QLoRA `eval/ratings-gpt4` pairwise files (`<model1>-vs-<model2>-gpt-4-reviewer-threeclass.jsonl`): rows
  with "question_id" and "score" 1 (first better), 2 (second better), 3 (tie) or -1 (parse failure).
The format is detected per file from its rows; model names come from the rows or the file name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.data import read_jsonl as harness_read_jsonl
from harness.errors import HarnessError
from judges.ratings import Match, ScorePair

WINNER_TO_OUTCOME = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


@dataclass(frozen=True)
class SingleScore:
    model: str
    question_id: str
    turn: int
    score: float | None  # None = parse or API failure


@dataclass
class Judgments:
    matches: list[Match] = field(default_factory=list)
    pairs: list[ScorePair] = field(default_factory=list)
    singles: list[SingleScore] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # file -> detected format

    def extend(self, other: Judgments) -> None:
        self.matches += other.matches
        self.pairs += other.pairs
        self.singles += other.singles
        self.sources.update(other.sources)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = harness_read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise HarnessError(f"{path}: row {i}: expected a JSON object per line")
    return rows


def fastchat_pair_from_name(path: Path) -> tuple[str, str]:
    """review_<m1>_<m2>.jsonl (also the flattened review__<dir>__review_<m1>_<m2>.jsonl)."""
    stem = path.stem
    if "review_" not in stem:
        raise HarnessError(f"{path}: cannot tell the two models from the file name (expected review_<model1>_<model2>)")
    tail = stem[stem.rindex("review_") + len("review_"):]
    parts = tail.split("_")
    if len(parts) != 2 or not all(parts):
        raise HarnessError(f"{path}: cannot split {tail!r} into two model names (expected review_<model1>_<model2>)")
    return parts[0], parts[1]


def qlora_pair_from_name(path: Path) -> tuple[str, str]:
    """<m1>-vs-<m2>[-<judge>-reviewer-<variant>].jsonl."""
    stem = path.stem
    if "-vs-" not in stem:
        raise HarnessError(f"{path}: cannot tell the two models from the file name (expected <model1>-vs-<model2>...)")
    first, rest = stem.split("-vs-", 1)
    if "-reviewer" in rest:
        rest = rest[: rest.index("-reviewer")]
        rest = re.sub(r"-(gpt-?\d+(?:\.\d+)?(?:-turbo)?o?(?:-mini)?|claude[\w.]*)$", "", rest)  # the judge's name
    if not first or not rest:
        raise HarnessError(f"{path}: empty model name in {stem!r}")
    return first, rest


def _qid(row: dict[str, Any], path: Path, i: int) -> str:
    if "question_id" not in row:
        raise HarnessError(f"{path}:{i}: missing column question_id")
    return str(row["question_id"])


def _num(x: Any, what: str, path: Path, i: int) -> float | None:
    """A score as a float (None stays None); anything else is a one-line error naming the row."""
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float, str)):
        raise HarnessError(f"{path}:{i}: {what} must be a number, got {x!r}")
    try:
        return float(x)
    except ValueError:
        raise HarnessError(f"{path}:{i}: {what} must be a number, got {x!r}") from None


def _outcome(v: Any, what: str, path: Path, i: int) -> float | None:
    if v is None:
        return None
    if not isinstance(v, str) or v not in WINNER_TO_OUTCOME:
        raise HarnessError(f"{path}:{i}: {what} must be model_a, model_b, tie or null, got {v!r}")
    return WINNER_TO_OUTCOME[v]


def _ours_row(out: Judgments, row: dict[str, Any], path: Path, i: int) -> None:
    qid, kind = _qid(row, path, i), row.get("kind")
    turn = _num(row.get("turn", 1), "turn", path, i)
    if kind == "pairwise":
        a, b = row["model_a"], row["model_b"]
        if row.get("policy") == "separate":
            votes = row.get("votes", [])
            if not isinstance(votes, list):
                raise HarnessError(f"{path}:{i}: votes must be a list, got {votes!r}")
            out.matches += [Match(a, b, _outcome(v, "a vote", path, i), qid) for v in votes]
        else:
            out.matches.append(Match(a, b, _outcome(row.get("winner"), "winner", path, i), qid))
    elif kind == "single":
        out.singles.append(SingleScore(row["model"], qid, int(turn or 1), _num(row.get("score"), "score", path, i)))
    elif kind == "multi":
        scores = row.get("scores", {})
        if not isinstance(scores, dict):
            raise HarnessError(f"{path}:{i}: scores must be an object of model -> score, got {scores!r}")
        out.singles += [SingleScore(m, qid, int(turn or 1), _num(sc, "score", path, i)) for m, sc in scores.items()]
    else:
        raise HarnessError(f"{path}:{i}: unknown judgment kind {kind!r} (expected pairwise, single or multi)")


def _fastchat_row(out: Judgments, row: dict[str, Any], path: Path, i: int, a: str, b: str) -> None:
    qid, sc = _qid(row, path, i), row["score"]
    if not (isinstance(sc, list) and len(sc) == 2):
        raise HarnessError(f"{path}:{i}: score must be a pair [s1, s2], got {sc!r}")
    s1, s2 = _num(sc[0], "score", path, i), _num(sc[1], "score", path, i)
    if s1 is None or s2 is None or s1 < 0 or s2 < 0:  # FastChat writes [-1, -1] when the review could not be parsed
        out.matches.append(Match(a, b, None, qid))
        return
    out.matches.append(Match(a, b, 1.0 if s1 > s2 else (0.0 if s1 < s2 else 0.5), qid))
    out.pairs.append(ScorePair(qid, a, b, s1, s2))


QLORA_OUTCOMES = {1: 1.0, 2: 0.0, 3: 0.5, -1: None}


def _qlora_row(out: Judgments, row: dict[str, Any], path: Path, i: int, a: str, b: str) -> None:
    qid, sc = _qid(row, path, i), row["score"]
    if isinstance(sc, bool) or not isinstance(sc, (int, float)) or sc not in QLORA_OUTCOMES:
        raise HarnessError(f"{path}:{i}: score must be 1, 2, 3 or -1, got {sc!r}")
    out.matches.append(Match(a, b, QLORA_OUTCOMES[int(sc)], qid))


def _read_rows(path: Path, rows: list[dict[str, Any]], fmt: str) -> Judgments:
    """Each row through its format's reader; a missing column is an error naming the row."""
    out = Judgments()
    names: tuple[str, ...] = ()
    if fmt == "fastchat-review":
        names = qlora_pair_from_name(path) if "-vs-" in path.stem else fastchat_pair_from_name(path)
    elif fmt == "qlora-threeclass":
        names = qlora_pair_from_name(path)
    readers: dict[str, Callable[..., None]] = {"harness": _ours_row, "fastchat-review": _fastchat_row,
                                                "qlora-threeclass": _qlora_row}
    reader = readers[fmt]
    for i, row in enumerate(rows, 1):
        try:
            reader(out, row, path, i, *names)
        except KeyError as e:
            raise HarnessError(f"{path}:{i}: missing column {e.args[0]}") from None
    return out


def detect(rows: list[dict[str, Any]]) -> str:
    first = rows[0]
    if "kind" in first:
        return "harness"
    sc = first.get("score")
    if isinstance(sc, list):
        return "fastchat-review"
    if isinstance(sc, (int, float)) and not isinstance(sc, bool):
        return "qlora-threeclass"
    return "unknown"


def load_judgments(paths: list[Path], rename: dict[str, str] | None = None) -> Judgments:
    """Read every file (format detected per file), then apply `rename` (old -> new) to model names."""
    out = Judgments()
    for p in paths:
        rows = read_jsonl(Path(p))
        if not rows:
            raise HarnessError(f"{p}: no judgments in the file")
        fmt = detect(rows)
        if fmt == "unknown":
            raise HarnessError(f"{p}: unknown judgment format (expected harness judgments, a FastChat review table or a "
                               "QLoRA ratings-gpt4 file)")
        part = _read_rows(Path(p), rows, fmt)
        part.sources[str(p)] = fmt
        out.extend(part)
    if rename:
        r = rename.get
        out.matches = [Match(r(m.model_a, m.model_a), r(m.model_b, m.model_b), m.outcome, m.question_id)
                       for m in out.matches]
        out.pairs = [ScorePair(p.question_id, r(p.model_a, p.model_a), r(p.model_b, p.model_b), p.score_a, p.score_b)
                     for p in out.pairs]
        out.singles = [SingleScore(r(s.model, s.model), s.question_id, s.turn, s.score) for s in out.singles]
    return out


def pairs_from_singles(singles: list[SingleScore], baseline: str) -> list[ScorePair]:
    """Join single gradings with the baseline's on (question, turn); failures on either side are left out."""
    base = {(s.question_id, s.turn): s.score for s in singles if s.model == baseline and s.score is not None}
    out = []
    for s in singles:
        if s.model == baseline or s.score is None:
            continue
        b = base.get((s.question_id, s.turn))
        if b is not None:
            out.append(ScorePair(f"{s.question_id}#{s.turn}", s.model, baseline, s.score, b))
    return out
