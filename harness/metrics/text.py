"""Answer extraction for math word problems: strict, phrased and flexible number finders.

Every function here takes any string and returns in time linear in its length, without raising: scoring runs after
all generation is done, so one degenerate output (e.g. "343343..." for 10,000 characters) must not lose a run.
What an odd output extracts to:

- Numbers are compared as canonical digit strings, never as floats or bounded-precision decimals, so a 29- or
  10,000-digit integer is kept exactly (and equals a gold answer only if every digit does).
- Canonical form: no `$`, commas, whitespace, `+` or trailing `.`; no leading zeros; no trailing fractional zeros
  (`18.00` == `18`, `0.250` == `0.25`); `-0` is `0`.
- Decimal digits of any script count as their ASCII digits (Arabic-Indic `٣٤` and fullwidth `３４` are `34`).
- Only plain decimals are numbers: `inf`, `nan` and exponent forms (`1e400`) normalise to None, so they never equal
  a gold answer. The extractors do not read exponents either: in `1e400` the flexible extractor finds `1` and `400`.
"""

from __future__ import annotations

import re
import unicodedata

# No two adjacent repeats here can match the same character: `\s*\**\s*` or a bare `\s*` before a number let the
# regex engine retry every split of a long whitespace run (10,000 spaces after "The answer is" took minutes).
# So a sign, `$` or whitespace is only taken before a number, and spaces before `*` belong to the first repeat.
_NUM = r"(?:-?[$]\s*|-\s*)?-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"

EXTRACTORS: dict[str, re.Pattern[str]] = {
    "strict": re.compile(r"####\s*(" + _NUM + r")"),
    "answer_is": re.compile(r"[Tt]he (?:final )?answer is[:\s]*(?:\*+\s*)?(" + _NUM + r")"),
    "short_answer": re.compile(r"[Ss]hort answer:\s*(?:\*+\s*)?(" + _NUM + r")"),
}
_ANY_NUMBER = re.compile(_NUM)
_IGNORED = re.compile(r"[$,\s]+")
_PLAIN = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")


def _ascii_digits(text: str) -> str:
    """Decimal digits of any script (what `\\d` matches) as ASCII digits; other characters unchanged."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def normalize_number(text: str) -> str | None:
    """Canonical digit string of a plain decimal number (see the module docstring), or None if `text` is not one."""
    t = _IGNORED.sub("", text).rstrip(".")
    if not t.isascii():
        t = _ascii_digits(t)
    m = _PLAIN.fullmatch(t)
    if m is None:
        return None
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if not whole and not frac:
        return None
    whole, frac = whole.lstrip("0") or "0", frac.rstrip("0")
    value = f"{whole}.{frac}" if frac else whole
    return "-" + value if sign == "-" and value != "0" else value


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
