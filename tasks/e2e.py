"""E2E NLG Challenge: restaurant meaning representation -> one-sentence description (Novikova et al., 2017).

Data: hub `GEM/e2e_nlg` (or `e2e_nlg`), the challenge CSVs (`mr,ref`: `DIR/e2e/testset_w_refs.csv`, `devset.csv`,
`trainset.csv`, also under `DIR/e2e-dataset/`) or the LoRA repository's `name : X | Type : Y||reference` lines
(`DIR/e2e/test.txt`, `valid.txt`, `train.txt`, also under `DIR/lora-e2e/`); `--task-option data=FILE` picks one file.
References are grouped by meaning representation (630 in the test set) and each MR is decoded once, with the
run's decoding settings (the LoRA paper used `--num-beams 10 --length-penalty 0.8 --no-repeat-ngram-size 4`).
Metrics are corpus-level and identical to the official scorer's (see harness/metrics/nlg/): BLEU, NIST, METEOR,
ROUGE_L, CIDEr, with bootstrap standard errors (none for METEOR). `--task-option skip_meteor=1` runs without Java.

`--num-fewshot k`: k (MR, reference) pairs of the train split (drawn by --seed, never the evaluated MR), each the
zero-shot prompt plus ` {reference}` and a blank line, open the prompt (with --chat-template: user/assistant turns).

Task options (also as `e2e.KEY=`, which wins, when other tasks share the run): data=FILE, train_data=FILE,
prompt=TEMPLATE (with {mr}; `\\n` for a newline), skip_meteor=1, bootstrap_iters=N (default 200; 0 for none).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from harness.data import as_row, cascade, load_hub, read_table, typed
from harness.errors import HarnessError
from harness.metrics.nlg import JAVA_MISSING, METRICS, E2EScores, coco_tokenize, rouge_l
from harness.metrics.stats import Metric
from harness.requests import Answer, Request
from harness.task import CAUSAL, Doc, ModelInfo, generate_request
from tasks._common import FEWSHOT_DELIMITER, FewShotTask

DEFAULT_PROMPT = "Meaning representation: {mr}\nDescription:"
CHAT_INSTRUCTION = "Write one sentence describing this restaurant: {mr}"
STOP = ("\n",)
# The LoRA repository's attribute names -> the challenge's.
LORA_KEYS = {"name": "name", "Type": "eatType", "area": "area", "food": "food", "price": "priceRange",
             "customer rating": "customer rating", "family friendly": "familyFriendly", "near": "near"}
SPLIT_FILES = {
    "test": ("e2e/testset_w_refs.csv", "e2e-dataset/testset_w_refs.csv", "e2e/test.txt", "lora-e2e/test.txt"),
    "validation": ("e2e/devset.csv", "e2e-dataset/devset.csv", "e2e/valid.txt", "lora-e2e/valid.txt"),
    "train": ("e2e/trainset.csv", "e2e-dataset/trainset.csv", "e2e/train.txt", "lora-e2e/train.txt"),
}


def lora_mr(text: str, where: str) -> str:
    """`name : X | Type : Y` -> the challenge's `name[X], eatType[Y]`, so every source yields the same prompt."""
    parts = []
    for field in text.split(" | "):
        key, sep, value = field.partition(" : ")
        key = key.strip()
        if not sep or key not in LORA_KEYS:
            raise HarnessError(f"{where}: cannot parse meaning representation field {field.strip()!r}")
        value = re.sub(r"(\d) - (\d)", r"\1-\2", value.strip().replace("£ ", "£"))  # undo LoRA's tokenization
        parts.append(f"{LORA_KEYS[key]}[{value}]")
    return ", ".join(parts)


def read_lora_pairs(path: Path) -> list[tuple[str, str]]:
    """(mr, ref) pairs of a LoRA-repository E2E file: one `MR||reference` per line."""
    pairs = []
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "||" not in line:
            raise HarnessError(f"{path}:{i}: expected `meaning representation||reference`")
        mr, ref = line.split("||", 1)
        pairs.append((lora_mr(mr, f"{path}:{i}"), ref.strip()))
    return pairs


def fix_mojibake(s: str) -> str:
    """The character repairs the official scorer applies to CSV/TSV input."""
    return s.replace("\ufeff", "").replace("Ł", "£").replace("Â£", "£").replace("Ã©", "é").replace("ã©", "é")


def _strip_quotes(s: str) -> str:
    return re.sub(r"\s*['\"]?\s*$", "", re.sub(r"^\s*['\"]?\s*", "", s))


