"""E2E NLG metrics exactly as the official E2E scorer (tuetschek/e2e-metrics, `measure_scores.py`) computes them.

- BLEU and NIST: the scorer's mteval-v13a-sig.pl (tokenisation, NIST information weights from the references,
  closest-reference brevity penalty, smoothed BLEU, any number of references per segment), ported to Python.
- METEOR 1.5: the jar pycocoevalcap ships, run with Java as `-l en -norm` over the stdio protocol its wrapper uses.
- ROUGE-L (beta = 1.2) and CIDEr: coco-caption's formulas, over coco-caption's PTB tokenisation (the Stanford
  PTBTokenizer with -lowerCase, then punctuation tokens dropped), here in pure Python so no Java is needed for them.

Why our own code: the official tools need Perl and two Java launches per call and look-alike re-implementations
differ by a lot (e.g. METEOR 0.81 instead of 0.46). Parity with the official scorer is pinned in
tests/test_nlg_metrics.py.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")

# ---------------------------------------------------------------------------------------------------------------------
# mteval-v13a tokenisation and BLEU / NIST
# ---------------------------------------------------------------------------------------------------------------------

# Perl's \s on Unicode strings (Python's \s also matches \x1c-\x1f, which Perl's does not).
_PERL_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WS_RUN = re.compile(f"[{_PERL_WS}]+")
_PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([\.,])")
_PERIOD_COMMA_BEFORE = re.compile(r"([\.,])([^0-9])")
_DIGIT_DASH = re.compile(r"([0-9])(-)")
_UPPER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def mteval_tokenize(text: str) -> list[str]:
    """mteval-v13a's default (non-international) tokenisation, lowercased, of one segment as the E2E scorer writes it.

    The scorer writes raw text into the SGML file and mteval collapses whitespace and decodes four entities first.
    """
    t = _WS_RUN.sub(" ", text)
    t = t.replace("<skipped>", "").replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    t = f" {t} ".translate(_UPPER)
    t = _PUNCT.sub(r" \1 ", t)
    t = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", t)
    t = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", t)
    t = _DIGIT_DASH.sub(r"\1 \2 ", t)
    t = _WS_RUN.sub(" ", t).strip(" ")
    return t.split(" ") if t else []


def _ngrams(words: Sequence[str], max_n: int) -> Counter:
    n = len(words)
    return Counter(tuple(words[i:j]) for i in range(n) for j in range(i + 1, min(i + max_n, n) + 1))


class MtevalStats:
    """Per-segment sufficient statistics of mteval's BLEU and NIST, so corpus scores (and bootstrap resamples) are sums.

    NIST information weights come from n-gram counts over all references of the whole set (as mteval does), so they
    are fixed once for the given reference set and not recomputed per resample.
    """

    MAX_N = 5  # mteval counts up to 9-grams, but BLEU reads 1-4 and NIST 1-5: higher orders never reach a score

    def __init__(self, refs: Sequence[Sequence[str]], hyps: Sequence[str]) -> None:
        ref_toks = [[mteval_tokenize(r) for r in group] for group in refs]
        hyp_toks = [mteval_tokenize(h) for h in hyps]
        ref_ngrams = [[_ngrams(r, self.MAX_N) for r in group] for group in ref_toks]
        counts: Counter = Counter()
        total_words = 0
        for group, grams in zip(ref_toks, ref_ngrams):
            for r, g in zip(group, grams):
                total_words += len(r)
                counts.update(g)
        info: dict[tuple[str, ...], float] = {}
        for ng, c in counts.items():
            prefix = ng[:-1]
            # Perl's `$mgram ? ... : ...` treats the one-word prefix "0" as false: reproduce that quirk.
            if prefix and prefix != ("0",):
                info[ng] = -math.log(c / counts[prefix]) / math.log(2)
            else:
                info[ng] = -math.log(c / total_words) / math.log(2)
        # Each row: ref_length (closest), n_refs, match[1..9], tst[1..9], ref[1..9], tst_info[1..9]
        self.rows: list[tuple] = []
        for group, grams, hyp in zip(ref_toks, ref_ngrams, hyp_toks):
            self.rows.append(self._segment(group, grams, hyp, info))

    def _segment(self, refs: list[list[str]], ref_grams: list[Counter], hyp: list[str], info: dict) -> tuple:
        n_max = self.MAX_N
        hyp_ng = _ngrams(hyp, n_max)
        tst = [max(len(hyp) - j + 1, 0) for j in range(1, n_max + 1)]
        ref_cnt = [0] * n_max
        ref_max: dict[tuple[str, ...], int] = {}
        ref_length: int | None = None
        n_refs = 0
        for r, grams in zip(refs, ref_grams):
            if r:
                n_refs += 1
            for ng, c in grams.items():
                if c > ref_max.get(ng, 0):
                    ref_max[ng] = c
            for j in range(n_max):
                ref_cnt[j] += max(len(r) - j, 0)
            if ref_length is None:
                ref_length = len(r)
            elif len(r):  # mteval's brevity_penalty_closest; empty (padding) references are skipped
                cand, cur = len(hyp), ref_length
                if abs(cand - len(r)) < abs(cand - cur) or (abs(cand - len(r)) == abs(cand - cur) and cur > len(r)):
                    ref_length = len(r)
        match = [0] * n_max
        tst_info = [0.0] * n_max
        for ng, c in hyp_ng.items():
            m = ref_max.get(ng)
            if m is None:
                continue
            k = min(c, m)
            match[len(ng) - 1] += k
            tst_info[len(ng) - 1] += info[ng] * k
        return (ref_length or 0, n_refs, tuple(match), tuple(tst), tuple(ref_cnt), tuple(tst_info))

    @staticmethod
    def bleu(rows: Sequence[tuple]) -> float:
        """mteval's smoothed corpus BLEU (4-grams)."""
        ref_length = sum(r[0] for r in rows)
        match = [sum(r[2][j] for r in rows) for j in range(4)]
        tst = [sum(r[3][j] for r in rows) for j in range(4)]
        exp_len = math.exp(min(0.0, 1 - ref_length / tst[0])) if tst[0] > 0 else 0.0
        score, smooth = 0.0, 1
        for j in range(4):
            if tst[j] == 0:
                iscore = 0.0
            elif match[j] == 0:
                smooth *= 2
                iscore = math.log(1 / (smooth * tst[j]))
            else:
                iscore = math.log(match[j] / tst[j])
            score += iscore
        return math.exp(score / 4) * exp_len

    @staticmethod
    def nist(rows: Sequence[tuple]) -> float:
        """mteval's corpus NIST (5-grams) with its length penalty against the average reference length."""
        n_segs = len(rows)
        n_refs = sum(r[1] for r in rows)
        tst = [sum(r[3][j] for r in rows) for j in range(5)]
        ref1 = sum(r[4][0] for r in rows)
        tst_info = [sum(r[5][j] for r in rows) for j in range(5)]
        score = sum(tst_info[j] / max(tst[j], 1) for j in range(5))
        if n_refs == 0 or ref1 == 0:
            return 0.0
        ratio = tst[0] / (ref1 / (n_refs / n_segs))
        if ratio >= 1:
            penalty = 1.0
        elif ratio <= 0:
            penalty = 0.0
        else:
            beta = -math.log(0.5) / math.log(1.5) / math.log(1.5)
            penalty = math.exp(-beta * math.log(ratio) * math.log(ratio))
        return score * penalty


