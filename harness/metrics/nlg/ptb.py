"""coco-caption's PTB tokenisation (Stanford PTBTokenizer 3.4.1, -preserveLines -lowerCase), in pure Python.

coco-caption tokenises every caption with the Stanford jar and then drops its punctuation list; ROUGE-L and CIDEr
read those tokens. Reproducing the jar here means no Java is needed for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

COCO_PUNCTUATIONS = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...",
                     ";"}
_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_SPECIAL_WORDS = {"cannot": ("can", "not"), "gonna": ("gon", "na"), "gotta": ("got", "ta"), "lemme": ("lem", "me"),
                  "gimme": ("gim", "me"), "wanna": ("wan", "na"), "'tis": ("'t", "is"), "'twas": ("'t", "was")}
_TITLES = {"mr", "mrs", "ms", "dr", "st", "prof", "mt", "jr", "sr", "gen", "gov", "sen", "rep", "rev", "capt",
           "col", "lt", "sgt", "messrs", "mme", "mlle", "ave", "rd", "blvd", "fig", "vol", "pp", "op"}
_ABBREVS = {"etc", "inc", "co", "corp", "ltd", "vs", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept",
            "oct", "nov", "dec", "approx", "dept", "est", "bros", "assn"}
# Capitalised words after which Stanford's lexer treats an abbreviation's period as also ending the sentence.
_SENTENCE_STARTERS = {"the", "he", "she", "it", "they", "we", "this", "that", "there", "then", "an", "in", "but",
                      "and", "his", "her", "its", "their", "our", "you", "these", "those", "if", "when", "so"}
_L = r"[^\W\d_]"  # a letter (any script)
_AN = r"[^\W_\u00bc-\u00be\u2150-\u215e]"  # a letter or digit (vulgar fractions are tokens of their own)
_WORD_PART = rf"{_AN}+(?:\.{_AN}+|,\d+)*"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_ALTERNATIVES = [
    r"(?P<url>https?://\S+|www\.[\w-]+(?:\.[\w-]+)+\S*|" + _EMAIL + ")",
    rf"(?P<acro>(?:{_L}\.){{2,}})(?!{_AN})",
    rf"(?P<initial>{_L}\.)(?!{_L})",
    rf"(?P<abbr>{_L}+\.)(?=[\s\"')\],;:]|$)",
    r"(?P<amp>[A-Z]+&[A-Z]+)",
    r"(?P<entity>&amp;)",
    rf"(?P<tag>[#@]{_L}[^\W_]*)",
    r"(?P<under>_+)",
    r"(?P<quotes>''|``)",
    r"(?P<usd>US\$)",
    r"(?P<num>\d+(?:[.,:]\d+)+(?![\d-])|(?:[+:]|(?<![^\W_])-)\d+(?:[.,]\d+)*(?![\w-]))",
    r"(?P<frac>[\u00bc-\u00be\u2150-\u215e])",
    rf"(?P<word>{_WORD_PART}(?:['\u2019/-]{_WORD_PART})*)",
    r"(?P<clitic>'(?:[sSmMdD]|ll|LL|re|RE|ve|VE|tis|TIS|twas|TWAS)(?!\w))",
    r"(?P<ellipsis>\.\.\.|\. \. \.)",
    r"(?P<multi>[?!]+|--+)",
    r"(?P<dash>[\u2013\u2014\u2015])",
    r"(?P<other>\S)",
]
_TOKEN = re.compile("|".join(_ALTERNATIVES))
# The same without e-mail addresses: tried at every position, `[\w.+-]+@` rescans the rest of a long run of such
# characters (`....`, `+1+1...`), quadratic in its length. It can only match inside a run followed by `@` and a domain.
_TOKEN_NO_EMAIL = re.compile("|".join([_ALTERNATIVES[0].replace("|" + _EMAIL, ""), *_ALTERNATIVES[1:]]))
_EMAIL_CHARS = re.compile(r"[\w.+-]+")
_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)+")
_FRACTIONS = {"\u00bc": "1/4", "\u00bd": "1/2", "\u00be": "3/4", "\u2153": "1/3", "\u2154": "2/3", "\u2155": "1/5",
              "\u2156": "2/5", "\u2157": "3/5", "\u2158": "4/5", "\u2159": "1/6", "\u215a": "5/6", "\u215b": "1/8",
              "\u215c": "3/8", "\u215d": "5/8", "\u215e": "7/8"}
_CLITIC_TAIL = re.compile(r"^(.+?)(n't|N'T|'(?:[sSmMdD]|ll|LL|re|RE|ve|VE))$")


def _split_word(w: str) -> list[str]:
    low = w.lower()
    if low in _SPECIAL_WORDS:
        a, b = _SPECIAL_WORDS[low]
        return [w[: len(a)], w[len(a):]] if not low.startswith("'") else [w[:2], w[2:]]
    m = _CLITIC_TAIL.match(w)
    if m and m.group(1):
        return [m.group(1), m.group(2)]
    return [w]


_SPACE_THEN_WORD = re.compile(r"\s+([A-Z][a-z]*)\b")
_NON_SPACE = re.compile(r"\S")
_SPACE_THEN_DIGIT = re.compile(r"\s*\d")
_QUOTES = "\"'\u201c\u201d\u201e\u2018\u2019`"


def _ends_sentence(text: str, pos: int) -> bool:
    """After an abbreviation ending at `pos`: end of line, or a capitalised sentence starter (`U.S. He`, not `J.W. Wild`)."""
    if _NON_SPACE.search(text, pos) is None:
        return True
    m = _SPACE_THEN_WORD.match(text, pos)
    return m is not None and m.group(1).lower() in _SENTENCE_STARTERS


def _email_runs(text: str) -> list[tuple[int, int]]:
    r"""Spans of the maximal `[\w.+-]` runs followed by `@domain`: the only places an e-mail token can start."""
    if "@" not in text:
        return []
    return [(m.start(), m.end()) for m in _EMAIL_CHARS.finditer(text) if _DOMAIN.match(text, m.end())]


def _tokens(text: str) -> Iterator[re.Match[str]]:
    """The matches of `_TOKEN.finditer(text)`, in linear time: `_TOKEN` only inside runs that can start an e-mail
    address, `_TOKEN_NO_EMAIL` (equal everywhere else) elsewhere."""
    runs = _email_runs(text)
    pos, i = 0, 0
    while True:
        while i < len(runs) and runs[i][1] <= pos:
            i += 1
        inside = i < len(runs) and runs[i][0] <= pos
        m = (_TOKEN if inside else _TOKEN_NO_EMAIL).search(text, pos)
        if not inside and i < len(runs) and (m is None or m.start() >= runs[i][0]):
            m = _TOKEN.search(text, runs[i][0])  # nothing matches before the run: continue as finditer would there
        if m is None:
            return
        yield m
        pos = m.end()


def _abbreviation(kind: str, tok: str, text: str, end: int) -> list[str]:
    """An acronym (`U.S.`) or a word with a period: which keep the period, and which also end a sentence."""
    stem = tok[:-1].lower()
    if kind == "abbr" and text[end:end + 1] in (",", ";", ":"):
        return [tok]  # "center.," stays one token: the period does not end a sentence there
    if stem == "no" and _SPACE_THEN_DIGIT.match(text, end):
        return [tok]
    if kind == "abbr" and stem not in _TITLES and stem not in _ABBREVS:
        return [*_split_word(tok[:-1]), "."]
    if (kind == "acro" or stem in _ABBREVS) and _ends_sentence(text, end):
        return [tok, "."]  # an abbreviation ending a sentence gets its own period token too
    return [tok]


def _quote(tok: str, text: str, start: int, end: int) -> str:
    """A quote character as PTB writes it: `` ` `` or ``` `` ``` when it opens, `'` or `''` when it closes."""
    before = text[start - 1:start] if start else ""
    after = text[end:end + 1]
    opening = tok in "\u201c\u2018`" or (tok in "\"'" and (not before or before.isspace() or before in "([{")
                                        and (after.isalpha() if tok == "'" else after.strip() != ""))
    double = tok in "\"\u201c\u201d\u201e"
    return ("``" if double else "`") if opening else ("''" if double else "'")


