"""Ratings from judged matches: Elo over random orders, Bradley–Terry MLE with bootstrap, win rates, score ratios.

Elo follows the QLoRA paper: start at 1000, replay every match in many random orders, report the mean
rating and its 2.5/97.5 percentiles across orders. K defaults to 4 (the Chatbot Arena default the paper
cites, reported to give its Table 1 although its text says 32; see README). Bradley–Terry is
the order-free alternative Chatbot Arena moved to: a maximum-likelihood fit, intervals from resampling
matches. Ties count half a win in both; parse failures (outcome None) are skipped and counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from harness.errors import HarnessError

SCALE = 400.0
INIT = 1000.0


@dataclass(frozen=True)
class Match:
    """One judged comparison. outcome: 1 = model_a better, 0 = model_b better, 0.5 = tie, None = parse failure."""

    model_a: str
    model_b: str
    outcome: float | None
    question_id: str = ""


@dataclass(frozen=True)
class ScorePair:
    """Two answers to one question with numeric scores (a FastChat review, or two single gradings joined)."""

    question_id: str
    model_a: str
    model_b: str
    score_a: float
    score_b: float


@dataclass
class Rating:
    model: str
    rating: float
    lo: float
    hi: float
    wins: float = 0.0
    ties: float = 0.0
    losses: float = 0.0


@dataclass
class RatingTable:
    method: str
    ratings: list[Rating]
    n_matches: int
    skipped: int  # parse failures left out
    notes: list[str] = field(default_factory=list)


def _index(matches: Sequence[Match]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, int]:
    """Models (sorted), and arrays a, b, s of the usable matches; the number of skipped parse failures."""
    usable = [m for m in matches if m.outcome is not None and m.model_a != m.model_b]
    skipped = sum(1 for m in matches if m.outcome is None)
    models = sorted({m.model_a for m in matches} | {m.model_b for m in matches})
    pos = {name: i for i, name in enumerate(models)}
    a = np.array([pos[m.model_a] for m in usable], dtype=np.int64)
    b = np.array([pos[m.model_b] for m in usable], dtype=np.int64)
    s = np.array([float(m.outcome) for m in usable], dtype=np.float64)  # type: ignore[arg-type]
    for m in usable:
        if m.outcome not in (0.0, 0.5, 1.0):
            raise HarnessError(f"match {m.model_a} vs {m.model_b} (question {m.question_id}): outcome {m.outcome} "
                               "is not 0, 0.5 or 1")
    return models, a, b, s, skipped


def _records(models: list[str], a: np.ndarray, b: np.ndarray, s: np.ndarray) -> dict[str, tuple[float, float, float]]:
    rec = {m: [0.0, 0.0, 0.0] for m in models}
    for i, j, x in zip(a.tolist(), b.tolist(), s.tolist()):
        slot = 0 if x == 1.0 else (1 if x == 0.5 else 2)
        rec[models[i]][slot] += 1
        rec[models[j]][2 - slot if slot != 1 else 1] += 1
    return {m: (v[0], v[1], v[2]) for m, v in rec.items()}


def elo_sequence(a: np.ndarray, b: np.ndarray, s: np.ndarray, n_models: int, k: float, order: np.ndarray) -> np.ndarray:
    """Final Elo ratings after playing matches in `order` (rows = independent orders). Returns (rows, n_models)."""
    rows = order.shape[0]
    r = np.full((rows, n_models), INIT)
    idx = np.arange(rows)
    for t in range(order.shape[1]):
        m = order[:, t]
        ia, ib, sa = a[m], b[m], s[m]
        ra, rb = r[idx, ia], r[idx, ib]
        ea = 1.0 / (1.0 + 10.0 ** ((rb - ra) / SCALE))
        delta = k * (sa - ea)
        r[idx, ia] = ra + delta
        r[idx, ib] = rb - delta
    return r


def elo(matches: Sequence[Match], k: float = 4.0, rounds: int = 10_000, seed: int = 0, chunk: int = 1000) -> RatingTable:
    """Mean Elo and 95% interval over `rounds` random orders of the matches (seeded, reproducible)."""
    if k <= 0:
        raise HarnessError(f"--k: must be > 0, got {k}")
    if rounds < 1:
        raise HarnessError(f"--elo-rounds: must be >= 1, got {rounds}")
    models, a, b, s, skipped = _index(matches)
    if len(a) == 0:
        raise HarnessError("no usable pairwise matches to rate (every judgment missing or a parse failure)")
    rng = np.random.default_rng(seed)
    finals = []
    base = np.arange(len(a), dtype=np.int64)
    for start in range(0, rounds, chunk):
        n = min(chunk, rounds - start)
        order = rng.permuted(np.tile(base, (n, 1)), axis=1)
        finals.append(elo_sequence(a, b, s, len(models), k, order))
    allr = np.concatenate(finals)
    mean = allr.mean(axis=0)
    lo, hi = np.percentile(allr, [2.5, 97.5], axis=0)
    rec = _records(models, a, b, s)
    out = [Rating(m, float(mean[i]), float(lo[i]), float(hi[i]), *rec[m]) for i, m in enumerate(models)]
    out.sort(key=lambda r: -r.rating)
    return RatingTable(f"Elo (K={k:g}, {rounds} orders, seed {seed})", out, len(a), skipped)


def _win_matrix(a: np.ndarray, b: np.ndarray, s: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """W[i, j] = (weighted) wins of i over j, ties counting half to each side."""
    w = np.ones(len(a)) if weights is None else weights
    mat = np.zeros((n, n))
    np.add.at(mat, (a, b), w * s)
    np.add.at(mat, (b, a), w * (1.0 - s))
    return mat


def bt_fit(wins: np.ndarray, l2: float = 1e-6) -> np.ndarray:
    """Bradley–Terry log-strengths maximising sum_ij W_ij log sigmoid(t_i - t_j), centred at 0.

    A tiny L2 term keeps the fit finite when a model won (or lost) every match; it moves ratings
    by far less than a point whenever the plain MLE exists.
    """
    from scipy.optimize import minimize

    n = wins.shape[0]

    def f(t: np.ndarray) -> tuple[float, np.ndarray]:
        d = t[:, None] - t[None, :]
        logsig = -np.logaddexp(0.0, -d)
        p = np.exp(logsig)
        loss = -(wins * logsig).sum() + l2 * (t @ t)
        g_mat = wins * (1.0 - p)  # d/d t_i of W_ij log sigmoid(t_i - t_j)
        grad = -(g_mat.sum(axis=1) - g_mat.sum(axis=0)) + 2 * l2 * t
        return float(loss), grad

    res = minimize(f, np.zeros(n), jac=True, method="L-BFGS-B", options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-15})
    t = res.x - res.x.mean()
    return t


def bt_ratings(t: np.ndarray) -> np.ndarray:
    """Log-strengths to the Elo scale (400 points = 10:1 odds), mean 1000."""
    return INIT + SCALE / math.log(10.0) * t


def bradley_terry(matches: Sequence[Match], rounds: int = 1000, seed: int = 0) -> RatingTable:
    """BT MLE ratings with 95% percentile intervals from `rounds` bootstrap resamples of the matches."""
    if rounds < 0:
        raise HarnessError(f"--bt-rounds: must be >= 0, got {rounds}")
    models, a, b, s, skipped = _index(matches)
    if len(a) == 0:
        raise HarnessError("no usable pairwise matches to rate (every judgment missing or a parse failure)")
    n = len(models)
    point = bt_ratings(bt_fit(_win_matrix(a, b, s, n)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(rounds):
        counts = np.bincount(rng.integers(0, len(a), len(a)), minlength=len(a)).astype(float)
        boots.append(bt_ratings(bt_fit(_win_matrix(a, b, s, n, counts))))
    if boots:
        lo, hi = np.percentile(np.array(boots), [2.5, 97.5], axis=0)
    else:
        lo, hi = point, point
    rec = _records(models, a, b, s)
    out = [Rating(m, float(point[i]), float(lo[i]), float(hi[i]), *rec[m]) for i, m in enumerate(models)]
    out.sort(key=lambda r: -r.rating)
    return RatingTable(f"Bradley–Terry (MLE, {rounds} bootstrap resamples, seed {seed})", out, len(a), skipped)


def win_rates(matches: Sequence[Match]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(models, rate, count): rate[i, j] = share of i's matches against j that i won (ties half); NaN if none."""
    models, a, b, s, _ = _index(matches)
    n = len(models)
    wins = _win_matrix(a, b, s, n)
    count = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(count > 0, wins / np.where(count > 0, count, 1), np.nan)
    return models, rate, count