# ---------------------------------------------------------------------------------------------------------------------
# coco-caption PTB tokenisation (Stanford PTBTokenizer 3.4.1, -preserveLines -lowerCase), punctuation dropped
# ---------------------------------------------------------------------------------------------------------------------

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
_TOKEN = re.compile(
    "|".join([
        r"(?P<url>https?://\S+|www\.[\w-]+(?:\.[\w-]+)+\S*|[\w.+-]+@[\w-]+(?:\.[\w-]+)+)",
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
    ])
)
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


def _ends_sentence(rest: str) -> bool:
    """After an abbreviation: end of line, or a capitalised sentence starter (`U.S. He`, but not `J.W. Wild`)."""
    if not rest.strip():
        return True
    m = re.match(r"\s+([A-Z][a-z]*)\b", rest)
    return bool(m) and m.group(1).lower() in _SENTENCE_STARTERS


def ptb_tokenize(text: str) -> list[str]:
    """Lowercased PTB tokens of one line, as Stanford PTBTokenizer 3.4.1 gives them for E2E-style English.

    Checked token-for-token against the jar on every reference of the E2E dev and test sets (tests); on general
    English it agrees on all but 4 of 10,570 SQuAD questions and 99.9% of the tokens of SQuAD's paragraphs. Rare
    constructs (smileys, `Qur'an`-style apostrophes, some sentence-final abbreviations) can still differ.
    """
    out: list[str] = []
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind == "word":  # an apostrophe inside a word splits only before a clitic: do n't, Rouge 's, o'clock
            out += _split_word(tok.replace("\u2019", "'"))
        elif kind in ("acro", "abbr"):
            stem = tok[:-1].lower()
            nxt = text[m.end():m.end() + 1]
            if kind == "abbr" and nxt in (",", ";", ":"):
                out.append(tok)  # "center.," stays one token: the period does not end a sentence there
                continue
            if stem == "no" and re.match(r"\s*\d", text[m.end():]):
                out.append(tok)
                continue
            if kind == "abbr" and stem not in _TITLES and stem not in _ABBREVS:
                out += _split_word(tok[:-1])
                out.append(".")
                continue
            out.append(tok)
            if (kind == "acro" or stem in _ABBREVS) and _ends_sentence(text[m.end():]):
                out.append(".")  # an abbreviation ending a sentence gets its own period token too
        elif kind == "initial":  # `Y. pestis`, `X.25`, `vitamin C.` keep the period; `C. It is` does not
            rest = text[m.end():]
            out += [tok[0], "."] if rest.strip() and _ends_sentence(rest) else [tok]
        elif kind == "clitic":
            low = tok.lower()
            out += list(_SPECIAL_WORDS[low]) if low in _SPECIAL_WORDS else [tok]
        elif kind == "entity":
            out.append("&")
        elif kind == "frac":  # PTB3 escaping writes vulgar fractions out: ½ -> 1/2 (2½ -> 2 1/2)
            out.append(_FRACTIONS.get(tok, tok))
        elif kind == "ellipsis":
            out.append("...")
        elif kind == "multi":
            out.append("--" if tok.startswith("-") else tok)
        elif kind == "dash":
            out.append("--")
        elif kind == "other":
            if tok in _BRACKETS:
                out.append(_BRACKETS[tok])
            elif tok in "\"'\u201c\u201d\u201e\u2018\u2019`":
                before = text[m.start() - 1:m.start()] if m.start() else ""
                after = text[m.end():m.end() + 1]
                opening = tok in "\u201c\u2018`" or (tok in "\"'" and (not before or before.isspace() or before in "([{")
                                                          and (after.isalpha() if tok == "'" else after.strip() != ""))
                double = tok in "\"\u201c\u201d\u201e"
                out.append(("``" if double else "`") if opening else ("''" if double else "'"))
            elif tok == "\u00a3":
                out.append("#")
            elif tok in "\u0080\u00a4\u20a0\u20ac":
                out.append("$")
            else:
                out.append(tok)
        else:
            out.append(tok)
    return [t.lower() for t in out]


