"""`harness generate`, `harness judge single|multi|pairwise`, `harness tournament`: LLM-judged evaluation.

generate writes one FastChat-format answers file per model variant; judge sends those answers to an
OpenAI-compatible judge and writes judgments JSONL; tournament turns judgments (ours, FastChat review
tables, QLoRA ratings-gpt4 files) into Elo / Bradley–Terry ratings with intervals, a win-rate matrix and
scores as a percentage of a baseline, as Markdown plus a PNG.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from harness.cli import (
    AdapterOpt,
    BatchOpt,
    ComputeOpt,
    DeviceOpt,
    DtypeOpt,
    Load4Opt,
    Load8Opt,
    ModelOpt,
    QuietOpt,
    RevisionOpt,
    TrustOpt,
    WithBaseOpt,
    check_positive,
    model_spec,
    parse_options,
)
from harness.errors import HarnessError

QuestionsOpt = Annotated[str, typer.Option("--questions", help="vicuna, mt-bench, or a JSONL file of questions.")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Local FastChat data (data/<bench>/question.jsonl).")]
LimitOpt = Annotated[int | None, typer.Option("--limit", "-l", help="Use the first N questions.")]


# --- generate ------------------------------------------------------------------------------------
def generate(
    model: ModelOpt,
    adapter: AdapterOpt = None,
    with_base: WithBaseOpt = False,
    questions: QuestionsOpt = "vicuna",
    data_dir: DataDirOpt = None,
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="One <model>.jsonl per variant here.")] = Path(
        "answers"),
    limit: LimitOpt = None,
    max_new_tokens: Annotated[int, typer.Option(help="Reply budget per turn.")] = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    load_in_4bit: Load4Opt = False,
    load_in_8bit: Load8Opt = False,
    bnb_4bit_compute_dtype: ComputeOpt = "float32",
    dtype: DtypeOpt = "float32",
    device: DeviceOpt = "cpu",
    batch_size: BatchOpt = 8,
    revision: RevisionOpt = None,
    trust_remote_code: TrustOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Answer a question set with the base model and each adapter; multi-turn questions are answered turn by turn."""
    from harness.models.loading import iter_variants, model_key, short_name
    from harness.requests import Generate
    from harness.results import atomic_write_text
    from harness.runner import run_requests
    from judges.questions import answer_row, dumps, load_questions

    check_positive(limit, "--limit")
    check_positive(max_new_tokens, "--max-new-tokens")
    qs = load_questions(questions, data_dir, limit=limit)
    spec = model_spec(model, adapter, with_base, load_in_4bit, load_in_8bit, bnb_4bit_compute_dtype, dtype, device,
                      batch_size, "causal", revision, trust_remote_code)
    used: set[str] = set()
    for variant in iter_variants(spec):
        name = short_name(model) if variant.adapter_path is None else variant.label
        while name in used:
            name += "_"
        used.add(name)
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
                    reqs[q.question_id] = Generate(prompt=tuple(msgs), stop=stop, max_new_tokens=max_new_tokens,
                                                   temperature=temperature, top_p=top_p, seed=seed)
            got = run_requests(variant.model, model_key(variant.identity), list(reqs.values()), quiet=quiet,
                               description=f"{name} turn {t + 1}")
            for qid, r in reqs.items():
                replies[qid].append(got[r.key()][0].strip())
        settings = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed,
                    "base": model, "adapter": variant.adapter_path}
        path = output_dir / f"{name}.jsonl"
        atomic_write_text(path, dumps([answer_row(q, name, replies[q.question_id], settings) for q in qs]))
        print(f"{name}: {len(qs)} answers -> {path}")


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
            files += sorted(p.glob("*.jsonl"))
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


def _judge(kind: str, opts: dict[str, Any]) -> None:
    from harness.results import atomic_write_json, atomic_write_jsonl, header
    from judges.client import DEFAULT_BASE_URL, JudgeSettings, ResponseCache
    from judges.grading import multi_jobs, pairwise_jobs, run_jobs, single_jobs
    from judges.questions import load_questions

    check_positive(opts["limit"], "--limit")
    check_positive(opts["max_concurrency"], "--max-concurrency")
    check_positive(opts["max_attempts"], "--max-attempts")
    if opts["max_cost"] is not None and opts["max_cost"] <= 0:
        raise HarnessError(f"--max-cost: must be > 0, got {opts['max_cost']}")
    answers = _load_answers(_answer_files(opts["answers"], opts["more"]))
    qs = load_questions(opts["questions"], opts["data_dir"], opts["reference"], limit=opts["limit"])
    base_url = opts["judge_base_url"] or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if not os.environ.get("OPENAI_API_KEY") and base_url == DEFAULT_BASE_URL:
        raise HarnessError("OPENAI_API_KEY is not set (the judge key is read from the environment only)")
    settings = JudgeSettings(model=opts["judge"], base_url=base_url, temperature=opts["temperature"],
                             max_tokens=opts["max_tokens"], timeout=opts["timeout"], max_attempts=opts["max_attempts"],
                             backoff_base=opts["backoff"], max_concurrency=opts["max_concurrency"],
                             price_in=opts["price_in"], price_out=opts["price_out"], max_cost=opts["max_cost"])
    settings.prices()  # fail fast on --max-cost without prices
    turns = [int(t) for t in opts["turns"].split(",")] if opts["turns"] else None
    common = {"reference_mode": opts["reference_mode"], "turns": turns}
    if kind == "single":
        jobs, skipped = single_jobs(qs, answers, settings, **common)
    elif kind == "multi":
        jobs, skipped = multi_jobs(qs, answers, settings, seed=opts["seed"], **common)
    else:
        jobs, skipped = pairwise_jobs(qs, answers, settings, baseline=opts["baseline"], policy=opts["disagreement"],
                                      **common)
    if skipped:
        print(f"{len(skipped)} questions skipped: not answered by every model ({', '.join(skipped[:5])}"
              f"{' ...' if len(skipped) > 5 else ''})", file=sys.stderr)
    cache = None if opts["no_cache"] else ResponseCache(opts["cache"] or _default_cache())
    try:
        run = run_jobs(jobs, settings, cache, quiet=opts["quiet"], skipped=skipped)
    finally:
        if cache is not None:
            cache.close()
    out = opts["output"] or Path("judgments") / f"{kind}__{opts['judge'].replace('/', '__')}.jsonl"
    atomic_write_jsonl(out, run.records)
    meta = {**header(), "kind": kind, "judge": settings.model, "judge_base_url": settings.base_url,
            "temperature": settings.temperature, "max_tokens": settings.max_tokens, "planned": run.planned,
            "done": len(run.records), "stopped": run.stopped, "usage": vars(run.usage), "models": list(answers),
            "questions": opts["questions"]}
    atomic_write_json(out.with_suffix(".usage.json"), meta)
    _print_judgment_summary(kind, run.records)
    print(f"{len(run.records)} judgments -> {out}; {run.usage.summary()}", file=sys.stderr)
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