@dataclass
class Relative:
    model: str
    percent: float
    lo: float
    hi: float
    n_questions: int


def relative_scores(pairs: Sequence[ScorePair], baseline: str, rounds: int = 1000, seed: int = 0) -> list[Relative]:
    """Each model's total score as a percentage of the baseline's on the same questions, with a bootstrap 95% interval.

    QLoRA's Vicuna table: the judge scores a model's and the baseline's answers; the model's score is
    sum(model) / sum(baseline) over the questions both answered. Questions are resampled for the interval.
    """
    per_model: dict[str, list[tuple[float, float]]] = {}
    for p in pairs:
        if p.model_b == baseline and p.model_a != baseline:
            per_model.setdefault(p.model_a, []).append((p.score_a, p.score_b))
        elif p.model_a == baseline and p.model_b != baseline:
            per_model.setdefault(p.model_b, []).append((p.score_b, p.score_a))
    if not pairs:
        raise HarnessError(f"--baseline {baseline}: the inputs hold no scores (single or multi judgments, or FastChat "
                           "reviews); pairwise verdicts give ratings and win rates only")
    if not per_model:
        known = sorted({p.model_a for p in pairs} | {p.model_b for p in pairs})
        raise HarnessError(f"--baseline {baseline}: no scored answers pair it with another model (models: "
                           f"{', '.join(known) or 'none'})")
    rng = np.random.default_rng(seed)
    out = []
    for model, rows in sorted(per_model.items()):
        arr = np.array(rows)
        if arr[:, 1].sum() <= 0:
            raise HarnessError(f"--baseline {baseline}: its scores sum to 0 against {model}; a percentage is undefined")
        pct = 100.0 * arr[:, 0].sum() / arr[:, 1].sum()
        boots = []
        for _ in range(rounds):
            pick = arr[rng.integers(0, len(arr), len(arr))]
            if pick[:, 1].sum() > 0:
                boots.append(100.0 * pick[:, 0].sum() / pick[:, 1].sum())
        lo, hi = (np.percentile(boots, [2.5, 97.5]) if boots else (pct, pct))
        out.append(Relative(model, float(pct), float(lo), float(hi), len(arr)))
    out.sort(key=lambda r: -r.percent)
    return out


