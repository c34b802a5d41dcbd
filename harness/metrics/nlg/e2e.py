"""The whole E2E metric set of one system output: BLEU, NIST, METEOR, ROUGE_L, CIDEr as the official scorer gives them."""

from __future__ import annotations

from collections.abc import Sequence

from harness.errors import HarnessError
from harness.metrics.nlg.cider import cider_scores
from harness.metrics.nlg.meteor import Meteor, ParaphraseFilter
from harness.metrics.nlg.mteval import MtevalStats, bleu_from_sums, nist_from_sums
from harness.metrics.nlg.ptb import coco_tokenize
from harness.metrics.nlg.rouge import rouge_l

METRICS = ("BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr")


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
        res: dict[str, list[float]] = {"BLEU": [], "NIST": [], "ROUGE_L": [], "CIDEr": []}
        for _ in range(iters):
            idx = rng.integers(0, self.n, self.n)
            t = tst[idx].sum(0).tolist()
            res["BLEU"].append(bleu_from_sums(float(ref_len[idx].sum()), match[idx].sum(0).tolist(), t))
            res["NIST"].append(nist_from_sums(info[idx].sum(0).tolist(), t, float(ref1[idx].sum()),
                                              float(nrefs[idx].sum()), self.n))
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