def official_table_pairs(path: Path) -> list[tuple[str, str]] | None:
    """Two-column rows parsed the way measure_scores.py's read_tsv does, or None if the file does not fit that reader.

    The official reader splits on tabs (or on `","` when there is no tab), drops a header starting with `mr`, and
    strips one quote character and whitespace at each end of each field: a reference written `'The Phoenix' is ...`
    loses its first quote. Reading it the same way keeps every score identical to the official one.
    """
    text = path.read_text(encoding="utf-8")
    lines = [fix_mojibake(ln.strip()) for ln in text.splitlines()]
    rows = [ln.split("\t") for ln in lines if ln]
    if not rows:
        return None
    if all(len(r) == 1 for r in rows):
        rows = [r[0].split('","') for r in rows]
    if re.match(r'^"?mr', rows[0][0], re.I):
        rows = rows[1:]
    if not rows or any(len(r) != 2 for r in rows):
        return None
    return [(_strip_quotes(a), _strip_quotes(b).replace('""', '"')) for a, b in rows]


def read_csv_pairs(path: Path, text_column: str = "ref") -> list[tuple[str, str]]:
    """(mr, text) pairs of a challenge-format CSV/TSV (columns `mr` and `ref`, any case, or MR + one other column)."""
    if not path.exists():
        raise HarnessError(f"{path}: file not found")
    try:
        official = official_table_pairs(path)
    except UnicodeDecodeError as e:
        raise HarnessError(f"{path}: not UTF-8 text ({e.reason})") from None
    if official is not None:
        for i, (mr, _) in enumerate(official, 2):
            if not mr:
                raise HarnessError(f"{path} row {i}: empty meaning representation")
        return official
    rows = read_table(path)
    if not rows:
        raise HarnessError(f"{path}: no rows")
    as_row(rows[0], f"{path} row 2")
    cols = {c.lower().strip().lstrip("\ufeff"): c for c in rows[0]}
    if "mr" not in cols:
        raise HarnessError(f"{path}: no `mr` column (columns: {', '.join(rows[0])})")
    other = cols.get(text_column) or next((c for k, c in cols.items() if k != "mr"), None)
    if other is None:
        raise HarnessError(f"{path}: no `{text_column}` column next to `mr` (columns: {', '.join(rows[0])})")
    out = []
    for i, r in enumerate(rows, 2):
        where = f"{path} row {i}"
        mr, text = typed(as_row(r, where).get(cols["mr"]) or "", str, "mr", where).strip(), r.get(other)
        if not mr:
            raise HarnessError(f"{where}: empty meaning representation")
        if text is None:
            raise HarnessError(f"{where}: missing `{other}` value")
        out.append((fix_mojibake(mr), fix_mojibake(typed(text, str, other, where).strip())))
    return out


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(mr, ref) pairs of any supported local E2E file."""
    if path.suffix.lower() == ".txt":
        if not path.exists():
            raise HarnessError(f"{path}: file not found")
        return read_lora_pairs(path)
    return read_csv_pairs(path)


def group_pairs(pairs: list[tuple[str, str]], where: str) -> list[tuple[str, list[str]]]:
    """References grouped by MR, in order of first appearance; an MR whose references are all empty is an error."""
    groups: dict[str, list[str]] = {}
    for mr, ref in pairs:
        groups.setdefault(mr, [])
        if ref:
            groups[mr].append(ref)
    for mr, refs in groups.items():
        if not refs:
            raise HarnessError(f"{where}: meaning representation {mr!r} has no references")
    return list(groups.items())


def _hub_pairs(split: str) -> tuple[list[tuple[str, str]], str]:
    errors = []
    for path in ("GEM/e2e_nlg", "e2e_nlg"):
        try:
            rows = load_hub(path, None, split, f"{SPLIT_FILES[split][0]} or {SPLIT_FILES[split][2]}")
        except HarnessError as e:
            errors.append(e)
            continue
        pairs: list[tuple[str, str]] = []
        seen: set[str] = set()
        for r in rows:
            mr = str(r.get("meaning_representation") or "")
            if r.get("references"):  # GEM: every row of an MR lists all its references; take them once
                if mr not in seen:
                    pairs += [(mr, ref) for ref in r["references"]]
                seen.add(mr)
            else:  # one row per (MR, reference)
                pairs.append((mr, r.get("target") or r.get("human_reference") or ""))
        return pairs, f"hub:{path}/{split}"
    raise errors[0]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class E2E(FewShotTask):
    name = "e2e"
    version = "1"
    output_type = "generate"
    metrics = METRICS
    data_source = "hub GEM/e2e_nlg (test); local DIR/e2e/testset_w_refs.csv or DIR/e2e/test.txt (LoRA format)"

    option_keys = {"data": "test file (challenge CSV or LoRA test.txt)", "train_data": "training file",
                   "valid_data": "validation file", "prompt": "prompt template with {mr}",
                   "skip_meteor": "1: score without Java (no METEOR)", "bootstrap_iters": "bootstrap resamples (200)"}

    def _pairs(self, split: str) -> tuple[list[tuple[str, str]], str]:
        key = "data" if split == "test" else "train_data" if split == "train" else "valid_data"
        return cascade(self.option(key) or None, self.cfg.data_dir, SPLIT_FILES[split], read_pairs,
                       lambda: _hub_pairs(split), flag=f"--task-option {key}",
                       missing=f"none of {', '.join(SPLIT_FILES[split])}")

    def docs(self) -> list[Doc]:
        if not _flag(self.option("skip_meteor")) and shutil.which("java") is None:
            raise HarnessError(JAVA_MISSING)  # before any generation, not after it
        pairs, where = self._pairs("test")
        self.source_description = where
        docs = [{"id": str(i), "mr": mr, "refs": refs} for i, (mr, refs) in enumerate(group_pairs(pairs, where))]
        self.draw_fewshot(docs)
        return docs

    def fewshot_pool(self) -> tuple[list[dict[str, str]], str]:
        """One row per (MR, reference) pair of the train split, as for training."""
        pairs, where = self._pairs("train")
        return [{"mr": mr, "ref": ref} for mr, ref in pairs if ref], where

    def fewshot_key(self, row: dict[str, Any]) -> Hashable:
        return row["mr"]

    def prompt(self, mr: str) -> str | tuple[tuple[str, str], ...]:
        """The zero-shot prompt (also the training prompt)."""
        if self.cfg.chat_template:
            return (("user", CHAT_INSTRUCTION.format(mr=mr)),)
        template = (self.option("prompt") or DEFAULT_PROMPT).replace("\\n", "\n")
        if "{mr}" not in template:
            raise HarnessError(f"--task-option prompt={template!r}: the template needs a {{mr}} placeholder")
        return template.format(mr=mr)

    def fewshot_prompt(self, doc: Doc) -> str | tuple[tuple[str, str], ...]:
        """Exemplars as the zero-shot prompt plus ` {reference}`, each followed by a blank line (chat: turns)."""
        shots = self.shots(doc)
        prompt = self.prompt(doc["mr"])
        if isinstance(prompt, tuple):
            turns = [t for s in shots for t in (*self.prompt(s["mr"]), ("assistant", s["ref"]))]
            return (*turns, *prompt)
        return "".join(f"{self.prompt(s['mr'])} {s['ref']}{FEWSHOT_DELIMITER}" for s in shots) + prompt

    def requests(self, doc: Doc, model: ModelInfo = CAUSAL) -> list[Request]:
        return [generate_request(self.cfg, self.fewshot_prompt(doc), STOP, max_new_tokens=64)]

    def score(self, doc: Doc, answers: list[Answer], model: ModelInfo = CAUSAL) -> dict[str, Any]:
        output = answers[0][0].split("\n")[0].strip()
        prompt = self.fewshot_prompt(doc)
        return {
            "prompt": prompt if isinstance(prompt, str) else [list(m) for m in prompt],
            "mr": doc["mr"],
            "output": output,
            "refs": doc["refs"],
            # sentence-level ROUGE-L for browsing samples; the task's metrics are corpus-level (aggregate)
            "metrics": {"ROUGE_L": rouge_l(coco_tokenize(output), [coco_tokenize(r) for r in doc["refs"]])},
        }

    def aggregate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            return {}
        skip = _flag(self.option("skip_meteor"))
        raw = self.option("bootstrap_iters", "200") or "200"
        try:
            iters = int(raw)
        except ValueError:
            raise HarnessError(f"--task-option bootstrap_iters={raw}: not an integer") from None
        scores = E2EScores([s["refs"] for s in samples], [s["output"] for s in samples], with_meteor=not skip)
        values = scores.values()
        stderr = scores.bootstrap_stderr(iters, self.cfg.seed) if iters > 0 else {}
        out: dict[str, Any] = {m: Metric(v, stderr.get(m)) for m, v in values.items()}
        if skip:
            out["meteor"] = "skipped (--task-option skip_meteor=1)"
        return out

    def train_examples(self, split: str = "train", model: ModelInfo = CAUSAL) -> list[dict[str, Any]]:
        """One example per (MR, reference) pair: the evaluation prompt, target = " " + reference."""
        pairs, _ = self._pairs(split)
        return [{"prompt": self.prompt(mr), "target": " " + ref} for mr, ref in pairs if ref]

