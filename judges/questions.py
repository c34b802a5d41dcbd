"""Question sets (Vicuna-80, MT-bench-80, any JSONL) and model answer files in FastChat's answer format.

Local copies are found under --data-dir in FastChat's layout (`data/vicuna_bench/question.jsonl`) or the
flattened one (`vicuna_bench__question.jsonl`); an explicit file path always works. Questions may have
several turns (MT-bench has two); references (for math, reasoning and coding) are read when present.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import cascade, find_local, load_hub
from harness.errors import HarnessError
from judges.formats import read_jsonl

# Where FastChat's raw question files live; fetched through `datasets` when no local copy is given.
FASTCHAT_RAW = "https://raw.githubusercontent.com/lm-sys/FastChat/main/fastchat/llm_judge/data"
BENCHES = {"vicuna": "vicuna_bench", "mt-bench": "mt_bench", "mt_bench": "mt_bench"}


@dataclass(frozen=True)
class Question:
    question_id: str
    turns: tuple[str, ...]
    category: str = ""
    reference: tuple[str, ...] | None = None


def _layouts(bench: str, what: str) -> list[str]:
    flat = f"{bench}__{what}.jsonl" if what == "question" else f"{bench}__reference_answer__gpt-4.jsonl"
    nested = f"data/{bench}/question.jsonl" if what == "question" else f"data/{bench}/reference_answer/gpt-4.jsonl"
    return [flat, f"llm_judge/{flat}", f"fastchat/llm_judge/{flat}", nested, nested.removeprefix("data/"),
            f"fastchat/llm_judge/{nested}"]


def question_from_row(row: dict[str, Any], where: str, line: int) -> Question:
    qid = row.get("question_id", row.get("id", row.get("prompt_id", line)))
    turns = row.get("turns", row.get("prompt"))
    if turns is None:
        for k in ("text", "question", "instruction"):
            if isinstance(row.get(k), str):
                turns = [row[k]]
                break
    if isinstance(turns, str):
        turns = [turns]
    if not turns or not all(isinstance(t, str) for t in turns):
        raise HarnessError(f"{where}:{line}: no question text (expected 'turns' list, or 'text'/'question'/'prompt')")
    ref = row.get("reference")
    ref_t = tuple(ref) if isinstance(ref, list) and any(ref) else None
    return Question(str(qid), tuple(turns), str(row.get("category", "")), ref_t)


def _hub_rows(bench: str) -> tuple[list[dict[str, Any]], str]:
    """FastChat's question file through `datasets` (hub mirror for MT-bench, FastChat's repository for Vicuna)."""
    hint = f"{_layouts(bench, 'question')[0]} or data/{bench}/question.jsonl, or --questions FILE"
    if bench == "mt_bench":
        return load_hub("HuggingFaceH4/mt_bench_prompts", None, "train", hint), f"hub:{bench}"
    return load_hub("json", None, "train", hint, data_files=f"{FASTCHAT_RAW}/{bench}/question.jsonl"), f"hub:{bench}"


def load_references(path: Path) -> dict[str, tuple[str, ...]]:
    """FastChat reference answers: {question_id: turns}."""
    out = {}
    for i, row in enumerate(read_jsonl(path), 1):
        qid, turns = answer_turns(row, path, i)
        out[qid] = tuple(turns)
    return out


def load_questions(spec: str, data_dir: Path | None = None, references: Path | None = None,
                   limit: int | None = None) -> list[Question]:
    """`vicuna`, `mt-bench` or a JSONL path; references from --reference, else beside the local question file."""
    bench = BENCHES.get(spec)
    ref_path = references
    if bench is None:
        if not Path(spec).is_file():
            raise HarnessError(f"--questions {spec}: not 'vicuna', 'mt-bench' or an existing JSONL file")
        rows, where = cascade(spec, None, (), read_jsonl, None, flag="--questions")
    else:
        rows, where = cascade(None, data_dir, _layouts(bench, "question"), read_jsonl, lambda: _hub_rows(bench))
        if ref_path is None and not where.startswith("hub:"):  # FastChat keeps references beside the questions
            ref_path = find_local(data_dir, *_layouts(bench, "reference"))
    questions = [question_from_row(r, where, i) for i, r in enumerate(rows, 1)]
    ids = [q.question_id for q in questions]
    if len(set(ids)) != len(ids):
        dup = next(q for q in ids if ids.count(q) > 1)
        raise HarnessError(f"{where}: question_id {dup} appears more than once")
    if ref_path is not None:
        refs = load_references(ref_path)
        questions = [Question(q.question_id, q.turns, q.category, refs.get(q.question_id, q.reference))
                     for q in questions]
    return questions[:limit] if limit else questions


def answer_turns(row: dict[str, Any], path: Path, line: int) -> tuple[str, list[str]]:
    """(question_id, reply per turn) from FastChat (`choices[0].turns`), legacy (`text`) or QLoRA (`generation`) rows."""
    if "question_id" not in row:
        raise HarnessError(f"{path}:{line}: missing column question_id")
    if isinstance(row.get("choices"), list) and row["choices"] and isinstance(row["choices"][0], dict):
        turns = row["choices"][0].get("turns")
    elif isinstance(row.get("turns"), list):
        turns = row["turns"]
    else:
        text = row.get("text", row.get("generation", row.get("answer")))
        turns = [text] if isinstance(text, str) else None
    if not turns or not all(isinstance(t, str) for t in turns):
        raise HarnessError(f"{path}:{line}: no answer text (expected choices[0].turns, text or generation)")
    return str(row["question_id"]), list(turns)


def read_answers(path: Path) -> tuple[str, dict[str, list[str]]]:
    """(model name, {question_id: replies}); the name is the rows' model_id (minus ':version') or the file stem."""
    rows = read_jsonl(path)
    if not rows:
        raise HarnessError(f"{path}: no answers in the file")
    name = str(rows[0].get("model_id") or path.stem).split(":")[0]
    out: dict[str, list[str]] = {}
    for i, row in enumerate(rows, 1):
        qid, turns = answer_turns(row, path, i)
        if qid in out:
            raise HarnessError(f"{path}:{i}: question_id {qid} answered twice")
        out[qid] = turns
    return name, out


def answer_row(question: Question, model_id: str, replies: list[str], generation: dict[str, Any]) -> dict[str, Any]:
    """One FastChat-format answer row. The answer id is derived from what was answered and how, so identical runs
    write identical rows (FastChat only needs it unique)."""
    qid: int | str = int(question.question_id) if question.question_id.isdigit() else question.question_id
    blob = json.dumps([model_id, question.question_id, replies, generation], sort_keys=True, default=str)
    answer_id = hashlib.sha256(blob.encode()).hexdigest()[:22]
    return {"question_id": qid, "answer_id": answer_id, "model_id": model_id,
            "choices": [{"index": 0, "turns": replies}], "tstamp": time.time(), "generation_settings": generation}


def dumps(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
