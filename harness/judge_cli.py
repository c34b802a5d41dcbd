"""`harness generate`, `harness judge single|multi|pairwise`, `harness tournament`: LLM-judged evaluation.

generate writes one FastChat-format answers file per model variant; judge sends those answers to an
OpenAI-compatible judge and writes judgments JSONL; tournament turns judgments (ours, FastChat review
tables, QLoRA ratings-gpt4 files) into Elo / Bradley–Terry ratings with intervals, a win-rate matrix and
scores as a percentage of a baseline, as Markdown plus a PNG.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli import QuietOpt
from harness.errors import HarnessError
from harness.models.loading import ModelSpec
from harness.options import check_positive, model_options, parse_options

QuestionsOpt = Annotated[str, typer.Option("--questions", help="vicuna, mt-bench, or a JSONL file of questions.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Local FastChat data (data/<bench>/question.jsonl).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-l", help="Use the first N questions.")]


# --- generate ------------------------------------------------------------------------------------
ResumeOpt = Annotated[bool, typer.Option(help="Continue an earlier (killed) run from what it recorded.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace earlier output instead of refusing to.")]


def _check_writable(path: Path, flag: str, is_dir: bool = False) -> None:
    """Fail before any work when `path` cannot be written (it, or a directory above it, is the wrong kind of thing)."""
    if path.exists() and path.is_dir() != is_dir:
        raise HarnessError(f"{flag} {path}: {'not a directory' if is_dir else 'is a directory'}")
    parent = next(p for p in path.parents if p.exists()) if not path.exists() else None
    if parent is not None and not parent.is_dir():
        raise HarnessError(f"{flag} {path}: {parent} is not a directory")


def _check_rerun(resume: bool, overwrite: bool) -> None:
    if resume and overwrite:
        raise HarnessError("--resume and --overwrite: pass one or the other (continue, or start afresh)")


def _check_sampling(temperature: float, top_p: float) -> None:
    if not math.isfinite(temperature) or temperature < 0:
        raise HarnessError(f"--temperature: must be >= 0 (0 = greedy), got {temperature}")
    if not math.isfinite(top_p) or not 0 < top_p <= 1:
        raise HarnessError(f"--top-p: must be in (0, 1], got {top_p}")


def _variant_names(model: str, adapters: list[str], with_base: bool) -> list[str]:
    """Answer-file names in iter_variants order (base first, then each adapter), made distinct; known before loading."""
    from harness.models.loading import short_name

    names = [short_name(model)] if with_base or not adapters else []
    names += [Path(a).name or a for a in adapters]
    used: set[str] = set()
    out = []
    for name in names:
        while name in used:
            name += "_"
        used.add(name)
        out.append(name)
    return out


def _answer_variant(variant: Any, name: str, qs: list[Any], store: Any, resume: bool, quiet: bool,
                    sampling: dict[str, Any]) -> dict[str, list[str]]:
    """Every question's replies, turn by turn (turn t sees the model's own earlier replies); each batch is stored."""
    from harness.models.loading import model_key
    from harness.requests import Generate
    from harness.runner import run_requests
    from harness.task import TaskConfig, generate_request

    cfg = TaskConfig(**sampling)  # the one request builder applies every generation setting, as for a task

    tok = getattr(variant.model, "tokenizer", None)
    stop = () if getattr(tok, "chat_template", None) else ("\nUser:",)  # plain transcripts: stop at the next turn
    replies: dict[str, list[str]] = {q.question_id: [] for q in qs}
    for t in range(max(len(q.turns) for q in qs)):
        reqs: dict[str, Generate] = {}
        for q in qs:
            if t < len(q.turns):
                msgs: list[tuple[str, str]] = []
                for i in range(t):
                    msgs += [("user", q.turns[i]), ("assistant", replies[q.question_id][i])]
                msgs.append(("user", q.turns[t]))
                reqs[q.question_id] = generate_request(cfg, tuple(msgs), stop, sampling["max_new_tokens"])
        got = run_requests(variant.model, model_key(variant.identity), list(reqs.values()), store, resume, quiet,
                           f"{name} turn {t + 1}")
        for qid, r in reqs.items():
            replies[qid].append(got[r.key()][0].strip())
    return replies


@model_options(kind=False)
def generate(
    model: ModelSpec,
    questions: QuestionsOpt = "vicuna",
    data_dir: DataDirOpt = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="One <model>.jsonl per variant here.")] = Path(
        "answers"),
    limit: LimitOpt = None,
    max_new_tokens: Annotated[int, typer.Option(help="Reply budget per turn.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    resume: ResumeOpt = False,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Answer a question set with the base model and each adapter; multi-turn questions are answered turn by turn.

    Answers are recorded in OUTPUT_DIR/.store.sqlite batch by batch (as `harness run` does), so a killed run
    continues with --resume; answer files already there are only replaced with --resume or --overwrite.
    """
    from harness.evaluate import open_session
    from harness.models.loading import Variant
    from harness.results import atomic_write_text
    from harness.store import Store
    from judges.questions import answer_row, dumps, load_questions

    check_positive(limit, "--limit")
    check_positive(max_new_tokens, "--max-new-tokens")
    _check_sampling(temperature, top_p)
    _check_rerun(resume, overwrite)
    _check_writable(output_dir, "--output-dir", is_dir=True)
    qs = load_questions(questions, data_dir, limit=limit)
    if not qs:  # before any model loads or store is made: nothing is written
        where = "" if Path(questions).is_file() or data_dir is None else f" (under --data-dir {data_dir})"
        raise HarnessError(f"--questions {questions}: no questions to answer{where}")
    spec = replace(model, kind="causal")
    names = _variant_names(spec.model, spec.adapters, spec.with_base)
    existing = [n for n in names if (output_dir / f"{n}.jsonl").exists()]
    if existing and not (resume or overwrite):
        raise HarnessError(f"--output-dir {output_dir}: {existing[0]}.jsonl already exists; pass --resume to continue "
                           "from the answers recorded there, or --overwrite to generate afresh")
    sampling = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
    session = open_session(spec)
    store: Store | None = None
    try:
        store = Store.open(output_dir / ".store.sqlite", resume)  # only once the model loaded: bad input writes nothing
        for name, v in zip(names, session.variants):
            variant = Variant(v.label, session.model_for(v.label), v.identity, v.adapter_path)
            replies = _answer_variant(variant, name, qs, store, resume, quiet, sampling)
            settings = {**sampling, "base": spec.model, "adapter": variant.adapter_path}
            path = output_dir / f"{name}.jsonl"
            atomic_write_text(path, dumps([answer_row(q, name, replies[q.question_id], settings) for q in qs]))
            print(f"{name}: {len(qs)} answers -> {path}")
    finally:
        session.close()
        if store is not None:
            store.close()