# --- reports -----------------------------------------------------------------------------------
def _fmt_ci(r: float, lo: float, hi: float) -> str:
    return f"{r:.0f} | {lo:.0f} – {hi:.0f} | +{hi - r:.0f} / -{r - lo:.0f}"


def rating_markdown(table: RatingTable) -> str:
    lines = [f"### {table.method}", "", f"{table.n_matches} matches; {table.skipped} parse failures skipped.", "",
             "| rank | model | rating | 95% interval | ± | wins | ties | losses |", "|---:|---|---:|---|---|---:|---:|---:|"]
    for i, r in enumerate(table.ratings, 1):
        lines.append(f"| {i} | {r.model} | {_fmt_ci(r.rating, r.lo, r.hi)} | {r.wins:g} | {r.ties:g} | {r.losses:g} |")
    lines += [f"- {n}" for n in table.notes]
    return "\n".join(lines) + "\n"


def win_rate_markdown(models: list[str], rate: np.ndarray, count: np.ndarray, order: list[str] | None = None) -> str:
    order = order or models
    pos = {m: i for i, m in enumerate(models)}
    lines = ["### Win rate (row beats column; ties count half; n in brackets)", "",
             "| model | " + " | ".join(order) + " |", "|---|" + "---:|" * len(order)]
    for a in order:
        cells = []
        for b in order:
            i, j = pos[a], pos[b]
            cells.append("–" if a == b or count[i, j] == 0 else f"{rate[i, j]:.2f} ({count[i, j]:g})")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def relative_markdown(rows: list[Relative], baseline: str) -> str:
    lines = [f"### Score as a percentage of {baseline}", "",
             "| model | % of baseline | 95% interval | questions |", "|---|---:|---|---:|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.percent:.1f}% | {r.lo:.1f} – {r.hi:.1f}% | {r.n_questions} |")
    return "\n".join(lines) + "\n"


def plot_ratings(tables: list[RatingTable], path: Path) -> None:
    """One panel per rating method: points with 95% interval bars, best model on top. Written atomically."""
    import os
    import tempfile

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(t.ratings) for t in tables)
    fig, axes = plt.subplots(1, len(tables), figsize=(6 * len(tables), 0.45 * n + 1.5), squeeze=False)
    for ax, t in zip(axes[0], tables):
        rs = list(reversed(t.ratings))
        y = np.arange(len(rs))
        val = np.array([r.rating for r in rs])
        err = np.array([[r.rating - r.lo for r in rs], [r.hi - r.rating for r in rs]])
        ax.errorbar(val, y, xerr=err, fmt="o", capsize=4)
        ax.set_yticks(y, [r.model for r in rs])
        ax.axvline(INIT, color="grey", lw=0.5, ls="--")
        ax.set_title(t.method, fontsize=9)
        ax.set_xlabel("rating (95% interval)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        plt.close(fig)