def coco_tokenize(text: str) -> str:
    """coco-caption's caption preprocessing: PTB tokens, lowercased, with its punctuation list removed."""
    # PTBTokenizer lowercases -LRB- to -lrb-, after which coco's (upper-case) list no longer removes it.
    return " ".join(t for t in ptb_tokenize(text.replace("\n", " ")) if t not in COCO_PUNCTUATIONS)


# ---------------------------------------------------------------------------------------------------------------------
# ROUGE-L and CIDEr (coco-caption), on coco-tokenized strings
# ---------------------------------------------------------------------------------------------------------------------


def _lcs(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(hyp: str, refs: Sequence[str], beta: float = 1.2) -> float:
    """coco-caption ROUGE-L of one tokenized hypothesis: F-measure of the max LCS precision and recall over references."""
    c = hyp.split(" ")
    prec, rec = [], []
    for r in refs:
        t = r.split(" ")
        lcs = _lcs(t, c)
        prec.append(lcs / len(c))
        rec.append(lcs / len(t))
    p, r_ = max(prec), max(rec)
    if p != 0 and r_ != 0:
        return ((1 + beta**2) * p * r_) / (r_ + beta**2 * p)
    return 0.0


def _precook(s: str, n: int = 4) -> Counter:
    words = s.split()
    c: Counter = Counter()
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


def cider_scores(hyps: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> list[float]:
    """coco-caption CIDEr (the `Cider` scorer, i.e. CIDEr-D's clipping and length penalty), one score per segment.

    Document frequencies come from the references of this set and log(#segments) is the idf base, as in the original.
    """
    crefs = [[_precook(r, n) for r in group] for group in refs]
    ctest = [_precook(h, n) for h in hyps]
    df: Counter = Counter()
    for group in crefs:
        for ng in {ng for r in group for ng in r}:
            df[ng] += 1
    ref_len = math.log(float(len(crefs)))

    def vec(cnts: Counter) -> tuple[list[dict], list[float], int]:
        v: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        length = 0
        for ng, tf in cnts.items():
            d = math.log(max(1.0, df.get(ng, 0.0)))
            k = len(ng) - 1
            v[k][ng] = float(tf) * (ref_len - d)
            norm[k] += v[k][ng] ** 2
            if k == 1:  # coco-caption counts bigrams as the "length" (sic)
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    penalty_den = 2 * sigma**2
    scores = []
    for test, group in zip(ctest, crefs):
        vh, nh, lh = vec(test)
        total = [0.0] * n
        for ref in group:
            vr, nr, lr = vec(ref)
            delta = float(lh - lr)
            for k in range(n):
                val = 0.0
                ref_k = vr[k]
                for ng, x in vh[k].items():
                    y = ref_k.get(ng, 0.0)
                    val += min(x, y) * y
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total[k] += val * math.e ** (-(delta**2) / penalty_den)
        scores.append(sum(total) / n / len(group) * 10.0)
    return scores


# ---------------------------------------------------------------------------------------------------------------------
# METEOR 1.5 (Java), as pycocoevalcap's wrapper drives it
# ---------------------------------------------------------------------------------------------------------------------

JAVA_MISSING = ("METEOR needs Java 8+ to run the METEOR 1.5 jar and `java` was not found on PATH; install Java, or skip "
                "METEOR with --skip-meteor (harness score e2e) or --task-option skip_meteor=1 (harness run)")


def meteor_jar() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("METEOR needs the pycocoevalcap package (it ships meteor-1.5.jar): pip install pycocoevalcap")
    jar = Path(list(spec.submodule_search_locations)[0]) / "meteor" / "meteor-1.5.jar"
    if not jar.exists():
        raise HarnessError(f"{jar}: METEOR jar not found in the pycocoevalcap package")
    return jar


def cache_dir() -> Path:
    """$HARNESS_CACHE_DIR, else $XDG_CACHE_HOME/harness, else ~/.cache/harness."""
    if os.environ.get("HARNESS_CACHE_DIR"):
        return Path(os.environ["HARNESS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "harness"


def _paraphrase_env() -> str:
    """What besides the references decides the filtered table: the jar, and the locale Java decodes the files with."""
    jar = meteor_jar()
    return "|".join([str(jar.stat().st_size), *(os.environ.get(k, "") for k in ("LC_ALL", "LC_CTYPE", "LANG"))])


def _find_cached_table(folder: Path, env: str, lines: set[str]) -> Path | None:
    """A cached table filtered for a superset of these reference lines (as good as an exact one: an entry can only
    match through a phrase of these references, and every such entry is kept), or None."""
    if not folder.is_dir():
        return None
    for refs_file in sorted(folder.glob("*.refs")):
        table = refs_file.with_suffix(".gz")
        if not table.exists():
            continue
        try:
            head, *cached = refs_file.read_text(encoding="utf-8", errors="surrogatepass").split("\n")
        except OSError:
            continue
        if head == env and lines <= set(cached):
            return table
    return None


class ParaphraseFilter:
    """METEOR's own FilterParaphrase tool, run in the background: the paraphrase table cut to the entries whose
    either side occurs in the references (the only ones that can match), cached by reference text.

    Why: loading the full 61 MB table is most of METEOR's cost; the filtered table (METEOR's documented `-a` option)
    loads in a fraction of that and gives the same alignments, hence the same scores (checked in the parity tests).
    """

    def __init__(self, ref_lines: Sequence[str], java: str | None = None) -> None:
        env, unique = _paraphrase_env(), set(ref_lines)
        folder = cache_dir() / "meteor-paraphrase"
        self.proc: subprocess.Popen | None = None
        found = _find_cached_table(folder, env, unique)
        if found is not None:
            self.path = found
            return
        key = hashlib.sha256("\n".join([env, *sorted(unique)]).encode("utf-8", "surrogatepass")).hexdigest()[:32]
        self.path = folder / f"{key}.gz"
        self._listing = "\n".join([env, *sorted(unique)])
        java = java or shutil.which("java")
        if not java:
            raise HarnessError(JAVA_MISSING)
        jar = meteor_jar()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, refs_name = tempfile.mkstemp(suffix=".txt", dir=self.path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(ref_lines) + "\n")
        self._refs = Path(refs_name)
        self._tmp = self.path.with_name(f"{self.path.stem}.{os.getpid()}.tmp.gz")
        table = jar.parent / "data" / "paraphrase-en.gz"
        cmd = [java, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", str(jar), "FilterParaphrase", str(table),
               str(self._tmp), str(self._refs)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def result(self) -> Path:
        """The filtered table (waits for the filter if it is still running)."""
        if self.proc is not None:
            _, err = self.proc.communicate()
            self._refs.unlink(missing_ok=True)
            if self.proc.returncode != 0 or not self._tmp.exists():
                self._tmp.unlink(missing_ok=True)
                last = err.decode("utf-8", "replace").strip().splitlines()[-1:] if err else []
                raise HarnessError(f"METEOR FilterParaphrase failed: {last[0] if last else 'exit ' + str(self.proc.returncode)}")
            os.replace(self._tmp, self.path)
            listing = self.path.with_suffix(f".{os.getpid()}.tmp")
            listing.write_text(self._listing, encoding="utf-8", errors="surrogatepass")
            os.replace(listing, self.path.with_suffix(".refs"))
            self.proc = None
        return self.path

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._refs.unlink(missing_ok=True)
            self._tmp.unlink(missing_ok=True)
            self.proc = None


class Meteor:
    """One `java -jar meteor-1.5.jar - - -stdio -l en -norm` process, driven as pycocoevalcap's wrapper drives it.

    Started on construction so the JVM loads its paraphrase table while Python computes the other metrics; `score`
    sends one SCORE line per segment (streamed from a thread instead of one round trip each), then one EVAL line,
    and may be called again for another set (the paraphrase table is loaded once). Close it when done.
    """

    def __init__(self, java: str | None = None, paraphrases: Path | None = None) -> None:
        """`paraphrases`: a filtered paraphrase table (`-a`, see ParaphraseFilter); default: the full English one."""
        java = java or shutil.which("java")
        if not java:
            raise HarnessError(JAVA_MISSING)
        jar = meteor_jar()
        # JVM flags change speed only (Java floating point is strict): the C1 compiler halves METEOR's CPU time on
        # E2E-sized sets; -Xms saves repeated heap growth while the full (~1 GB in memory) paraphrase table loads.
        flags = ["-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx2G"]
        cmd = [java, *flags, *(["-Xms1G"] if paraphrases is None else []), "-jar", str(jar), "-", "-", "-stdio",
               "-l", "en", "-norm", *(["-a", str(paraphrases)] if paraphrases is not None else [])]
        try:
            self.proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE)
        except OSError as e:
            raise HarnessError(f"could not start Java for METEOR ({e}); use --skip-meteor to skip it") from None

    def submit(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> None:
        """Start scoring in the background: a thread writes the SCORE lines, another collects their statistics."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        lines = []
        for h, group in zip(hyps, refs):
            h = h.replace("|||", "").replace("  ", " ")
            lines.append(" ||| ".join(("SCORE", " ||| ".join(group), h)) + "\n")
        self._n = len(lines)
        self._stats: list[str] = []

        def feed() -> None:
            try:
                for line in lines:
                    proc.stdin.write(line.encode("utf-8"))
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass

        def collect() -> None:
            for _ in lines:
                out = proc.stdout.readline()
                if not out:
                    return
                self._stats.append(out.decode("utf-8").strip())

        self._threads = [threading.Thread(target=feed, daemon=True), threading.Thread(target=collect, daemon=True)]
        for t in self._threads:
            t.start()

    def result(self) -> tuple[float, list[float]]:
        """Corpus METEOR and per-segment scores of the submitted set (one EVAL line over all statistics)."""
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            for t in self._threads:
                t.join()
            if len(self._stats) != self._n:
                err = proc.stderr.read().decode("utf-8", "replace").strip().splitlines() if proc.stderr else []
                raise HarnessError(f"METEOR (java) stopped early: {err[-1] if err else 'no output'}")
            proc.stdin.write(("EVAL ||| " + " ||| ".join(self._stats) + "\n").encode("utf-8"))
            proc.stdin.flush()
            seg = [float(proc.stdout.readline().strip()) for _ in range(self._n)]
            score = float(proc.stdout.readline().strip())
        except BaseException:
            self.close()
            raise
        return score, seg

    def score(self, hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[float, list[float]]:
        """Corpus METEOR and per-segment scores of tokenized hypotheses against tokenized references."""
        self.submit(hyps, refs)
        return self.result()

    def __enter__(self) -> Meteor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
        except OSError:
            pass
        self.proc.kill()
        self.proc.wait()


def meteor(hyps: Sequence[str], refs: Sequence[Sequence[str]], java: str | None = None) -> tuple[float, list[float]]:
    """Corpus METEOR 1.5 and per-segment scores (inputs already coco-tokenized)."""
    with Meteor(java) as m:
        return m.score(hyps, refs)


# ---------------------------------------------------------------------------------------------------------------------
# The whole E2E metric set
# ---------------------------------------------------------------------------------------------------------------------


class E2EScores:
    """All five E2E metrics of one system output; keeps per-segment statistics for cheap bootstrap resamples."""

    def __init__(self, refs: Sequence[Sequence[str]], hyps: Sequence[str], with_meteor: bool = True,
                 meteor_runner: Meteor | None = None) -> None:
        """`meteor_runner`: a running Meteor to reuse (left open); by default one is started and closed here."""
        if len(refs) != len(hyps):
            raise HarnessError(f"{len(hyps)} hypotheses for {len(refs)} reference groups")
        for i, g in enumerate(refs):
            if not g:
                raise HarnessError(f"segment {i + 1} has no references")
        self.n = len(hyps)
        own = with_meteor and meteor_runner is None
        runner = meteor_runner if with_meteor and not own else None
        filt: ParaphraseFilter | None = None
        try:
            tok_refs = [[coco_tokenize(r) for r in g] for g in refs]
            tok_hyps = [coco_tokenize(h) for h in hyps]
            if own:  # Java works (filtering paraphrases or scoring) while Python computes the other metrics
                filt = ParaphraseFilter([r for g in tok_refs for r in g])
                if filt.proc is None:
                    runner = Meteor(paraphrases=filt.path)
            if runner is not None:
                runner.submit(tok_hyps, tok_refs)
            self.mteval = MtevalStats(refs, hyps)
            self.rouge = [rouge_l(h, g) for h, g in zip(tok_hyps, tok_refs)]
            self.cider = cider_scores(tok_hyps, tok_refs)
            if own and runner is None and filt is not None:
                runner = Meteor(paraphrases=filt.result())
                runner.submit(tok_hyps, tok_refs)
            self.meteor: tuple[float, list[float]] | None = runner.result() if runner else None
        finally:
            if filt is not None:
                filt.close()
            if own and runner is not None:
                runner.close()

    def values(self) -> dict[str, float]:
        rows = self.mteval.rows
        out = {"BLEU": MtevalStats.bleu(rows), "NIST": MtevalStats.nist(rows)}
        if self.meteor is not None:
            out["METEOR"] = self.meteor[0]
        out["ROUGE_L"] = sum(self.rouge) / self.n
        out["CIDEr"] = sum(self.cider) / self.n
        return {m: out[m] for m in METRICS if m in out}

    def bootstrap_stderr(self, iters: int = 200, seed: int = 1234) -> dict[str, float | None]:
        """Bootstrap over segments (BLEU/NIST from resampled statistics, ROUGE-L/CIDEr as resampled means).

        NIST information weights and CIDEr document frequencies stay those of the full set; METEOR has none
        (re-running Java per resample would cost more than the evaluation).
        """
        import numpy as np

        if self.n < 2:
            return {m: None for m in self.values()}
        rows = self.mteval.rows
        ref_len = np.array([r[0] for r in rows], dtype=float)
        nrefs = np.array([r[1] for r in rows], dtype=float)
        match = np.array([r[2][:4] for r in rows], dtype=float)
        tst = np.array([r[3][:5] for r in rows], dtype=float)
        ref1 = np.array([r[4][0] for r in rows], dtype=float)
        info = np.array([r[5][:5] for r in rows], dtype=float)
        rouge = np.array(self.rouge)
        cider = np.array(self.cider)
        rng = np.random.default_rng(seed)
        beta = -math.log(0.5) / math.log(1.5) / math.log(1.5)
        res: dict[str, list[float]] = {"BLEU": [], "NIST": [], "ROUGE_L": [], "CIDEr": []}
        for _ in range(iters):
            idx = rng.integers(0, self.n, self.n)
            m, t, rl = match[idx].sum(0), tst[idx].sum(0), ref_len[idx].sum()
            exp_len = math.exp(min(0.0, 1 - rl / t[0])) if t[0] > 0 else 0.0
            score, smooth = 0.0, 1
            for j in range(4):
                if t[j] == 0:
                    continue
                if m[j] == 0:
                    smooth *= 2
                    score += math.log(1 / (smooth * t[j]))
                else:
                    score += math.log(m[j] / t[j])
            res["BLEU"].append(math.exp(score / 4) * exp_len)
            inf = info[idx].sum(0)
            nist = float(sum(inf[j] / max(t[j], 1) for j in range(5)))
            r1, nr = ref1[idx].sum(), nrefs[idx].sum()
            ratio = t[0] / (r1 / (nr / self.n)) if r1 and nr else 0.0
            pen = 1.0 if ratio >= 1 else 0.0 if ratio <= 0 else math.exp(-beta * math.log(ratio) ** 2)
            res["NIST"].append(nist * pen)
            res["ROUGE_L"].append(float(rouge[idx].mean()))
            res["CIDEr"].append(float(cider[idx].mean()))
        out: dict[str, float | None] = {m: float(np.std(v, ddof=1)) for m, v in res.items()}
        if self.meteor is not None:
            out["METEOR"] = None
        return out


def e2e_metrics(refs: Sequence[Sequence[str]], hyps: Sequence[str], with_meteor: bool = True,
                meteor_runner: Meteor | None = None) -> dict[str, float]:
    """BLEU, NIST, METEOR, ROUGE_L, CIDEr as the official E2E scorer reports them (BLEU as a fraction, not x100)."""
    return E2EScores(refs, hyps, with_meteor, meteor_runner).values()
