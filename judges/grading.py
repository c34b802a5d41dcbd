"""Turn questions and answers into judge calls and judgment records: single, multi-answer and pairwise grading.

Each judgment is one record, written once, in a deterministic order. Pairwise judgments ask the judge
twice, with the answers in both orders; when the two verdicts disagree the judgment is a tie (policy
"tie", the default) or both verdicts are kept as separate matches (policy "separate"). A reply whose
verdict cannot be read, or a call that failed after its retries, is recorded with its reason and no
score. When --max-cost stops the run, judgments not yet complete are left out (and listed as remaining);
their finished calls are cached, so a re-run picks up where this one stopped.

Every judgment has a `judgment_id`: a hash of what decides it (kind, models, question, turn, the exact
prompts and judge settings, the disagreement policy). Records are handed to `on_record` as they finish,
so the CLI appends them to the judgments file at once; `read_finished` reads such a file back (a line
cut short by a kill is dropped) and a resumed run sends nothing for the judgments it holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.progress import progress_bar
from judges.client import BudgetExceeded, Completion, JudgeClient, JudgeSettings, ResponseCache, Usage, cache_key
from judges.prompts import (
    REFERENCE_CATEGORIES,
    Turns,
    multi_prompt,
    pairwise_prompt,
    parse_multi,
    parse_score,
    parse_verdict,
    single_prompt,
)
from judges.questions import Question

POLICIES = ("tie", "separate")


@dataclass
class GradeRun:
    records: list[dict[str, Any]]  # every finished judgment in job order, failed calls included
    usage: Usage
    planned: int
    stopped: str | None = None  # why the run stopped early (budget), else None
    skipped_questions: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)  # records with a call that failed after its retries

    @property
    def kept(self) -> list[dict[str, Any]]:
        """The records worth keeping: the judge answered every call (a reply without a verdict still counts)."""
        bad = {r["judgment_id"] for r in self.failed}
        return [r for r in self.records if r["judgment_id"] not in bad]


@dataclass
class Job:
    base: dict[str, Any]
    prompts: list[tuple[tuple[str, str], ...]]
    finish: Callable[[dict[str, Any], list[Completion]], dict[str, Any]]
    id: str = ""

    def __post_init__(self) -> None:
        self.base = {**self.base, "judgment_id": self.id} if self.id else self.base


def judgment_id(base: dict[str, Any], prompts: list[tuple[tuple[str, str], ...]], settings: JudgeSettings,
                *extra: str) -> str:
    """What decides a judgment: its identity fields, each prompt's cache key (prompt + judge settings), `extra`."""
    blob = json.dumps([base, [cache_key(settings, p) for p in prompts], list(extra)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _job(base: dict[str, Any], prompts: list[tuple[tuple[str, str], ...]], settings: JudgeSettings,
         finish: Callable[[dict[str, Any], list[Completion]], dict[str, Any]], *extra: str) -> Job:
    return Job(base, prompts, finish, judgment_id(base, prompts, settings, *extra))


def wants_reference(q: Question, mode: str) -> str | None:
    """The reference for turn-aware grading: `auto` = math/reasoning/coding questions that have one."""
    if mode not in ("auto", "always", "never"):
        raise HarnessError(f"--reference-mode: {mode!r} is not auto, always or never")
    if q.reference is None or mode == "never":
        return None
    if mode == "always" or q.category.lower() in REFERENCE_CATEGORIES:
        return "\n".join(q.reference) if len(q.reference) > 1 else q.reference[0]
    return None


def conversation(q: Question, replies: list[str], turn: int) -> Turns:
    return [(q.turns[i], replies[i]) for i in range(turn)]


def _turns_of(q: Question, answer_sets: list[dict[str, list[str]]], turns: list[int] | None) -> list[int]:
    n = min([len(q.turns)] + [len(a[q.question_id]) for a in answer_sets])
    return [t for t in range(1, n + 1) if turns is None or t in turns]


def _common_questions(questions: list[Question], answers: dict[str, dict[str, list[str]]],
                      models: list[str]) -> tuple[list[Question], list[str]]:
    known = {q.question_id for q in questions}
    for m in models:  # answers to questions outside the set (e.g. under --limit) are ignored, but some must match
        if answers[m] and not set(answers[m]) & known:
            first = next(iter(answers[m]))
            raise HarnessError(f"answers of {m}: none of its question_ids (e.g. {first}) is in the question set "
                               "(wrong --questions?)")
    keep = [q for q in questions if all(q.question_id in answers[m] for m in models)]
    skipped = [q.question_id for q in questions if q not in keep]
    if not keep:
        raise HarnessError("no question is answered by every model being judged")
    return keep, skipped


def _base(kind: str, q: Question, turn: int, settings: JudgeSettings, reference: str | None) -> dict[str, Any]:
    return {"kind": kind, "question_id": q.question_id, "turn": turn, "category": q.category,
            "judge": settings.model, "judge_base_url": settings.base_url, "reference_used": reference is not None}


def _meta(c: Completion) -> dict[str, Any]:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens, "cached": c.cached}


def single_jobs(questions: list[Question], answers: dict[str, dict[str, list[str]]], settings: JudgeSettings,
                reference_mode: str = "auto", turns: list[int] | None = None) -> tuple[list[Job], list[str]]:
    models = list(answers)
    qs, skipped = _common_questions(questions, answers, models)

    def finish(rec: dict[str, Any], cs: list[Completion]) -> dict[str, Any]:
        c = cs[0]
        score, err = parse_score(c.text) if c.text is not None else (None, c.error)
        return {**rec, "score": score, "error": err, "raw": c.text, **_meta(c)}

    jobs = []
    for q in qs:
        for t in _turns_of(q, [answers[m] for m in models], turns):
            ref = wants_reference(q, reference_mode)
            for m in models:
                msgs = single_prompt(conversation(q, answers[m][q.question_id], t), ref)
                jobs.append(_job({**_base("single", q, t, settings, ref), "model": m}, [msgs], settings, finish))
    return jobs, skipped


def multi_jobs(questions: list[Question], answers: dict[str, dict[str, list[str]]], settings: JudgeSettings,
               reference_mode: str = "auto", turns: list[int] | None = None, seed: int = 0) -> tuple[list[Job], list[str]]:
    """All models' answers in one prompt; the order is shuffled per question (seeded) to spread position bias."""
    models = list(answers)
    if len(models) < 2:
        raise HarnessError("judge multi needs answers of at least two models")
    qs, skipped = _common_questions(questions, answers, models)
    jobs = []
    for q in qs:
        for t in _turns_of(q, [answers[m] for m in models], turns):
            order = list(models)
            random.Random(f"{seed}:{q.question_id}:{t}").shuffle(order)
            ref = wants_reference(q, reference_mode)
            msgs = multi_prompt([conversation(q, answers[m][q.question_id], t) for m in order], ref)

            def finish(rec: dict[str, Any], cs: list[Completion], order: list[str] = order) -> dict[str, Any]:
                c = cs[0]
                scores: list[float | None]
                errs: list[str | None]
                if c.text is None:
                    scores, errs = [None] * len(order), [c.error] * len(order)
                else:
                    scores, errs = parse_multi(c.text, len(order))
                return {**rec, "scores": dict(zip(order, scores)), "errors": dict(zip(order, errs)),
                        "error": next((e for e in errs if e), None), "raw": c.text, **_meta(c)}

            jobs.append(_job({**_base("multi", q, t, settings, ref), "models": order}, [msgs], settings, finish))
    return jobs, skipped


def combine_votes(v_ab: str | None, v_ba: str | None) -> tuple[str | None, str | None]:
    """(winner, note) from the two orders' votes (already in model_a / model_b / tie terms)."""
    if v_ab is None or v_ba is None:
        return None, "failed"
    if v_ab == v_ba:
        return v_ab, None
    return "tie", "disagreement"


def pairwise_jobs(questions: list[Question], answers: dict[str, dict[str, list[str]]], settings: JudgeSettings,
                  baseline: str | None = None, policy: str = "tie", reference_mode: str = "auto",
                  turns: list[int] | None = None) -> tuple[list[Job], list[str]]:
    """Every pair of models (or every model against `baseline`), each pair asked in both orders."""
    if policy not in POLICIES:
        raise HarnessError(f"--disagreement: {policy!r} is not one of {', '.join(POLICIES)}")
    models = list(answers)
    if baseline is not None:
        if baseline not in answers:
            raise HarnessError(f"--baseline {baseline}: no answers file with that model (have: {', '.join(models)})")
        pairs = [(m, baseline) for m in models if m != baseline]
    else:
        pairs = list(itertools.combinations(models, 2))
    if not pairs:
        raise HarnessError("judge pairwise needs answers of at least two models")
    qs, skipped = _common_questions(questions, answers, models)

    def finish(rec: dict[str, Any], cs: list[Completion]) -> dict[str, Any]:
        votes, errors = [], []
        for c, first in zip(cs, ("model_a", "model_b")):
            verdict, err = parse_verdict(c.text) if c.text is not None else (None, c.error)
            second = "model_b" if first == "model_a" else "model_a"
            votes.append({"A": first, "B": second, "tie": "tie"}.get(verdict) if verdict else None)
            errors.append(err)
        winner, note = combine_votes(votes[0], votes[1])
        return {**rec, "policy": policy, "votes": votes, "winner": winner, "note": note, "errors": errors,
                "error": next((e for e in errors if e), None), "raw": [c.text for c in cs],
                "orders": [[rec["model_a"], rec["model_b"]], [rec["model_b"], rec["model_a"]]],
                "prompt_tokens": sum(c.prompt_tokens for c in cs),
                "completion_tokens": sum(c.completion_tokens for c in cs), "cached": [c.cached for c in cs]}

    jobs = []
    for q in qs:
        for a, b in pairs:
            for t in _turns_of(q, [answers[a], answers[b]], turns):
                ref = wants_reference(q, reference_mode)
                ca, cb = conversation(q, answers[a][q.question_id], t), conversation(q, answers[b][q.question_id], t)
                prompts = [pairwise_prompt(ca, cb, ref), pairwise_prompt(cb, ca, ref)]
                base = {**_base("pairwise", q, t, settings, ref), "model_a": a, "model_b": b}
                jobs.append(_job(base, prompts, settings, finish, policy))
    return jobs, skipped


OnRecord = Callable[[dict[str, Any]], None]


async def _run_jobs(jobs: list[Job], client: JudgeClient, quiet: bool, on_record: OnRecord | None
                    ) -> tuple[list[dict[str, Any] | None], set[int], str | None]:
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    failed: set[int] = set()
    stop: list[str] = []

    with progress_bar("judging", total=len(jobs), quiet=quiet, status=client.transport.status) as advance:
        async def one(i: int, job: Job) -> None:
            if stop:
                return
            try:
                cs = await asyncio.gather(*(client.complete(p) for p in job.prompts))
            except BudgetExceeded as e:
                if not stop:
                    stop.append(str(e))
                return
            results[i] = rec = job.finish(dict(job.base), list(cs))
            if any(c.text is None for c in cs):
                failed.add(i)
            elif on_record is not None:
                on_record(rec)
            advance(1)

        tasks = [asyncio.ensure_future(one(i, j)) for i, j in enumerate(jobs)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:  # a permanent refusal (or Ctrl-C): stop the other calls before the client closes
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return results, failed, (stop[0] if stop else None)


def run_jobs(jobs: list[Job], settings: JudgeSettings, cache: ResponseCache | None, quiet: bool = False,
             api_key: str | None = None, skipped: list[str] | None = None, on_record: OnRecord | None = None
             ) -> GradeRun:
    """Send every job's prompts (concurrently, cached), parse the replies, return the records in job order.

    `on_record` gets each record the judge answered as soon as it is done (not the ones whose call failed
    after its retries: a resumed run tries those again). A permanent refusal (RemoteFailure) propagates.
    """

    async def main() -> tuple[list[dict[str, Any] | None], set[int], str | None, Usage]:
        async with JudgeClient(settings, cache, api_key=api_key) as client:
            res, failed, stopped = await _run_jobs(jobs, client, quiet, on_record)
            return res, failed, stopped, client.usage

    results, failed, stopped, usage = asyncio.run(main())
    records = [r for r in results if r is not None]
    if stopped:
        print(f"stopped: {stopped}; {len(records)} of {len(jobs)} judgments done (re-run with --resume to continue; "
              "finished calls are cached)", file=sys.stderr)
    return GradeRun(records, usage, len(jobs), stopped, skipped or [], [r for i, r in enumerate(results)
                                                                          if i in failed and r is not None])


def _parse_line(path: Path, i: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise HarnessError(f"{path}:{i}: not valid JSON ({e.msg}); fix or delete the line, or pass --overwrite") \
            from None
    if not isinstance(row, dict) or not isinstance(row.get("judgment_id"), str):
        raise HarnessError(f"{path}:{i}: not a judgment with a judgment_id (another file, or an older harness?); "
                           "pass --overwrite to judge afresh")
    return row


def read_finished(path: Path, jobs: list[Job]) -> tuple[dict[str, dict[str, Any]], bool]:
    """({judgment_id: record}, ragged) from a judgments file being resumed; `ragged` = its last line has no newline
    (cut short by a kill, and then dropped: that judgment is simply not done), so the file must be rewritten before
    anything is appended.

    Every row must belong to `jobs`: a row judged with other answers, prompts or settings is an error, not
    something to mix into this run's results.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason}); pass --overwrite to judge afresh") from None
    lines = text.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    if tail.strip():
        try:
            _parse_line(path, len(lines) + 1, tail)
            lines.append(tail)  # complete, only its newline is missing
        except HarnessError:
            pass
    planned = {j.id for j in jobs}
    done: dict[str, dict[str, Any]] = {}
    for i, line in enumerate(lines, 1):
        if line.strip():
            row = _parse_line(path, i, line)
            if row["judgment_id"] not in planned:
                raise HarnessError(f"{path}:{i}: judgment {row['judgment_id']} is not part of this run (other answers, "
                                   "questions or judge settings); pass the same options, or --overwrite")
            done[row["judgment_id"]] = row
    return done, bool(tail)