# --- judge ---------------------------------------------------------------------------------------
AnswersOpt = Annotated[list[Path] | None, typer.Option("--answers", help="Answers JSONL files or directories.")]
AnswersArg = Annotated[list[Path] | None, typer.Argument(help="More answers files (a shell glob after --answers).",
                                                          show_default=False)]
JudgeOpt = Annotated[str, typer.Option("--judge", help="Judge model name at the endpoint.")]
BaseUrlOpt = Annotated[str | None, typer.Option("--judge-base-url", help="OpenAI-compatible endpoint (vLLM, local).")]


def _answer_files(opt: list[Path] | None, arg: list[Path] | None) -> list[Path]:
    files: list[Path] = []
    for p in (opt or []) + (arg or []):
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise HarnessError(f"--answers {p}: no .jsonl answers files in the directory")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise HarnessError(f"--answers {p}: no such file or directory")
    if not files:
        raise HarnessError("--answers: give at least one answers JSONL file")
    return files


def _load_answers(files: list[Path]) -> dict[str, dict[str, list[str]]]:
    from judges.questions import read_answers

    out: dict[str, dict[str, list[str]]] = {}
    seen: dict[str, Path] = {}
    for f in files:
        name, ans = read_answers(f)
        if name in out:
            raise HarnessError(f"{f}: model {name!r} already read from {seen[name]}")
        out[name], seen[name] = ans, f
    return out


