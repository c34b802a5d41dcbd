"""Elo, Bradley–Terry, win rates and %-of-baseline: hand-computed cases, an independent fit, and FastChat's review tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from judges.formats import fastchat_pair_from_name, load_judgments, qlora_pair_from_name
from judges.ratings import Match, bradley_terry, elo, elo_sequence, relative_scores, win_rates


def expected(ra: float, rb: float) -> float:
    return 1 / (1 + 10 ** ((rb - ra) / 400))


def test_elo_single_match_and_tie_by_hand() -> None:
    t = elo([Match("a", "b", 1.0)], k=4, rounds=50)
    r = {x.model: x for x in t.ratings}
    assert r["a"].rating == pytest.approx(1002) and r["b"].rating == pytest.approx(998)
    assert r["a"].lo == r["a"].hi == pytest.approx(1002)  # one match: every order is the same
    t = elo([Match("a", "b", 0.5)], k=32, rounds=10)
    assert [x.rating for x in t.ratings] == pytest.approx([1000, 1000])


def test_elo_two_orders_by_hand() -> None:
    # a beats b, then c beats a (or the other order). Worked out with the Elo formula by hand:
    k = 4
    # order 1: a-b first
    a1, b1 = 1000 + k * 0.5, 1000 - k * 0.5
    e = expected(a1, 1000)
    a_1, c_1 = a1 + k * (0 - e), 1000 - k * (0 - e)
    # order 2: c-a first
    c2, a2 = 1000 + k * 0.5, 1000 - k * 0.5
    e = expected(a2, 1000)
    a_2, b_2 = a2 + k * (1 - e), 1000 - k * (1 - e)
    matches = [Match("a", "b", 1.0), Match("a", "c", 0.0)]
    t = elo(matches, k=k, rounds=4000, seed=1)
    r = {x.model: x for x in t.ratings}
    # each order has probability 1/2, so the mean over many orders is close to the average of both
    assert r["a"].rating == pytest.approx((a_1 + a_2) / 2, abs=0.02)
    assert r["b"].rating == pytest.approx((b1 + b_2) / 2, abs=0.02)
    assert r["c"].rating == pytest.approx((c_1 + c2) / 2, abs=0.02)
    assert r["a"].lo == pytest.approx(min(a_1, a_2)) and r["a"].hi == pytest.approx(max(a_1, a_2))
    # same seed, same result; another seed differs slightly
    assert elo(matches, k=k, rounds=4000, seed=1).ratings[0].rating == t.ratings[0].rating


def test_elo_skips_and_counts_parse_failures() -> None:
    m = [Match("a", "b", 1.0), Match("a", "b", None), Match("b", "a", None)]
    t = elo(m, rounds=10)
    assert t.skipped == 2 and t.n_matches == 1
    with pytest.raises(HarnessError, match="no usable"):
        elo([Match("a", "b", None)], rounds=10)
    with pytest.raises(HarnessError, match="--k"):
        elo(m, k=0)


def test_bt_two_players_closed_form() -> None:
    # 7 wins, 2 losses, 2 ties for a: MLE p = 8/11 -> difference 400 log10(8/3)
    m = [Match("a", "b", 1.0)] * 7 + [Match("b", "a", 1.0)] * 2 + [Match("a", "b", 0.5)] * 2
    t = bradley_terry(m, rounds=0)
    r = {x.model: x.rating for x in t.ratings}
    assert r["a"] - r["b"] == pytest.approx(400 * math.log10(8 / 3), abs=0.01)
    assert r["a"] + r["b"] == pytest.approx(2000)


def _sklearn_bt(matches: list[Match], models: list[str]) -> np.ndarray:
    """Chatbot Arena's recipe: logistic regression on +/- indicator rows, ties split as one win each way."""
    from sklearn.linear_model import LogisticRegression

    pos = {m: i for i, m in enumerate(models)}
    rows, ys = [], []
    for m in matches:
        x = np.zeros(len(models))
        x[pos[m.model_a]], x[pos[m.model_b]] = math.log(10), -math.log(10)
        outs = [1.0, 1.0] if m.outcome == 1.0 else ([0.0, 0.0] if m.outcome == 0.0 else [1.0, 0.0])
        for y in outs:
            rows.append(x)
            ys.append(y)
    lr = LogisticRegression(fit_intercept=False, C=1e8, tol=1e-10, max_iter=10_000)
    lr.fit(np.array(rows), np.array(ys))
    coef = 400 * lr.coef_[0]
    return coef - coef.mean() + 1000


