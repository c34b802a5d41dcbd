"""Checkpoint trajectories: a --save-every training run evaluated with --checkpoints all is one variant per
checkpoint, in step order; the leaderboard and the report show metric against step with the best one marked and
the trainer's loss beside it."""

from __future__ import annotations

import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from conftest import run_main
from test_view import browser  # noqa: F401 - the headless Chromium fixture, for the Checkpoints page screenshot

from harness.errors import HarnessError
from harness.reports.checkpoints import checkpoint_label, expand_adapters, loss_curve, parse_selection

STEPS = [2, 4, 6]


def _harness(*args: str) -> None:
    """`harness ARGS` in this process, for module fixtures (run_main needs the function-scoped monkeypatch)."""
    from harness.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["harness", *args])
        try:
            main()
        except SystemExit as e:
            assert not e.code, f"harness {' '.join(args)} exited {e.code}"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path, gsm8k_data: Path) -> Path:
    """A LoRA run with checkpoints at steps 2, 4 and 6 (all kept)."""
    from harness.train.spec import TrainSpec
    from harness.train.trainer import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("train") / "gsm8k-lora"
    train(TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=out, data_dir=gsm8k_data, method="lora", r=4,
                    alpha=8, target_modules="all-linear", lr=5e-2, batch_size=4, max_steps=6, save_every=2,
                    save_total_limit=10, train_limit=24, max_length=96, log_every=1, quiet=True))
    return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path, trained: Path) -> Path:
    from harness.testing.suite import write_suite_data

    root = tmp_path_factory.mktemp("ckpt-eval")
    data = write_suite_data(root / "data", n=16)
    _harness("run", "-m", str(tiny_gpt2), "--adapter", str(trained), "--checkpoints", "all", "--with-base",
             "-t", "arc_easy", "--data-dir", str(data), "-o", str(root / "results"), "--run-name", "traj", "-q")
    return root / "results"


def test_every_checkpoint_is_a_variant_in_step_order(tiny_gpt2: Path, trained: Path, evaluated: Path) -> None:
    from harness.models.loading import ModelSpec, variant_labels

    assert sorted(int(p.name.split("-")[1]) for p in trained.glob("checkpoint-*")) == STEPS
    labels = [f"gsm8k-lora@step{s}" for s in STEPS]
    spec = ModelSpec(model=str(tiny_gpt2), adapters=expand_adapters([str(trained)], "all"), with_base=True)
    assert variant_labels(spec) == ["base", *labels]  # the order the variants are evaluated in
    runs = {json.loads(p.read_text())["label"]: json.loads(p.read_text()) for p in evaluated.glob("*/results.json")}
    assert set(runs) == {"base", *labels}
    for s, label in zip(STEPS, labels):
        assert (evaluated / f"traj__{label}" / "results.json").exists()
        assert runs[label]["model"]["adapter_path"] == str((trained / f"checkpoint-{s}").resolve())
    assert len({r["model"].get("adapter_hash") for r in runs.values()}) == 4  # four different sets of weights


def test_expansion_order_and_selection(trained: Path) -> None:
    names = lambda paths: [Path(p).name for p in paths]  # noqa: E731
    assert names(expand_adapters([str(trained)], "all")) == [f"checkpoint-{s}" for s in STEPS]
    assert names(expand_adapters([str(trained)], "last")) == ["checkpoint-6"]
    assert names(expand_adapters([str(trained)], "every:4")) == ["checkpoint-4", "checkpoint-6"]  # and the last
    assert names(expand_adapters([str(trained)], "every:2")) == [f"checkpoint-{s}" for s in STEPS]
    assert expand_adapters([str(trained)], None) == [str(trained)]  # the finished adapter itself, as before
    assert checkpoint_label(trained / "checkpoint-4") == "gsm8k-lora@step4"
    for bad in ("every:0", "every:x", "some", "every"):
        with pytest.raises(HarnessError, match="--checkpoints"):
            parse_selection(bad)