def _other(tok: str, text: str, start: int, end: int) -> str:
    """A single character no other rule took: brackets, quotes and currency signs are escaped as PTB3 does."""
    if tok in _BRACKETS:
        return _BRACKETS[tok]
    if tok in _QUOTES:
        return _quote(tok, text, start, end)
    if tok == "\u00a3":
        return "#"
    if tok in "\u0080\u00a4\u20a0\u20ac":
        return "$"
    return tok


_FIXED = {"entity": "&", "ellipsis": "...", "dash": "--"}


def _token(m: re.Match[str], text: str) -> list[str]:
    """The PTB token(s) of one match of `_TOKEN`."""
    kind, tok = m.lastgroup or "other", m.group()
    if kind == "word":  # an apostrophe inside a word splits only before a clitic: do n't, Rouge 's, o'clock
        return _split_word(tok.replace("\u2019", "'"))
    if kind in ("acro", "abbr"):
        return _abbreviation(kind, tok, text, m.end())
    if kind == "initial":  # `Y. pestis`, `X.25`, `vitamin C.` keep the period; `C. It is` does not
        end = m.end()
        return [tok[0], "."] if _NON_SPACE.search(text, end) and _ends_sentence(text, end) else [tok]
    if kind == "clitic":
        return list(_SPECIAL_WORDS.get(tok.lower(), (tok,)))
    if kind in _FIXED:
        return [_FIXED[kind]]
    if kind == "frac":  # PTB3 escaping writes vulgar fractions out: ½ -> 1/2 (2½ -> 2 1/2)
        return [_FRACTIONS.get(tok, tok)]
    if kind == "multi":
        return ["--" if tok.startswith("-") else tok]
    if kind == "other":
        return [_other(tok, text, m.start(), m.end())]
    return [tok]


def ptb_tokenize(text: str) -> list[str]:
    """Lowercased PTB tokens of one line, as Stanford PTBTokenizer 3.4.1 gives them for E2E-style English.

    Checked token-for-token against the jar on every reference of the E2E dev and test sets (tests); on general
    English it agrees on all but 4 of 10,570 SQuAD questions and 99.9% of the tokens of SQuAD's paragraphs. Rare
    constructs (smileys, `Qur'an`-style apostrophes, some sentence-final abbreviations) can still differ.
    Time is linear in the length of `text`, whatever it holds.
    """
    return [t.lower() for m in _tokens(text) for t in _token(m, text)]


def coco_tokenize(text: str) -> str:
    """coco-caption's caption preprocessing: PTB tokens, lowercased, with its punctuation list removed."""
    # PTBTokenizer lowercases -LRB- to -lrb-, after which coco's (upper-case) list no longer removes it.
    return " ".join(t for t in ptb_tokenize(text.replace("\n", " ")) if t not in COCO_PUNCTUATIONS)
