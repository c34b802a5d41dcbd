"""Deterministic SQuAD prediction sets for the parity tests (built from the dev file by rules, not copied data)."""

from __future__ import annotations

from typing import Any


def gold_first(dataset: list[dict[str, Any]]) -> dict[str, str]:
    return {qa["id"]: qa["answers"][0]["text"] for a in dataset for p in a["paragraphs"] for qa in p["qas"]}


def perturbed(dataset: list[dict[str, Any]]) -> dict[str, str]:
    """Seven kinds of answers by question index: unanswered, padded, re-cased with article and punctuation, truncated,
    another gold answer, the first words of the context, empty."""
    out: dict[str, str] = {}
    i = 0
    for a in dataset:
        for p in a["paragraphs"]:
            for qa in p["qas"]:
                first, last = qa["answers"][0]["text"], qa["answers"][-1]["text"]
                k = i % 7
                i += 1
                if k == 0:
                    continue
                if k == 1:
                    out[qa["id"]] = first + " and more"
                elif k == 2:
                    out[qa["id"]] = "The " + first.upper() + "."
                elif k == 3:
                    out[qa["id"]] = " ".join(first.split()[:-1])
                elif k == 4:
                    out[qa["id"]] = last
                elif k == 5:
                    out[qa["id"]] = " ".join(p["context"].split()[:5])
                else:
                    out[qa["id"]] = ""
    return out