def test_bt_matches_arena_logistic_regression() -> None:
    rng = np.random.default_rng(3)
    strength = {"a": 1.0, "b": 0.3, "c": 0.0, "d": -0.8}
    names = list(strength)
    matches = []
    for _ in range(400):
        i, j = rng.choice(4, 2, replace=False)
        p = 1 / (1 + math.exp(-(strength[names[i]] - strength[names[j]])))
        u = rng.random()
        matches.append(Match(names[i], names[j], 0.5 if abs(u - p) < 0.05 else float(u < p)))
    ours = {r.model: r.rating for r in bradley_terry(matches, rounds=0).ratings}
    ref = _sklearn_bt(matches, sorted(names))
    assert [ours[m] for m in sorted(names)] == pytest.approx(list(ref), abs=0.05)
    t = bradley_terry(matches, rounds=200, seed=0)
    for r in t.ratings:
        assert r.lo < r.rating < r.hi and r.hi - r.lo < 150


def test_win_rates_and_relative_by_hand() -> None:
    m = [Match("a", "b", 1.0), Match("b", "a", 0.5), Match("a", "b", 0.0), Match("a", "c", 1.0)]
    models, rate, count = win_rates(m)
    i, j, c = models.index("a"), models.index("b"), models.index("c")
    assert count[i, j] == 3 and rate[i, j] == pytest.approx(1.5 / 3) and rate[j, i] == pytest.approx(1.5 / 3)
    assert rate[i, c] == 1.0 and np.isnan(rate[j, c])
    from judges.ratings import ScorePair

    pairs = [ScorePair("1", "m", "base", 8, 10), ScorePair("2", "base", "m", 5, 4)]
    (rel,) = relative_scores(pairs, "base", rounds=100)
    assert rel.percent == pytest.approx(100 * 12 / 15) and rel.n_questions == 2
    assert rel.lo <= rel.percent <= rel.hi


def test_elo_vectorised_replay_equals_plain_loop(shared_data: Path) -> None:
    files = sorted((shared_data / "fastchat/legacy_vicuna_eval_table").glob("review__vicuna-13b-20230322-clean-lang__*"))
    matches = load_judgments(files).matches
    models = sorted({x.model_a for x in matches} | {x.model_b for x in matches})
    pos = {m: i for i, m in enumerate(models)}
    a = np.array([pos[x.model_a] for x in matches])
    b = np.array([pos[x.model_b] for x in matches])
    s = np.array([x.outcome for x in matches], dtype=float)
    orders = np.stack([np.random.default_rng(i).permutation(len(matches)) for i in range(3)])
    fast = elo_sequence(a, b, s, len(models), 4.0, orders)
    for row, order in zip(fast, orders):
        plain = dict.fromkeys(models, 1000.0)
        for t in order:
            x = matches[t]
            ea = expected(plain[x.model_a], plain[x.model_b])
            plain[x.model_a] += 4 * (x.outcome - ea)
            plain[x.model_b] -= 4 * (x.outcome - ea)
        assert list(row) == pytest.approx([plain[m] for m in models])


def test_fastchat_review_tables(shared_data: Path) -> None:
    d = shared_data / "fastchat/legacy_vicuna_eval_table"
    files = sorted(d.glob("review__vicuna-13b-20230322-clean-lang__*.jsonl"))
    assert len(files) == 4
    data = load_judgments(files)
    assert set(data.sources.values()) == {"fastchat-review"} and len(data.matches) == 320
    # tally vicuna vs gpt35 straight from the file's score pairs
    gpt = next(f for f in files if "review_gpt35_" in f.name)
    rows = [json.loads(x) for x in gpt.read_text().splitlines()]
    w = sum(r["score"][1] > r["score"][0] for r in rows)
    ties = sum(r["score"][1] == r["score"][0] for r in rows)
    bt = bradley_terry(data.matches, rounds=0)
    rec = {r.model: r for r in bt.ratings}
    v = rec["vicuna-13b-20230322-clean-lang"]
    assert v.wins + v.ties + v.losses == 320
    g = rec["gpt35"]
    assert (g.losses, g.ties, g.wins) == (w, ties, 80 - w - ties)
    # FastChat's published "Vicuna reaches 92% of ChatGPT" comes from these GPT-4 scores (total-score ratio)
    (rel,) = relative_scores(data.pairs, "gpt35", rounds=300)
    total = sum(r["score"][1] for r in rows) / sum(r["score"][0] for r in rows)
    assert rel.percent == pytest.approx(100 * total) and round(rel.percent) == 92
    assert rel.lo < rel.percent < rel.hi
    # BT agrees with the independent logistic-regression fit on real data too
    models = sorted(rec)
    ref = _sklearn_bt(data.matches, models)
    assert [rec[m].rating for m in models] == pytest.approx(list(ref), abs=0.1)
    # Elo: LLaMA-13B lost most of its matches and is last; every interval contains its mean
    t = elo(data.matches, rounds=500)
    assert t.ratings[-1].model == "llama-13b"
    assert all(r.lo <= r.rating <= r.hi for r in t.ratings)


