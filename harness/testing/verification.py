"""Rows in the math-solution-verification competition layout (question, answer, solution, is_correct), written by
the project for tests and the demo: arithmetic word problems whose wrong rows carry a realistic slip."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from harness.testing.tiny import word_problem
from tasks.verification import COLUMNS


def verification_row(rng: random.Random) -> dict[str, Any]:
    """One row: an arithmetic word problem, a worked solution, and whether its answer is right.

    Wrong rows carry a realistic slip (an off-by-some result or a wrong operation) both in the
    solution's last step and in the provided answer, as in the competition data.
    """
    row = word_problem(rng)
    steps, final = row["answer"].rsplit("####", 1)
    final = final.strip()
    correct = rng.random() < 0.5
    answer = final
    solution = steps.strip().replace("<<", "").replace(">>", " ").replace("  ", " ")
    if not correct:
        wrong = str(int(final) + rng.choice([-3, -2, -1, 1, 2, 5, 10]))
        answer = wrong
        solution = solution[: solution.rfind(final)] + wrong + solution[solution.rfind(final) + len(final):] \
            if final in solution else solution + f" So the answer is {wrong}."
    return {"question": row["question"], "answer": answer, "solution": solution, "is_correct": correct}


def write_verification_data(root: Path, n_train: int = 200, n_validation: int = 40, n_test: int = 20,
                            seed: int = 0, fmt: str = "jsonl") -> Path:
    """Write root/math_verify/{train,validation,test}.<fmt>; test labels are all False like the competition's."""
    rng = random.Random(seed)
    out = root / "math_verify"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", n_validation), ("test", n_test)):
        rows = [verification_row(rng) for _ in range(n)]
        if split == "test":
            rows = [{**r, "is_correct": False} for r in rows]
        path = out / f"{split}.{fmt}"
        if fmt == "jsonl":
            path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif fmt == "csv":
            import csv

            with path.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(COLUMNS))
                w.writeheader()
                w.writerows(rows)
        elif fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), path)
        else:
            raise ValueError(f"unknown format {fmt!r}")
    return root
