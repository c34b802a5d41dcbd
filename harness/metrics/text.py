"""Answer extraction for math word problems: strict, phrased and flexible number finders."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NUM = r"-?[$]?\s*-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"

EXTRACTORS: dict[str, re.Pattern[str]] = {
    "strict": re.compile(r"####\s*(" + _NUM + r")"),
    "answer_is": re.compile(r"[Tt]he (?:final )?answer is[:\s]*\**\s*(" + _NUM + r")"),
    "short_answer": re.compile(r"[Ss]hort answer:\s*\**\s*(" + _NUM + r")"),
}
_ANY_NUMBER = re.compile(_NUM)


def normalize_number(text: str) -> str | None:
    """Canonical form of a number: no `$`, commas or trailing `.`, and `18.00` == `18`."""
    t = text.strip().replace("$", "").replace(",", "").replace(" ", "").rstrip(".")
    if not t:
        return None
    try:
        d = Decimal(t)
    except InvalidOperation:
        return None
    if d == d.to_integral_value():
        return str(d.quantize(Decimal(1)))
    return format(d.normalize(), "f")


def extract(text: str, how: str) -> str | None:
    """The answer number in `text` by one extractor: strict, answer_is, short_answer or flexible (last number)."""
    if how == "flexible":
        found = _ANY_NUMBER.findall(text)
        return normalize_number(found[-1]) if found else None
    m = EXTRACTORS[how].search(text)
    return normalize_number(m.group(1)) if m else None


def gold_answer(answer_field: str) -> str | None:
    """The gold number of a GSM8K `answer` field (the text after `####`)."""
    if "####" not in answer_field:
        return None
    return normalize_number(answer_field.split("####")[-1])
