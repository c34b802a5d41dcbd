"""`harness view` in a real browser: headless Chromium (driven by Selenium, network switched off) opens a report made
from real runs of a tiny model (base and two adapters on GSM8K and ARC-Easy rows from ../shared/data, one judge
result and the `harness tournament` of it, one forgetting report) and every view is checked against the runs' own
files. Screenshots go to tests/artifacts/view/ ($HARNESS_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_main
from scipy.stats import binomtest

from harness.errors import HarnessError
from harness.reports.html import size_text

LIMIT = 24
SEED = 7  # not the default 1234, so the per-task page's seed is the run's
QUESTIONS = ["Write a haiku about autumn leaves.", "Explain what a LoRA adapter is.", "Name three prime numbers.",
             "Describe the water cycle briefly."]


def _harness(*args: str, env: dict[str, str] | None = None) -> None:
    """`harness ARGS` in this process, for module fixtures (run_main needs the function-scoped monkeypatch)."""
    from harness.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["harness", *args])
        for k, v in (env or {}).items():
            mp.setenv(k, v)
        try:
            main()
        except SystemExit as e:
            assert not e.code, f"harness {' '.join(args)} exited {e.code}"


def artifacts(name: str) -> Path:
    """A stable folder for test artefacts (screenshots): $HARNESS_ARTIFACTS/NAME, by default tests/artifacts/NAME
    (gitignored), so CI can upload them and a person can look at them after the run."""
    d = Path(os.environ.get("HARNESS_ARTIFACTS") or ROOT / "tests" / "artifacts") / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def _samples(run: Path, task: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "samples" / f"{task}.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path, shared_data: Path) -> dict[str, Any]:
    """Real runs, a judgment file and a forgetting report under one results directory, and its report."""
    from judge_server import JudgeServer
    from test_models_adapters import make_adapter

    from harness.leaderboard import table

    root = tmp_path_factory.mktemp("view")
    data = root / "data"
    for sub, name in (("arc", "ARC-Easy-Test.jsonl"), ("gsm8k", "test.jsonl")):
        (data / sub).mkdir(parents=True)
        (data / sub / name).symlink_to(shared_data / sub / name)
    adapters = [make_adapter(tiny_gpt2, root / "ad-attn", seed=5, target=["c_attn"]),
                make_adapter(tiny_gpt2, root / "ad-mlp", seed=6, target=["c_attn", "c_fc"])]
    res = root / "results"
    _harness("run", "-m", str(tiny_gpt2), "--adapter", str(adapters[0]), "--adapter", str(adapters[1]), "--with-base",
             "-t", "gsm8k,arc_easy", "--data-dir", str(data), "--limit", str(LIMIT), "--max-new-tokens", "8",
             "--seed", str(SEED), "-o", str(res), "--run-name", "tiny", "-q")
    questions = root / "questions.jsonl"
    questions.write_text("".join(json.dumps({"question_id": i + 1, "category": "writing", "turns": [q]}) + "\n"
                                 for i, q in enumerate(QUESTIONS)))
    _harness("generate", "-m", str(tiny_gpt2), "--adapter", str(adapters[0]), "--with-base", "--questions",
             str(questions), "-o", str(root / "answers"), "--max-new-tokens", "10", "-q")
    with JudgeServer(position_bias=True) as judge:
        _harness("judge", "pairwise", "--answers", str(root / "answers"), "--questions", str(questions), "--judge",
                 "test-judge", "--judge-base-url", judge.url, "-o", str(res / "judgments" / "pairwise.jsonl"),
                 "--no-cache", "-q", env={"OPENAI_API_KEY": "sk-test-view-0000"})
    _harness("forgetting", "--from-runs", str(res / "tiny__base"), "--from-runs", str(res / "tiny__ad-attn"),
             "--from-runs", str(res / "tiny__ad-mlp"), "--tasks", "arc_easy", "--target", "gsm8k", "-o", str(res),
             "--run-name", "forget")
    _harness("tournament", str(res / "judgments" / "pairwise.jsonl"), "-o", str(res / "tournament" / "ratings.md"),
             "--elo-rounds", "200", "--bt-rounds", "50")
    report = root / "report.html"
    _harness("view", str(res), "-o", str(report))
    board = table(res)
    return {"root": root, "results": res, "report": report, "board": board,
            "matches": res / "tournament" / "ratings.matches.jsonl",
            "names": {r["model"].get("adapter") or "base": r["name"] for r in board["rows"]}}


# --- the browser ---------------------------------------------------------------------------------------------------


def _chromium() -> tuple[str, str]:
    browser = next((p for n in ("chromium", "chromium-browser") if (p := shutil.which(n))), None)
    driver = shutil.which("chromedriver") or next((p for p in ("/usr/lib/chromium/chromedriver",) if Path(p).exists()),
                                                  None)
    if browser is None or driver is None:
        pytest.skip("browser tests need Debian's chromium and chromium-driver (apt-get install -y chromium "
                    f"chromium-driver); found browser={browser}, driver={driver}")
    return browser, driver


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium with the network emulated offline: the report must need nothing but its own file."""
    pytest.importorskip("selenium", reason="browser tests need selenium (pip install selenium)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = _chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
              "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    d = webdriver.Chrome(service=Service(driver), options=opts)
    d.execute_cdp_cmd("Network.enable", {})
    d.execute_cdp_cmd("Network.emulateNetworkConditions",
                      {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    yield d
    d.quit()


@pytest.fixture()
def page(browser: Any, runs: dict[str, Any]) -> Any:
    browser.get(runs["report"].as_uri())
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.page") == "leaderboard")
    return browser


def _wait(d: Any, cond: Any, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(d, timeout, poll_frequency=0.05).until(cond)


def _ready(d: Any, css: str) -> None:
    _wait(d, lambda d: d.find_element("css selector", css).get_attribute("data-state") == "ready")


def _tab(d: Any, name: str) -> None:
    d.find_element("id", f"tab-{name}").click()
    _wait(d, lambda d: d.execute_script("return document.body.dataset.page") == name)


def _choose(d: Any, css: str, text: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(d.find_element("css selector", css)).select_by_visible_text(text)


def _ids(d: Any, css: str) -> list[str]:
    return [e.get_attribute("data-doc-id") for e in d.find_elements("css selector", css)]


def _show_samples(d: Any, task: str, variant: str, size: str = "500") -> None:
    _tab(d, "samples")
    _ready(d, "#s-list")
    _choose(d, "#s-task", task)
    _ready(d, "#s-list")
    _choose(d, "#s-variant", variant)
    _choose(d, "#s-size", size)
    _ready(d, "#s-list")


# --- the views -------------------------------------------------------------------------------------------------------


def test_leaderboard_shows_every_row_with_paired_tests(page: Any, runs: dict[str, Any]) -> None:
    rows = page.find_elements("css selector", "#lb-table tbody tr")
    assert [r.get_attribute("data-row") for r in rows] == [r["name"] for r in runs["board"]["rows"]]
    assert len(rows) == 3
    base = _samples(runs["results"] / "tiny__base", "arc_easy")
    for adapter in ("ad-attn", "ad-mlp"):
        ours = {s["doc_id"]: s["metrics"]["acc"] for s in _samples(runs["results"] / f"tiny__{adapter}", "arc_easy")}
        gained = sum(1 for s in base if s["metrics"]["acc"] == 0 and ours[s["doc_id"]] == 1)
        lost = sum(1 for s in base if s["metrics"]["acc"] == 1 and ours[s["doc_id"]] == 0)
        ref = 1.0 if gained + lost == 0 else binomtest(gained, gained + lost, 0.5).pvalue
        row = next(r for r in rows if r.get_attribute("data-row") == runs["names"][adapter])
        sig = row.find_element("css selector", 'td[data-col="arc_easy/acc"] .sig')
        assert float(sig.get_attribute("data-p")) == pytest.approx(ref, rel=1e-5)
        assert f"{gained} fixed, {lost} broken" in sig.get_attribute("title")
    page.find_element("id", "show-p").click()
    assert page.find_element("css selector", "#lb-table .p").is_displayed()


def test_incorrect_filter_shows_exactly_the_incorrect_samples(page: Any, runs: dict[str, Any]) -> None:
    mixed = 0
    for adapter in ("ad-attn", "base"):
        _show_samples(page, "arc_easy", runs["names"][adapter])
        metric = page.find_element("id", "s-metric").get_attribute("value")
        assert metric == "acc_norm"  # the task's primary metric
        rows = _samples(runs["results"] / f"tiny__{adapter}", "arc_easy")
        for button, keep in (("f-incorrect", lambda v: v < 1), ("f-correct", lambda v: v >= 1), ("f-all", None)):
            page.find_element("id", button).click()
            _ready(page, "#s-list")
            want = [s["doc_id"] for s in rows if keep is None or keep(s["metrics"][metric])]
            assert _ids(page, "#s-list article.sample") == want
            assert page.find_element("id", "s-count").text == f"{len(want)} of {len(rows)} samples"
        mixed += 0 < sum(s["metrics"][metric] for s in rows) < len(rows)
    assert mixed  # some rows are right and some wrong, so the filter had something to split


def _flips(runs: dict[str, Any], adapter: str, task: str, metric: str) -> tuple[list[str], list[str]]:
    base = {s["doc_id"]: s["metrics"][metric] for s in _samples(runs["results"] / "tiny__base", task)}
    ours = _samples(runs["results"] / f"tiny__{adapter}", task)
    by_base_order = sorted(ours, key=lambda s: list(base).index(s["doc_id"]))
    fixed = [s["doc_id"] for s in by_base_order if s["metrics"][metric] > base[s["doc_id"]]]
    broke = [s["doc_id"] for s in by_base_order if s["metrics"][metric] < base[s["doc_id"]]]
    return fixed, broke


def test_flips_list_exactly_the_changed_items(page: Any, runs: dict[str, Any]) -> None:
    _tab(page, "flips")
    _ready(page, "#flips")
    changed = 0
    for adapter in ("ad-attn", "ad-mlp"):
        _choose(page, "#fl-variant", f"{runs['names'][adapter]} vs {runs['names']['base']}")
        _ready(page, "#flips")
        for task, metrics in (("arc_easy", ("acc", "acc_norm")), ("gsm8k", ("pass@1_strict", "pass@1_flexible"))):
            _choose(page, "#fl-task", task)
            _ready(page, "#flips")
            for metric in metrics:
                _choose(page, "#fl-metric", metric)
                _ready(page, "#flips")
                fixed, broke = _flips(runs, adapter, task, metric)
                assert _ids(page, "#flips-fixed article.flip") == fixed, (adapter, task, metric)
                assert _ids(page, "#flips-broke article.flip") == broke, (adapter, task, metric)
                assert page.find_element("id", "fl-summary").text.startswith(f"{len(fixed)} fixed, {len(broke)} broken")
                changed += len(fixed) + len(broke)
    assert changed > 0  # the adapters do change answers, so the check above saw real flips


def test_search_finds_a_known_prompt(page: Any, runs: dict[str, Any]) -> None:
    rows = _samples(runs["results"] / "tiny__base", "gsm8k")
    known = rows[7]["prompt"].split("\n")[0][10:60]  # a stretch of the eighth GSM8K question
    _show_samples(page, "gsm8k", runs["names"]["base"])
    box = page.find_element("id", "s-search")
    box.send_keys(known.upper())  # case-insensitive
    _wait(page, lambda d: d.find_element("id", "s-count").text.startswith("1 of"))
    _ready(page, "#s-list")
    assert _ids(page, "#s-list article.sample") == [rows[7]["doc_id"]]
    card = page.find_element("css selector", "#s-list article.sample")
    assert rows[7]["target"] in card.find_element("css selector", ".target pre").text
    box.clear()
    box.send_keys("no prompt says this 0x1f")
    _wait(page, lambda d: d.find_element("id", "s-count").text.startswith("0 of"))


def test_judges_forgetting_and_tasks_pages(page: Any, runs: dict[str, Any]) -> None:
    judgments = [json.loads(x) for x in (runs["results"] / "judgments" / "pairwise.jsonl").read_text().splitlines()]
    both = [j for j in judgments if None not in j["votes"]]
    flipped = sum(j["votes"][0] != j["votes"][1] for j in both)
    _tab(page, "judges")
    _ready(page, "#j-list")
    assert page.find_element("css selector", ".flip-rate").text == f"{100 * flipped / len(both):.1f}%"
    cards = page.find_elements("css selector", "#j-list article.judgment")
    assert len(cards) == len(judgments)
    assert judgments[0]["raw"][0].splitlines()[0] in cards[0].text  # the judge's rationale
    assert page.find_elements("css selector", "#judges svg.plot")  # ratings with intervals
    _tab(page, "forgetting")
    report = page.find_element("css selector", ".forgetting-report")
    assert report.find_elements("css selector", "svg.plot") and "ad-attn" in report.text and "ad-mlp" in report.text


def test_tournament_ratings_with_intervals(page: Any, runs: dict[str, Any]) -> None:
    """`harness tournament`'s *.matches.jsonl is rated again on the judges page: Elo and Bradley–Terry, each a plot and
    a table of rating and 95% interval per model, equal to judges.ratings on the same matches."""
    from harness.reports.judging import BT_ROUNDS, ELO_ROUNDS
    from judges.ratings import Match, bradley_terry, elo

    matches = [Match(**json.loads(x)) for x in runs["matches"].read_text().splitlines() if x.strip()]
    models = {m.model_a for m in matches} | {m.model_b for m in matches}
    assert len(matches) == len(QUESTIONS) and len(models) == 2 and "ad-attn" in models  # one match per question
    _tab(page, "judges")
    tours = page.find_elements("css selector", "#judges article.tournament")
    assert len(tours) == 1
    tour = tours[0]
    assert runs["matches"].name in tour.find_element("tag name", "h3").text
    assert f"{len(matches)} matches." in tour.text
    tables = tour.find_elements("css selector", "table")
    plots = tour.find_elements("css selector", "svg.plot")
    want = [elo(matches, rounds=ELO_ROUNDS), bradley_terry(matches, rounds=BT_ROUNDS)]
    assert len(tables) == len(plots) == len(want) == 2
    for table, plot, ref in zip(tables, plots, want):
        shown = [[td.text for td in tr.find_elements("tag name", "td")]
                 for tr in table.find_elements("css selector", "tbody tr")]
        assert shown == [[r.model, f"{r.rating:.1f}", f"[{r.lo:.1f}, {r.hi:.1f}]",
                          f"{r.wins:g} / {r.ties:g} / {r.losses:g}"] for r in ref.ratings], ref.method
        assert all(r.lo <= r.rating <= r.hi for r in ref.ratings) and any(r.lo < r.hi for r in ref.ratings)
        assert ref.method in plot.get_attribute("innerHTML")  # the plot's title
        assert all(r.model in plot.get_attribute("innerHTML") for r in ref.ratings)


def _cells(table: Any) -> dict[str, dict[str, str]]:
    """{variant: {column header: cell text}} of a settings table."""
    head = [th.text for th in table.find_elements("css selector", "thead th")]
    rows = [[td.text for td in tr.find_elements("tag name", "td")] for tr in table.find_elements("css selector", "tbody tr")]
    return {r[0]: dict(zip(head, r)) for r in rows}


def test_task_pages_show_the_runs_settings(page: Any, runs: dict[str, Any]) -> None:
    """Per task and variant: few-shot, decoding, seed, backend, quantisation, data source and hash, as the run recorded."""
    _tab(page, "tasks")
    for task in ("gsm8k", "arc_easy"):
        art = page.find_element("css selector", f'article.task[data-task="{task}"]')
        assert art.find_elements("css selector", "svg.plot")
        shown = _cells(art.find_element("css selector", "table.settings"))
        assert sorted(shown) == sorted(runs["names"].values())
        for adapter, name in runs["names"].items():
            res = json.loads((runs["results"] / f"tiny__{adapter}" / "results.json").read_text())
            entry, cells = res["tasks"][task], shown[name]
            assert cells["n"] == str(entry["n"]) == str(LIMIT)
            assert cells["few-shot"] == str(entry["num_fewshot"]) == "0"
            assert cells["seed"] == str(entry["seed"]) == str(SEED)
            gen = entry.get("generation")
            if task == "gsm8k":
                assert gen["temperature"] == 0 and gen["num_beams"] == 1
                assert cells["decoding"].startswith(f"greedy, max_new_tokens={gen['max_new_tokens']}, stop=")
                assert gen["max_new_tokens"] == 8
            else:
                assert gen is None and cells["decoding"] == f"none ({entry['output_type']})"
            backend = res["backend"]
            assert cells["backend"].startswith(f"{backend['name']} (transformers {backend['transformers']}")
            assert backend["name"] == "hf" and f"peft {backend['peft']}" in cells["backend"]
            assert res["model"]["quantization"] is None and cells["quantisation"] == "none"
            assert cells["dtype"] == res["model"]["dtype"]
            assert cells["data source"] == entry["data"]["source"] and cells["data hash"] == entry["data"]["hash"]
            assert Path(entry["data"]["source"]).name == {"gsm8k": "test.jsonl", "arc_easy": "ARC-Easy-Test.jsonl"}[task]


def test_report_needs_no_network_and_states_its_size(page: Any, runs: dict[str, Any]) -> None:
    html = runs["report"].read_text()
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'none\';', html)
    refs = re.findall(r"""(?:\b(?:src|href|action|formaction|poster)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*['"]?(?:https?:)?//"""
                      r"""|@import|<link\b|<iframe\b|<img\b|\bfetch\(|XMLHttpRequest|\bimport\()""", html)
    assert refs == []
    for name in [a.get_attribute("id")[4:] for a in page.find_elements("css selector", "#tabs a")]:
        _tab(page, name)
    _ready(page, "#j-list")
    assert page.execute_script("return performance.getEntriesByType('resource').length") == 0
    requests = [json.loads(e["message"])["message"] for e in page.get_log("performance")]
    urls = [m["params"]["request"]["url"] for m in requests if m["method"] == "Network.requestWillBeSent"]
    assert urls and all(u.startswith(("file://", "data:", "blob:")) for u in urls), urls
    assert page.find_element("id", "report-size").text == size_text(runs["report"].stat().st_size)
    assert not [e for e in page.get_log("browser") if e["level"] == "SEVERE"]


def test_screenshot_of_each_page(page: Any, runs: dict[str, Any]) -> None:
    """Artefacts: one PNG per page in artifacts("view") (tests/artifacts/view/ unless $HARNESS_ARTIFACTS says)."""
    out = artifacts("view")
    shots = []
    for a in page.find_elements("css selector", "#tabs a"):
        name = a.get_attribute("id")[4:]
        _tab(page, name)
        if name in ("samples", "flips", "judges"):
            _ready(page, {"samples": "#s-list", "flips": "#flips", "judges": "#j-list"}[name])
        shot = out / f"report-{name}.png"
        shot.unlink(missing_ok=True)
        page.save_screenshot(str(shot))
        assert shot.stat().st_size > 5000
        shots.append(shot.name)
    assert shots == [f"report-{n}.png" for n in ("leaderboard", "tasks", "samples", "flips", "judges", "forgetting")]


def test_docs_screenshot(request: pytest.FixtureRequest) -> None:
    """HARNESS_UPDATE_DOCS=1 (after `make demo`) rewrites docs/report.png, the README's picture: the flips page of the
    demo's report (results/report.html, or $HARNESS_DOCS_REPORT), its GSM8K adapter against its base."""
    if os.environ.get("HARNESS_UPDATE_DOCS") != "1":
        pytest.skip("HARNESS_UPDATE_DOCS=1 rewrites docs/report.png from the demo's report")
    report = Path(os.environ.get("HARNESS_DOCS_REPORT") or ROOT / "results" / "report.html")
    assert report.exists(), f"{report}: no demo report; run `make demo` first"
    browser = request.getfixturevalue("browser")
    browser.get(report.resolve().as_uri())
    _wait(browser, lambda d: d.execute_script("return document.body.dataset.page") == "leaderboard")
    _tab(browser, "flips")
    _ready(browser, "#flips")
    _choose(browser, "#fl-variant", "tiny-gpt2 + gsm8k-lora vs tiny-gpt2 (base)")
    _ready(browser, "#flips")
    _choose(browser, "#fl-task", "gsm8k")
    _ready(browser, "#flips")
    summary = browser.find_element("id", "fl-summary").text
    assert browser.find_elements("css selector", "#flips article.flip"), f"{report}: no flips to show ({summary})"
    docs = ROOT / "docs" / "report.png"
    docs.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(docs))
    assert docs.stat().st_size > 5000


# --- 10,000 samples per variant ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A base and an adapter run of 10,000 GSM8K-format samples each, written by the harness's own run writer."""
    import random

    from harness.evaluate import write_run_dir
    from harness.results import header

    rows = [json.loads(x) for x in (shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()]
    root = tmp_path_factory.mktemp("big") / "results"
    rng = random.Random(0)
    for label, adapter, p in (("base", None, 0.3), ("lora", "lora", 0.5)):
        samples = []
        for i in range(10_000):
            r = rows[i % len(rows)]
            gold = r["answer"].rsplit("#### ", 1)[1].strip()
            ok = rng.random() < p
            out = f" {r['answer'].split(chr(10))[0]} The answer is {gold if ok else rng.randint(0, 999)}."
            samples.append({"doc_id": str(i), "prompt": f"Question: {r['question']} (variant {i // len(rows)})\nAnswer:",
                            "output": out, "extracted": {"flexible": gold if ok else "0"}, "target": gold,
                            "metrics": {"pass@1_flexible": float(ok)}})
        model = {"base": "/m/tiny", "base_hash": "h", "quantization": None, "dtype": "float32"}
        if adapter:
            model.update(adapter=adapter, adapter_path="/a/lora", adapter_hash="lora")
        mean = sum(s["metrics"]["pass@1_flexible"] for s in samples) / len(samples)
        res = {**header(), "created": f"2026-01-01T00:00:0{len(label)}", "label": label, "model": model,
               "tasks": {"gsm8k": {"n": 10_000, "metrics": {"pass@1_flexible": {"value": mean, "stderr": 0.005}},
                                   "higher_is_better": True}}}
        write_run_dir(root / label, res, {"gsm8k": samples})
    return root


def test_ten_thousand_samples_stay_small_and_responsive(big: Path, browser: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "big.html"
    code, _, err = run_main(monkeypatch, capsys, "view", str(big), "-o", str(out))
    assert code == 0, err
    raw = sum(f.stat().st_size for f in big.rglob("*.jsonl"))
    assert out.stat().st_size < 20e6 and out.stat().st_size < raw / 3, (out.stat().st_size, raw)
    browser.get(out.as_uri())
    _tab(browser, "samples")
    _ready(browser, "#s-list")
    assert browser.find_element("id", "s-count").text == "10000 of 10000 samples"
    assert len(browser.find_elements("css selector", "#s-list article.sample")) == 25  # paged
    t0 = time.monotonic()
    browser.find_element("id", "f-incorrect").click()
    _ready(browser, "#s-list")
    browser.find_element("css selector", "#s-pager .next").click()
    _ready(browser, "#s-list")
    assert "page 2 of" in browser.find_element("css selector", "#s-pager .pageno").text
    _choose(browser, "#s-variant", "all variants")
    _ready(browser, "#s-list")
    browser.find_element("id", "s-search").send_keys("variant 7")
    _wait(browser, lambda d: d.find_element("id", "s-count").text.split()[2] == "20000")
    _ready(browser, "#s-list")
    assert time.monotonic() - t0 < 20  # four interactions over 20,000 samples, on a busy 2-core machine
    lora = [json.loads(x) for x in (big / "lora" / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    base = [json.loads(x) for x in (big / "base" / "samples" / "gsm8k.jsonl").read_text().splitlines()]
    want = sum(1 for r in base + lora if r["metrics"]["pass@1_flexible"] < 1 and "(variant 7)" in r["prompt"])
    assert browser.find_element("id", "s-count").text == f"{want} of 20000 samples"


# --- the command ---------------------------------------------------------------------------------------------------


def test_serve_and_open(runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    from harness.view_cli import make_server

    server = make_server(runs["report"], 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        got = httpx.get(url + "/", timeout=10)
        assert got.status_code == 200 and got.content == runs["report"].read_bytes()
        assert got.headers["content-type"].startswith("text/html")
        assert httpx.get(url + "/../results/tiny__base/results.json", timeout=10).status_code == 404
        with pytest.raises(HarnessError, match=f"--serve {server.server_address[1]}: cannot listen"):
            make_server(runs["report"], server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
    import webbrowser

    seen = tmp_path / "opened.txt"
    monkeypatch.setenv("BROWSER", f"{sys.executable} -c \"import sys; open({str(seen)!r}, 'w').write(sys.argv[1])\" %s")
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    out = tmp_path / "r.html"
    _harness("view", str(runs["results"] / "tiny__base"), "-o", str(out), "--open")
    assert seen.read_text() == out.resolve().as_uri()


def test_bad_inputs(tmp_path: Path, runs: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                    capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "out").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        cases = [
            (("view", str(tmp_path / "missing")), "no such file or directory"),
            (("view", str(tmp_path / "empty")), "no results.json, judgments, forgetting report or sweep found"),
            (("view", str(runs["results"]), "-o", str(tmp_path / "out")), "is a directory"),
            (("view", str(runs["results"]), "--serve", "70000"), "--serve 70000: not a port"),
            (("view", str(runs["results"]), "-o", str(tmp_path / "x.html"), "--serve", str(taken)), "cannot listen"),
        ]
        for args, says in cases:
            code, out, err = run_main(monkeypatch, capsys, *args)
            lines = err.strip().splitlines()
            assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "out"]  # nothing written


def test_sweep_table_and_plot(tiny_gpt2: Path, gsm8k_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    """A real (tiny) sweep's sweep.json becomes a table row per grid point and a metric-by-rank plot."""
    from harness.train.spec import TrainSpec
    from harness.train.sweep import run_sweep

    base = TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=tmp_path / "unused", data_dir=gsm8k_data,
                     target_modules="c_attn", max_steps=2, batch_size=4, train_limit=8, max_length=96,
                     eval_max_new_tokens=6, quiet=True)
    out = tmp_path / "sweep"
    run_sweep(base, "r=1,2", out, limit=2, eval_batch_size=8)
    points = json.loads((out / "sweep.json").read_text())["points"]
    code, _, err = run_main(monkeypatch, capsys, "view", str(out), "-o", str(tmp_path / "r.html"))
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    sweep = html[html.index('<article class="sweep">'):]
    sweep = sweep[: sweep.index("</article>")]
    assert 'aria-label="sweep"' in sweep and sweep.count("<tr><td>r=") == len(points) == 2
    for p in points:
        assert f"<td>{p['point']}</td><td>{p['params']['r']}</td>" in sweep
