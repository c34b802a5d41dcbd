"""`harness score e2e|squad`: score existing outputs with the official metrics, no model needed.

`harness score e2e --refs REFS --hyps HYPS` reads the official E2E scorer's input formats: references as plain text
(one per line, references of one MR together, groups separated by a blank line; a file with no blank line has one
reference per line) or a CSV/TSV with an `mr` column (consecutive identical MRs form a group), or the LoRA
repository's `MR||reference` lines; hypotheses as plain text (one per line), a CSV/TSV with an `mr` column, or a
`samples/e2e.jsonl` of `harness run`. `harness score squad --data dev-v1.1.json --predictions preds.json` prints
what the official evaluate-v1.1.py prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from harness.errors import HarnessError

score_app = typer.Typer(no_args_is_help=True, help="Score existing outputs with the official metrics (no model).")


def _read_text(path: Path, flag: str) -> str:
    if not path.exists():
        raise HarnessError(f"{flag} {path}: file not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{flag} {path}: not UTF-8 text ({e.reason})") from None


def _is_table(path: Path) -> bool:
    return path.suffix.lower() in (".csv", ".tsv")


def _is_lora(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return bool(lines) and all("||" in ln for ln in lines)


def read_e2e_refs(path: Path) -> tuple[list[list[str]], list[str] | None]:
    """Reference groups (and their MRs when the file has them) in file order, as measure_scores.py reads them."""
    from tasks.e2e import read_csv_pairs, read_lora_pairs

    if _is_table(path) or _is_lora(_read_text(path, "--refs")):
        pairs = read_csv_pairs(path) if _is_table(path) else read_lora_pairs(path)
        mrs: list[str] = []
        groups: list[list[str]] = []
        for mr, ref in pairs:  # consecutive identical MRs are one group, as in the official scorer
            if not mrs or mrs[-1] != mr:
                mrs.append(mr)
                groups.append([])
            if ref:
                groups[-1].append(ref)
        for mr, g in zip(mrs, groups):
            if not g:
                raise HarnessError(f"--refs {path}: meaning representation {mr!r} has no references")
        return groups, mrs
    lines = [ln.strip() for ln in _read_text(path, "--refs").splitlines()]
    groups = [[]]
    for i, line in enumerate(lines, 1):
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
        elif i > 1:
            raise HarnessError(f"--refs {path}:{i}: empty reference group (two blank lines in a row)")
    if not groups[-1]:
        groups.pop()
    if not groups:
        raise HarnessError(f"--refs {path}: no references")
    if len(groups) == 1:  # no blank line at all: one single reference per line
        groups = [[r] for r in groups[0]]
    return groups, None


def read_e2e_hyps(path: Path) -> tuple[list[str], list[str] | None]:
    """System outputs in order (and their MRs when the file has them)."""
    from tasks.e2e import read_csv_pairs

    if _is_table(path):
        pairs = read_csv_pairs(path, text_column="output")
        return [h for _, h in pairs], [mr for mr, _ in pairs]
    text = _read_text(path, "--hyps")
    if path.suffix.lower() == ".jsonl":
        outs, mrs = [], []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise HarnessError(f"--hyps {path}:{i}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("output"), str):
                raise HarnessError(f"--hyps {path}:{i}: expected an object with a string `output`")
            outs.append(row["output"].strip())
            mrs.append(row.get("mr"))
        named = [m for m in mrs if isinstance(m, str)]
        return outs, named if len(named) == len(mrs) else None
    return [ln.strip() for ln in text.splitlines()], None


@score_app.command("e2e")
def score_e2e(
    refs: Annotated[Path, typer.Option("--refs", help="References: text (blank-line-separated groups), CSV/TSV with mr.")],
    hyps: Annotated[Path, typer.Option("--hyps", help="System outputs: one per line, CSV/TSV with mr, or samples jsonl.")],
    skip_meteor: Annotated[bool, typer.Option("--skip-meteor", help="Do not run METEOR (no Java needed).")] = False,
    stderr: Annotated[bool, typer.Option("--stderr", help="Also print bootstrap standard errors.")] = False,
) -> None:
    """BLEU, NIST, METEOR, ROUGE_L and CIDEr exactly as the official E2E scorer (measure_scores.py) prints them."""
    from harness.metrics.nlg import E2EScores

    groups, ref_mrs = read_e2e_refs(refs)
    outs, hyp_mrs = read_e2e_hyps(hyps)
    if len(outs) != len(groups):
        raise HarnessError(f"--hyps {hyps}: {len(outs)} hypotheses but --refs {refs} has {len(groups)} reference groups "
                           f"(one output line per meaning representation)")
    if ref_mrs is not None and hyp_mrs is not None:
        for i, (a, b) in enumerate(zip(ref_mrs, hyp_mrs), 1):
            if a != b:
                raise HarnessError(f"--hyps {hyps}: hypothesis {i} is for MR {b!r} but reference group {i} is for {a!r}")
    scores = E2EScores(groups, outs, with_meteor=not skip_meteor)
    out: dict[str, object] = dict(scores.values())
    if stderr:
        out["stderr"] = scores.bootstrap_stderr()
    print(json.dumps(out))


@score_app.command("squad")
def score_squad(
    data: Annotated[Path, typer.Option("--data", help="Official SQuAD v1.1 dataset file (dev-v1.1.json).")],
    predictions: Annotated[Path, typer.Option("--predictions", help="JSON object: question id -> answer text.")],
) -> None:
    """{"exact_match", "f1"} exactly as the official evaluate-v1.1.py prints them (unanswered questions score 0;
    predictions for ids not in the dataset are ignored, as the official script does, with a warning)."""
    from harness.metrics.squad import evaluate, squad_questions
    from tasks.squad import load_official_dataset

    dataset, version = load_official_dataset(data)
    if version != "1.1":
        print(f"Evaluation expects v-1.1, but got dataset with v-{version}", file=sys.stderr)
    try:
        preds = json.loads(_read_text(predictions, "--predictions"))
    except json.JSONDecodeError as e:
        raise HarnessError(f"--predictions {predictions}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(preds, dict):
        raise HarnessError(f"--predictions {predictions}: expected a JSON object mapping question id to answer text")
    ids = {qa["id"] for qa in squad_questions(dataset)}
    unknown = [k for k in preds if k not in ids]
    if unknown:
        print(f"warning: --predictions {predictions}: {len(unknown)} prediction(s) for ids not in {data} ignored "
              f"(e.g. {unknown[0]!r}), as evaluate-v1.1.py does", file=sys.stderr)
    known = {k: v for k, v in preds.items() if k in ids}
    print(json.dumps(evaluate(dataset, known, where=f"--predictions {predictions}")))


def register(app: typer.Typer) -> None:
    app.add_typer(score_app, name="score")
