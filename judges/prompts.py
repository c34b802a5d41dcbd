"""Judge prompts (the project's own wording) and the parsers that read verdicts back.

Every verdict sits in double square brackets so it can be found unambiguously in free text:
single grading `[[7]]` (1-10), multi-answer grading `Answer 2: [[6]]` (1-9 each), pairwise `[[A]]`,
`[[B]]` or `[[tie]]`. A reply with no verdict, or with two different ones, is a parse failure: it is
recorded as such, never guessed.
"""

from __future__ import annotations

import re

Messages = tuple[tuple[str, str], ...]
Turns = list[tuple[str, str]]  # (user question, assistant reply) per turn

SYSTEM = ("You are an impartial expert who grades replies written by AI assistants. You judge substance, not style: "
          "correctness, helpfulness, relevance, depth and clarity. Longer is not better by itself.")

REFERENCE_CATEGORIES = ("math", "reasoning", "coding", "code")


def conversation_block(title: str, turns: Turns) -> str:
    lines = [f"=== {title} ==="]
    for q, a in turns:
        lines.append(f"[User]\n{q}")
        lines.append(f"[Assistant]\n{a}")
    lines.append(f"=== end of {title} ===")
    return "\n".join(lines)


def reference_block(reference: str | None) -> str:
    if not reference:
        return ""
    return ("\nA reference solution written by an expert follows. Check the reply against it: a wrong final result or "
            "a broken program is a serious fault whatever else the reply does well.\n"
            f"=== Reference solution ===\n{reference}\n=== end of Reference solution ===\n")


def single_prompt(turns: Turns, reference: str | None = None) -> Messages:
    """Grade the assistant's last reply of the conversation on 1-10."""
    user = (
        "Grade the assistant's LAST reply in the conversation below on a scale from 1 (useless or wrong) to 10 "
        "(excellent: correct, complete and to the point). Earlier turns are context only.\n"
        f"{reference_block(reference)}\n"
        f"{conversation_block('Conversation', turns)}\n\n"
        "Explain your assessment in a few sentences. Then write the grade on a line of its own as a whole number "
        "in double square brackets, for example: [[6]]"
    )
    return (("system", SYSTEM), ("user", user))


def multi_prompt(question_turns: list[Turns], reference: str | None = None) -> Messages:
    """Grade several assistants' last replies to the same conversation at once, 1-9 each."""
    blocks = "\n\n".join(conversation_block(f"Answer {i}", t) for i, t in enumerate(question_turns, 1))
    n = len(question_turns)
    user = (
        f"Below are {n} assistants' conversations with the same user. Grade each assistant's LAST reply on a scale "
        "from 1 (useless or wrong) to 9 (excellent). Grade each on its own merits; their order means nothing.\n"
        f"{reference_block(reference)}\n{blocks}\n\n"
        "Briefly compare them. Then finish with one line per answer in exactly this form:\n"
        + "\n".join(f"Answer {i}: [[score]]" for i in range(1, n + 1))
    )
    return (("system", SYSTEM), ("user", user))


def pairwise_prompt(turns_a: Turns, turns_b: Turns, reference: str | None = None) -> Messages:
    """Which of two assistants' last replies is better: A, B or a tie."""
    user = (
        "Two assistants, A and B, answered the same user. Decide whose LAST reply is better. The order in which they "
        "are shown is random and must not influence you, nor may their length.\n"
        f"{reference_block(reference)}\n"
        f"{conversation_block('Assistant A', turns_a)}\n\n{conversation_block('Assistant B', turns_b)}\n\n"
        "Explain the decisive differences in a few sentences. Then give exactly one verdict on a line of its own: "
        "[[A]] if A is better, [[B]] if B is better, [[tie]] if they are equally good."
    )
    return (("system", SYSTEM), ("user", user))


_SCORE = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_VERDICT = re.compile(r"\[\[\s*(A|B|tie)\s*\]\]", re.IGNORECASE)
_MULTI = re.compile(r"Answer\s*(\d+)\s*:\s*\**\s*\[\[\s*(\d+(?:\.\d+)?)\s*\]\]", re.IGNORECASE)


def parse_score(text: str, lo: float = 1, hi: float = 10) -> tuple[float | None, str | None]:
    """(score, None) or (None, reason)."""
    found = {float(x) for x in _SCORE.findall(text)}
    if not found:
        return None, "parse: no [[score]] in the reply"
    if len(found) > 1:
        return None, f"parse: several different scores {sorted(found)}"
    (score,) = found
    if not lo <= score <= hi:
        return None, f"parse: score {score:g} outside {lo:g}-{hi:g}"
    return score, None


def parse_verdict(text: str) -> tuple[str | None, str | None]:
    """('A' | 'B' | 'tie', None) or (None, reason)."""
    found = {v.upper() if v.lower() != "tie" else "tie" for v in _VERDICT.findall(text)}
    if not found:
        return None, "parse: no [[A]], [[B]] or [[tie]] in the reply"
    if len(found) > 1:
        return None, f"parse: conflicting verdicts {sorted(found)}"
    return found.pop(), None


def parse_multi(text: str, n: int, lo: float = 1, hi: float = 9) -> tuple[list[float | None], list[str | None]]:
    """Per answer: score or None, and the reason when None."""
    seen: dict[int, set[float]] = {}
    for idx, val in _MULTI.findall(text):
        seen.setdefault(int(idx), set()).add(float(val))
    scores: list[float | None] = []
    errors: list[str | None] = []
    for i in range(1, n + 1):
        vals = seen.get(i, set())
        if not vals:
            scores.append(None)
            errors.append(f"parse: no 'Answer {i}: [[score]]' line")
        elif len(vals) > 1:
            scores.append(None)
            errors.append(f"parse: several different scores for answer {i}")
        elif not lo <= next(iter(vals)) <= hi:
            scores.append(None)
            errors.append(f"parse: answer {i} score outside {lo:g}-{hi:g}")
        else:
            scores.append(next(iter(vals)))
            errors.append(None)
    return scores, errors
