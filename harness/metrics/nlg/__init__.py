"""E2E NLG metrics exactly as the official E2E scorer (tuetschek/e2e-metrics, `measure_scores.py`) computes them.

- BLEU and NIST (mteval.py): the scorer's mteval-v13a-sig.pl (tokenisation, NIST information weights from the
  references, closest-reference brevity penalty, smoothed BLEU, any number of references per segment), in Python.
- METEOR 1.5 (meteor.py): the jar pycocoevalcap ships, run with Java as `-l en -norm` over the stdio protocol its
  wrapper uses.
- ROUGE-L (beta = 1.2, rouge.py) and CIDEr (cider.py): coco-caption's formulas, over coco-caption's PTB tokenisation
  (ptb.py: the Stanford PTBTokenizer with -lowerCase, then punctuation tokens dropped), in pure Python so no Java is
  needed for them.
- e2e.py: all five over one system output, with bootstrap standard errors.

Why our own code: the official tools need Perl and two Java launches per call and look-alike re-implementations
differ by a lot (e.g. METEOR 0.81 instead of 0.46). Parity with the official scorer is pinned in
tests/test_nlg_metrics.py. This package re-exports the public names, so `from harness.metrics.nlg import X` works.
"""

from __future__ import annotations

import shutil  # noqa: F401 - callers (tests) reach `nlg.shutil.which`, the lookup meteor.py uses to find Java

from harness.metrics.nlg.cider import cider_scores
from harness.metrics.nlg.e2e import METRICS, E2EScores, e2e_metrics
from harness.metrics.nlg.meteor import JAVA_MISSING, Meteor, ParaphraseFilter, cache_dir, meteor_jar
from harness.metrics.nlg.mteval import MtevalStats, mteval_tokenize
from harness.metrics.nlg.ptb import COCO_PUNCTUATIONS, coco_tokenize, ptb_tokenize
from harness.metrics.nlg.rouge import rouge_l

__all__ = [
    "COCO_PUNCTUATIONS", "JAVA_MISSING", "METRICS", "E2EScores", "Meteor", "MtevalStats", "ParaphraseFilter", "cache_dir",
    "cider_scores", "coco_tokenize", "e2e_metrics", "meteor_jar", "mteval_tokenize", "ptb_tokenize", "rouge_l",
]