def _default_cache() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "harness" / "judge_cache.sqlite"


def _parse_turns(spec: str | None) -> list[int] | None:
    if not spec:
        return None
    try:
        turns = [int(t) for t in spec.split(",")]
    except ValueError:
        turns = []
    if not turns or min(turns) < 1:
        raise HarnessError(f"--turns {spec}: expected turn numbers from 1, e.g. 1 or 1,2")
    return turns


def _check_judge_options(opts: dict[str, Any]) -> None:
    """Every numeric flag, before any file is read or request sent."""
    check_positive(opts["limit"], "--limit")
    check_positive(opts["max_concurrency"], "--max-concurrency")
    check_positive(opts["max_attempts"], "--max-attempts")
    check_positive(opts["max_tokens"], "--max-tokens")
    for flag, value, ok in (("--max-cost", opts["max_cost"], lambda v: v > 0), ("--timeout", opts["timeout"], lambda v: v > 0),
                            ("--temperature", opts["temperature"], lambda v: v >= 0),
                            ("--backoff", opts["backoff"], lambda v: v >= 0),
                            ("--price-in", opts["price_in"], lambda v: v >= 0),
                            ("--price-out", opts["price_out"], lambda v: v >= 0)):
        if value is not None and not ok(value):
            raise HarnessError(f"{flag}: must be {'>= 0' if ok(0) else '> 0'}, got {value}")
    _check_rerun(opts["resume"], opts["overwrite"])