def test_qlora_threeclass_files(tmp_path: Path) -> None:
    assert qlora_pair_from_name(Path("13b-guanaco-vicuna-generations-topp0.9-temp0.7-vs-answer-bard-gpt-4-reviewer-"
                                     "threeclass.jsonl")) == ("13b-guanaco-vicuna-generations-topp0.9-temp0.7",
                                                              "answer-bard")
    assert qlora_pair_from_name(Path("answer-bard-vs-answer-gpt4-gpt-4-reviewer-threeclass.jsonl")) == (
        "answer-bard", "answer-gpt4")
    assert qlora_pair_from_name(Path("7b-guanaco-vs-gpt-3.5-gpt4-reviewer.jsonl")) == ("7b-guanaco", "gpt-3.5")
    assert fastchat_pair_from_name(Path("review__gpt-3.5-turbo_review_vicuna-13b__gpt-3.5-turbo_review_alpaca-13b_"
                                        "vicuna-13b.jsonl")) == ("alpaca-13b", "vicuna-13b")
    f1 = tmp_path / "guanaco-7b-vs-chatgpt-gpt-4-reviewer-threeclass.jsonl"
    f2 = tmp_path / "chatgpt-vs-guanaco-7b-gpt-4-reviewer-threeclass.jsonl"
    f1.write_text("".join(json.dumps({"question_id": q, "score": s}) + "\n" for q, s in [(1, 1), (2, 2), (3, 3), (4, -1)]))
    f2.write_text("".join(json.dumps({"question_id": q, "score": s}) + "\n" for q, s in [(1, 2), (2, 2), (3, 1)]))
    data = load_judgments([f1, f2], rename={"guanaco-7b": "Guanaco-7B"})
    assert [(m.model_a, m.model_b, m.outcome) for m in data.matches] == [
        ("Guanaco-7B", "chatgpt", 1.0), ("Guanaco-7B", "chatgpt", 0.0), ("Guanaco-7B", "chatgpt", 0.5),
        ("Guanaco-7B", "chatgpt", None), ("chatgpt", "Guanaco-7B", 0.0), ("chatgpt", "Guanaco-7B", 0.0),
        ("chatgpt", "Guanaco-7B", 1.0)]
    t = elo(data.matches, rounds=100)
    assert t.skipped == 1 and t.n_matches == 6
    bad = tmp_path / "x-vs-y.jsonl"
    bad.write_text(json.dumps({"question_id": 1, "score": 5}) + "\n")
    with pytest.raises(HarnessError, match=r"x-vs-y.jsonl:1: score must be 1, 2, 3 or -1"):
        load_judgments([bad])


def test_baseline_percentages_from_single_gradings(tmp_path: Path) -> None:
    from harness.judge_cli import tournament

    rows = []
    for q, (m, base) in enumerate([(6, 8), (9, 6), (None, 7), (4, None)], 1):  # None: a parse failure on that side
        rows.append({"kind": "single", "question_id": q, "turn": 1, "model": "tuned", "score": m})
        rows.append({"kind": "single", "question_id": q, "turn": 1, "model": "chatgpt", "score": base})
    f = tmp_path / "single.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ratings.md"
    tournament(files=[f], baseline="chatgpt", output=out, bt_rounds=10, elo_rounds=10)
    md = out.read_text()
    assert f"| tuned | {100 * 15 / 14:.1f}% |" in md and "| 2 |" in md  # questions 1 and 2 only: (6+9)/(8+6)
    assert not out.with_suffix(".png").exists()  # no matches, so no rating plot
    with pytest.raises(HarnessError, match="no pairwise matches"):
        tournament(files=[f], output=out)
