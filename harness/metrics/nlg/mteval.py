"""mteval-v13a (the E2E scorer's mteval-v13a-sig.pl) tokenisation, BLEU and NIST, ported from Perl.

Tokenisation, NIST information weights from the references, closest-reference brevity penalty, smoothed BLEU and
any number of references per segment, all as the Perl script computes them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

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
        match = [sum(r[2][j] for r in rows) for j in range(4)]
        tst = [sum(r[3][j] for r in rows) for j in range(4)]
        return bleu_from_sums(sum(r[0] for r in rows), match, tst)

    @staticmethod
    def nist(rows: Sequence[tuple]) -> float:
        """mteval's corpus NIST (5-grams) with its length penalty against the average reference length."""
        tst = [sum(r[3][j] for r in rows) for j in range(5)]
        tst_info = [sum(r[5][j] for r in rows) for j in range(5)]
        return nist_from_sums(tst_info, tst, sum(r[4][0] for r in rows), sum(r[1] for r in rows), len(rows))


def bleu_from_sums(ref_length: float, match: Sequence[float], tst: Sequence[float]) -> float:
    """mteval's smoothed BLEU from corpus sums: closest reference length, matched and test n-gram counts (n = 1-4).

    Shared by the corpus score and its bootstrap resamples (which pass NumPy sums), so both are one formula.
    """
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


def nist_from_sums(tst_info: Sequence[float], tst: Sequence[float], ref1: float, n_refs: float, n_segs: int) -> float:
    """mteval's NIST from corpus sums: information of matched n-grams and test n-gram counts (n = 1-5), reference
    unigrams, number of non-empty references and of segments (the length penalty uses the average reference length)."""
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