@pytest.mark.parametrize(("how", "steps"), [("every:2", [2, 4, 6]), ("every:4", [4, 6]), ("last", [6])])
def test_selection_end_to_end(how: str, steps: list[int], tiny_gpt2: Path, trained: Path, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`harness run --adapter DIR --checkpoints every:N|last` on the trainer's --save-every output: the selected
    checkpoints (every:N keeps multiples of N and the last) become variants, evaluated in step order after the base,
    and the leaderboard's trajectory has exactly those steps."""
    from harness.testing.suite import write_suite_data

    data = write_suite_data(tmp_path / "data", n=4)
    res = tmp_path / "results"
    code, out, err = run_main(monkeypatch, capsys, "run", "-m", str(tiny_gpt2), "--adapter", str(trained),
                              "--checkpoints", how, "--with-base", "-t", "arc_easy", "--data-dir", str(data),
                              "-o", str(res), "--run-name", "sel", "-q")
    assert code == 0, err
    labels = [f"gsm8k-lora@step{s}" for s in steps]
    printed = [m.group(1) for line in out.splitlines() if (m := re.match(r"(\S+): (\S+results\.json)$", line))]
    assert printed == ["base", *labels]  # the order they were evaluated and reported in
    runs = {p.parent.name: json.loads(p.read_text()) for p in res.glob("*/results.json")}
    assert sorted(runs) == sorted(f"sel__{x}" for x in ["base", *labels])
    for s, label in zip(steps, labels):
        r = runs[f"sel__{label}"]
        assert r["label"] == label and r["tasks"]["arc_easy"]["n"] == 4
        assert r["model"]["adapter_path"] == str((trained / f"checkpoint-{s}").resolve())
    assert len({r["model"].get("adapter_hash") for r in runs.values()}) == len(steps) + 1
    code, board, err = run_main(monkeypatch, capsys, "leaderboard", str(res), "--format", "json")
    assert code == 0, err
    assert [[p["step"] for p in t["points"]] for t in json.loads(board)["trajectories"]] == [steps]


def test_leaderboard_trajectory(trained: Path, evaluated: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, md, err = run_main(monkeypatch, capsys, "leaderboard", str(evaluated))
    assert code == 0, err
    section = md.split("## Checkpoint trajectories", 1)[1]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == STEPS
    curve = json.loads((trained / "harness_train.json").read_text())["loss_curve"]
    losses = {int(s): v for s, v in curve}
    for r in rows:
        assert float(r.split("|")[2]) == pytest.approx(losses[int(r.split("|")[1])], abs=1e-4)
    board = json.loads(run_main(monkeypatch, capsys, "leaderboard", str(evaluated), "--format", "json")[1])
    traj = board["trajectories"][0]
    assert [p["step"] for p in traj["points"]] == STEPS
    for j, col in enumerate(traj["columns"]):
        values = [p["cells"][col]["value"] for p in traj["points"]]
        best = STEPS[values.index(max(values))]
        assert traj["best"][col] == best
        assert sum("(best)" in r.split("|")[3 + j] for r in rows) == 1  # one best checkpoint per metric
        assert "(best)" in rows[STEPS.index(best)].split("|")[3 + j]


class _Markers(HTMLParser):
    """Counts <use> markers inside the SVG group of each trajectory line (matplotlib draws one per point)."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.points: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        ident = dict(attrs).get("id") or ""
        self.stack.append(ident)
        line = next((s for s in self.stack if re.search(r"traj-line-\d+$", s)), None)
        if tag == "use" and line:
            self.points[line] = self.points.get(line, 0) + 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        if self.stack:
            self.stack.pop()


def test_report_plots_one_point_per_checkpoint(evaluated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    code, _, err = run_main(monkeypatch, capsys, "view", str(evaluated), "-o", str(out))
    assert code == 0, err
    html = out.read_text()
    assert 'id="checkpoints"' in html and html.count('<tr data-step="') == len(STEPS)
    markers = _Markers()
    markers.feed(html)
    assert markers.points and set(markers.points.values()) == {len(STEPS)}
    assert "traj-loss" in html and html.count(" ★</td>") == len(re.findall(r"traj-best-\d+", html)) == 2


def test_checkpoints_page_screenshot(evaluated: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """The report's Checkpoints page in headless Chromium (test_view's browser): its plot and one table row per
    checkpoint are shown; a screenshot goes to tests/artifacts/checkpoints/ ($HARNESS_ARTIFACTS)."""
    from test_view import _tab, _wait, artifacts

    out = tmp_path / "report.html"
    _harness("view", str(evaluated), "-o", str(out))
    page = request.getfixturevalue("browser")
    page.get(out.as_uri())
    _wait(page, lambda d: d.execute_script("return document.body.dataset.page") == "leaderboard")
    _tab(page, "checkpoints")
    section = page.find_element("id", "checkpoints")
    assert section.find_element("css selector", "svg.plot").is_displayed()
    assert [r.get_attribute("data-step") for r in section.find_elements("css selector", "tr[data-step]")] == \
        [str(s) for s in STEPS]
    shot = artifacts("checkpoints") / "report-checkpoints.png"
    shot.unlink(missing_ok=True)
    page.save_screenshot(str(shot))
    assert shot.stat().st_size > 5000


def test_unfinished_run_loss_comes_from_the_newest_checkpoint(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "unfinished"
    shutil.copytree(trained, copy)
    (copy / "harness_train.json").unlink()
    state = json.loads((trained / "checkpoint-6" / "trainer_state.json").read_text())["state"]["loss_curve"]
    assert loss_curve(copy) == state and [int(s) for s, _ in state] == [1, 2, 3, 4, 5, 6]
    for f in ("adapter_config.json", "adapter_model.safetensors"):
        (copy / f).unlink()
    with pytest.raises(HarnessError, match="holds checkpoint-<step> folders; pass --checkpoints"):
        expand_adapters([str(copy)], None)


def test_bad_checkpoint_flags(tiny_gpt2: Path, trained: Path, tmp_path: Path, gsm8k_data: Path,
                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.train.spec import TrainSpec
    from harness.train.trainer import train

    full = tmp_path / "full"
    train(TrainSpec(model=str(tiny_gpt2), task="gsm8k", output_dir=full, data_dir=gsm8k_data, method="full",
                    batch_size=4, max_steps=2, save_every=1, save_total_limit=5, train_limit=8, max_length=64, quiet=True))
    plain = tmp_path / "plain"
    shutil.copytree(trained, plain, ignore=shutil.ignore_patterns("checkpoint-*"))
    run = ("run", "-m", str(tiny_gpt2), "-t", "arc_easy", "-o", str(tmp_path / "res"), "-q")
    cases = [
        (("--adapter", str(trained), "--checkpoints", "every:0"), "--checkpoints 'every:0': expected all, last or every:N"),
        (("--checkpoints", "all"), "--checkpoints all: give --adapter DIR"),
        (("--adapter", str(plain), "--checkpoints", "all"), "no --adapter directory holds checkpoint-<step> folders"),
        (("--adapter", str(full), "--checkpoints", "last"), "has no adapter_config.json (checkpoints of --method full"),
    ]
    for extra, says in cases:
        code, out, err = run_main(monkeypatch, capsys, *run, *extra)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], err
    assert not (tmp_path / "res").exists()