def _settings(opts: dict[str, Any]) -> Any:
    from judges.client import DEFAULT_BASE_URL, JudgeSettings

    base_url = opts["judge_base_url"] or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if not base_url.startswith(("http://", "https://")) or len(base_url.split("://", 1)[1].strip("/")) == 0:
        flag = "--judge-base-url" if opts["judge_base_url"] else "OPENAI_BASE_URL"
        raise HarnessError(f"{flag} {base_url}: expected an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
    if not os.environ.get("OPENAI_API_KEY") and base_url == DEFAULT_BASE_URL:
        raise HarnessError("OPENAI_API_KEY is not set (the judge key is read from the environment only)")
    settings = JudgeSettings(model=opts["judge"], base_url=base_url, temperature=opts["temperature"],
                             max_tokens=opts["max_tokens"], timeout=opts["timeout"], max_attempts=opts["max_attempts"],
                             backoff_base=opts["backoff"], max_concurrency=opts["max_concurrency"],
                             price_in=opts["price_in"], price_out=opts["price_out"], max_cost=opts["max_cost"])
    settings.prices()  # fail fast on --max-cost without prices
    return settings


def _plan(kind: str, opts: dict[str, Any], settings: Any) -> tuple[list[Any], list[str], list[str]]:
    """(jobs, skipped question ids, model names) from the answers and questions."""
    from judges.grading import multi_jobs, pairwise_jobs, single_jobs
    from judges.questions import load_questions

    answers = _load_answers(_answer_files(opts["answers"], opts["more"]))
    qs = load_questions(opts["questions"], opts["data_dir"], opts["reference"], limit=opts["limit"])
    common = {"reference_mode": opts["reference_mode"], "turns": _parse_turns(opts["turns"])}
    if kind == "single":
        jobs, skipped = single_jobs(qs, answers, settings, **common)
    elif kind == "multi":
        jobs, skipped = multi_jobs(qs, answers, settings, seed=opts["seed"], **common)
    else:
        jobs, skipped = pairwise_jobs(qs, answers, settings, baseline=opts["baseline"], policy=opts["disagreement"],
                                      **common)
    return jobs, skipped, list(answers)


def _secrets() -> tuple[str, ...]:
    key = os.environ.get("OPENAI_API_KEY")
    return (key,) if key else ()


def _dump(rows: list[dict[str, Any]]) -> str:
    from judges.client import redact

    return redact("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows), _secrets())


class _Journal:
    """The judgments file, one line appended (and flushed) per finished judgment, so a kill -9 keeps them all.

    The file is opened on the first judgment only: a run that judges nothing leaves an earlier file as it was.
    """

    def __init__(self, path: Path, append: bool) -> None:
        self.path, self.mode = path, "a" if append else "w"
        self.records: dict[str, dict[str, Any]] = {}
        self._f: Any = None

    def __call__(self, record: dict[str, Any]) -> None:
        if self._f is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = self.path.open(self.mode, encoding="utf-8")
        self._f.write(_dump([record]))
        self._f.flush()
        self.records[record["judgment_id"]] = record

    def close(self) -> bool:
        """Close; True when anything was written."""
        if self._f is None:
            return False
        self._f.close()
        return True


def _output(kind: str, opts: dict[str, Any], jobs: list[Any]) -> tuple[Path, dict[str, dict[str, Any]], bool]:
    """(judgments file, judgments it already holds (on --resume), whether to append to it)."""
    from harness.results import atomic_write_text
    from judges.grading import read_finished

    out = opts["output"] or Path("judgments") / f"{kind}__{opts['judge'].replace('/', '__')}.jsonl"
    _check_writable(out, "-o")
    if not out.exists() or opts["overwrite"]:
        return out, {}, False
    if not opts["resume"]:
        raise HarnessError(f"-o {out}: already exists; pass --resume to continue it, or --overwrite to judge afresh")
    done, ragged = read_finished(out, jobs)
    if ragged:  # a kill cut the last line: drop it before appending
        atomic_write_text(out, _dump([done[j.id] for j in jobs if j.id in done]))
    print(f"{len(done)} judgments from {out}, {len(jobs) - len(done)} to judge", file=sys.stderr)
    return out, done, True


def _api_error(record: dict[str, Any]) -> str:
    """The reason a call of this judgment failed (pairwise and multi records keep one error per call or answer)."""
    errs = record.get("errors")
    values = list(errs.values()) if isinstance(errs, dict) else list(errs or [])
    return next((e for e in [*values, record.get("error")] if isinstance(e, str) and e.startswith("api:")), "api: failed")


def _judge(kind: str, opts: dict[str, Any]) -> None:
    from harness.results import atomic_write_json, atomic_write_text, header
    from judges.client import RemoteFailure, ResponseCache
    from judges.grading import run_jobs

    _check_judge_options(opts)
    settings = _settings(opts)
    jobs, skipped, models = _plan(kind, opts, settings)
    out, done, append = _output(kind, opts, jobs)
    if skipped:
        print(f"{len(skipped)} questions skipped: not answered by every model ({', '.join(skipped[:5])}"
              f"{' ...' if len(skipped) > 5 else ''})", file=sys.stderr)
    todo = [j for j in jobs if j.id not in done]
    journal = _Journal(out, append)
    cache = None if opts["no_cache"] else ResponseCache(opts["cache"] or _default_cache())
    try:
        run = run_jobs(todo, settings, cache, quiet=opts["quiet"], skipped=skipped, on_record=journal)
    finally:
        if cache is not None:
            cache.close()
        wrote = journal.close()
        final = [r for j in jobs if (r := journal.records.get(j.id) or done.get(j.id)) is not None]
        if wrote or done:  # the same records in job order: a resumed run's file equals an uninterrupted one's
            atomic_write_text(out, _dump(final))
    if wrote or done:
        meta = {**header(), "kind": kind, "judge": settings.model, "judge_base_url": settings.base_url,
                "temperature": settings.temperature, "max_tokens": settings.max_tokens, "planned": len(jobs),
                "done": len(final), "resumed": len(done), "failed": len(run.failed), "stopped": run.stopped,
                "usage": vars(run.usage), "models": models, "questions": opts["questions"]}
        atomic_write_json(out.with_suffix(".usage.json"), json.loads(_dump([meta])))
    _print_judgment_summary(kind, final + run.failed)
    if run.failed:
        why = _api_error(run.failed[0])
        kept = f"{len(final)} kept in {out}; pass --resume to retry the others" if final else "nothing written"
        raise RemoteFailure(f"{len(run.failed)} of {len(jobs)} judgments failed at the judge endpoint "
                            f"{settings.base_url} ({why}); {kept}")
    print(f"{len(final)} judgments -> {out}; {run.usage.summary()}", file=sys.stderr)
    if run.stopped:
        raise typer.Exit(3)


def _print_judgment_summary(kind: str, records: list[dict[str, Any]]) -> None:
    if kind == "pairwise":
        tally: dict[tuple[str, str], list[int]] = {}
        for r in records:
            t = tally.setdefault((r["model_a"], r["model_b"]), [0, 0, 0, 0])
            t[{"model_a": 0, "tie": 1, "model_b": 2}.get(r["winner"], 3)] += 1
        for (a, b), (w, ti, lo, f) in tally.items():
            print(f"{a} vs {b}: {w} wins, {ti} ties, {lo} losses, {f} failed")
        return
    scores: dict[str, list[float]] = {}
    fails: dict[str, int] = {}
    for r in records:
        items = [(r["model"], r["score"])] if kind == "single" else list(r["scores"].items())
        for m, s in items:
            if s is None:
                fails[m] = fails.get(m, 0) + 1
            else:
                scores.setdefault(m, []).append(s)
    for m in sorted(set(scores) | set(fails)):
        v = scores.get(m, [])
        mean = f"{sum(v) / len(v):.2f}" if v else "n/a"
        print(f"{m}: mean score {mean} over {len(v)} judgments, {fails.get(m, 0)} failed")


def _judge_command(kind: str) -> Any:
    def command(
        answers: AnswersOpt = None,
        more: AnswersArg = None,
        judge: JudgeOpt = "gpt-4o",
        judge_base_url: BaseUrlOpt = None,
        questions: QuestionsOpt = "vicuna",
        data_dir: DataDirOpt = None,
        reference: Annotated[Path | None, typer.Option(help="Reference answers JSONL (FastChat format).")] = None,
        reference_mode: Annotated[str, typer.Option(help="auto (math/reasoning/coding), always or never.")] = "auto",
        turns: Annotated[str | None, typer.Option(help="Judge only these turns, e.g. 1 or 1,2.")] = None,
        limit: LimitOpt = None,
        baseline: Annotated[str | None, typer.Option(help="Pairwise: judge each model against this one only.")] = None,
        disagreement: Annotated[str, typer.Option(help="Pairwise, orders disagree: tie or separate.")] = "tie",
        seed: Annotated[int, typer.Option(help="Multi: seed of the answer order per question.")] = 0,
        temperature: Annotated[float, typer.Option(help="Judge temperature.")] = 0.0,
        max_tokens: Annotated[int, typer.Option(help="Judge reply budget.")] = 1024,
        max_concurrency: Annotated[int, typer.Option(help="Requests in flight.")] = 8,
        max_attempts: Annotated[int, typer.Option(help="Attempts per call (429/5xx/timeouts).")] = 6,
        timeout: Annotated[float, typer.Option(help="Seconds per attempt.")] = 120.0,
        backoff: Annotated[float, typer.Option(help="Backoff base in seconds (doubles per retry, jittered).")] = 1.0,
        max_cost: Annotated[float | None, typer.Option(help="Stop before spending more USD than this.")] = None,
        price_in: Annotated[float | None, typer.Option(help="USD per million prompt tokens.")] = None,
        price_out: Annotated[float | None, typer.Option(help="USD per million completion tokens.")] = None,
        cache: Annotated[Path | None, typer.Option(help="Response cache (default ~/.cache/harness/...).")] = None,
        no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the cache.")] = False,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="Judgments JSONL.")] = None,
        resume: Annotated[bool, typer.Option(help="Continue the judgments file: judge only what it lacks.")] = False,
        overwrite: OverwriteOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        _judge(kind, dict(locals()))

    command.__doc__ = {
        "single": "Grade each answer alone, 1-10 (reference-guided for math, reasoning and coding).",
        "multi": "Grade all models' answers to a question in one call, 1-9 each.",
        "pairwise": "Compare answers two at a time (A / B / tie), every pair in both orders.",
    }[kind]
    return command


# --- tournament ----------------------------------------------------------------------------------
def tournament(
    files: Annotated[list[Path], typer.Argument(help="Judgment files: harness JSONL, FastChat reviews, QLoRA ratings.")],
    elo: Annotated[bool, typer.Option("--elo/--no-elo", help="Elo over random match orders.")] = True,
    bt: Annotated[bool, typer.Option("--bt/--no-bt", help="Bradley–Terry MLE with bootstrap intervals.")] = True,
    k: Annotated[float, typer.Option("--k", help="Elo K factor (4 as QLoRA's Table 1, see README).")] = 4.0,
    elo_rounds: Annotated[int, typer.Option(help="Random orders for Elo.")] = 10_000,
    bt_rounds: Annotated[int, typer.Option(help="Bootstrap resamples for Bradley–Terry.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of orders and resamples.")] = 0,
    baseline: Annotated[str | None, typer.Option(help="Also report scores as a percentage of this model.")] = None,
    rename: Annotated[list[str] | None, typer.Option(help="OLD=NEW model name (repeatable).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Ratings Markdown.")] = Path("ratings.md"),
    plot: Annotated[Path | None, typer.Option(help="PNG of ratings with intervals (default: beside -o).")] = None,
) -> None:
    """Rate models from judged matches: Elo, Bradley–Terry, win rates, % of a baseline; Markdown + PNG + matches JSONL."""
    from harness.results import atomic_write_jsonl, atomic_write_text
    from judges.formats import load_judgments, pairs_from_singles
    from judges.ratings import (
        bradley_terry,
        plot_ratings,
        rating_markdown,
        relative_markdown,
        relative_scores,
        win_rate_markdown,
        win_rates,
    )
    from judges.ratings import elo as run_elo

    for path, flag in ((output, "-o"), (plot, "--plot")):
        if path is not None:
            _check_writable(path, flag)
    data = load_judgments(files, parse_options(rename, "--rename"))
    sections = ["# Ratings", "", "Inputs: " + ", ".join(f"`{Path(p).name}` ({fmt})" for p, fmt in data.sources.items()), ""]
    tables = []
    if data.matches and (elo or bt):
        if elo:
            tables.append(run_elo(data.matches, k=k, rounds=elo_rounds, seed=seed))
        if bt:
            tables.append(bradley_terry(data.matches, rounds=bt_rounds, seed=seed))
        sections += [rating_markdown(t) for t in tables]
        models, rate, count = win_rates(data.matches)
        sections.append(win_rate_markdown(models, rate, count, [r.model for r in tables[0].ratings]))
    elif not data.matches and baseline is None:
        raise HarnessError("no pairwise matches in the inputs; for single or multi scores pass --baseline MODEL")
    if baseline is not None:
        pairs = data.pairs + pairs_from_singles(data.singles, baseline)
        sections.append(relative_markdown(relative_scores(pairs, baseline, seed=seed), baseline))
    atomic_write_text(output, "\n".join(sections))
    print(f"ratings -> {output}", file=sys.stderr)
    if tables:
        png = plot or output.with_suffix(".png")
        plot_ratings(tables, png)
        matches_out = output.with_suffix(".matches.jsonl")
        atomic_write_jsonl(matches_out, [vars(m) for m in data.matches])
        print(f"plot -> {png}; matches -> {matches_out}", file=sys.stderr)
    for t in tables:
        print(t.method)
        for r in t.ratings:
            print(f"  {r.model:40s} {r.rating:7.1f}  [{r.lo:.1f}, {r.hi:.1f}]")


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
    judge_app = typer.Typer(no_args_is_help=True, help="Grade answers with an LLM judge (OpenAI-compatible endpoint).")
    for kind in ("single", "multi", "pairwise"):
        judge_app.command(kind)(_judge_command(kind))
    app.add_typer(judge_app, name="judge")
    app.command("tournament")(tournament)
