"""One --data-dir serves a mixed run: every task finds its official layout in it (GLUE under glue/<TASK>/ too)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.data import Hub, cascade, rows_from
from harness.errors import HarnessError
from harness.task import TaskConfig


def test_glue_tasks_also_look_under_glue_dir(shared_data: Path, tmp_path: Path) -> None:
    from tasks.glue import SST2
    from tasks.gsm8k import GSM8K

    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    shutil.copy(shared_data / "glue" / "SST-2" / "dev.tsv", tmp_path / "glue" / "SST-2" / "dev.tsv")
    (tmp_path / "gsm8k").mkdir()
    shutil.copy(shared_data / "gsm8k" / "test.jsonl", tmp_path / "gsm8k" / "test.jsonl")
    sst2 = SST2(TaskConfig(data_dir=tmp_path))
    docs = sst2.docs()
    assert len(docs) == 872 and sst2.source_description == str(tmp_path / "glue" / "SST-2" / "dev.tsv")
    gsm = GSM8K(TaskConfig(data_dir=tmp_path))
    assert len(gsm.docs()) == 1319 and gsm.source_description.endswith("gsm8k/test.jsonl")


def test_data_cascade_names_empty_and_missing_sources(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "test.jsonl").write_text("\n\n")
    with pytest.raises(HarnessError, match=r"t/test.jsonl: no rows"):
        rows_from(None, tmp_path, ("t/test.jsonl",), Hub("x/y", None, "test"))
    with pytest.raises(HarnessError, match=r"--task-option data=.*nope.jsonl: file not found"):
        rows_from(tmp_path / "nope.jsonl", tmp_path, ("t/test.jsonl",), None)
    with pytest.raises(HarnessError, match=r"--data-dir .*: no t/other.jsonl there"):
        rows_from(None, tmp_path, ("t/other.jsonl",), None)


def test_cascade_order_option_then_layouts_then_hub(tmp_path: Path) -> None:
    """A layout the reader does not recognise (None) is skipped; the hub comes last and its failure names the dir."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b.txt").write_text("b")
    read = lambda p: None if p.is_dir() else p.read_text()  # noqa: E731
    hub = lambda: ("remote", "hub:x")  # noqa: E731
    assert cascade(None, tmp_path, ("a", "b.txt"), read, hub) == ("b", str(tmp_path / "b.txt"))
    assert cascade(tmp_path / "b.txt", tmp_path, ("a",), read, hub) == ("b", str(tmp_path / "b.txt"))
    assert cascade(None, tmp_path, ("a", "c.txt"), read, hub) == ("remote", "hub:x")
    with pytest.raises(HarnessError, match=r"--images=.*/a: nothing usable there"):
        cascade(tmp_path / "a", None, (), read, hub, flag="--images", missing="nothing usable")

    def offline() -> tuple[str, str]:
        raise HarnessError("could not load dataset x from the hub")

    with pytest.raises(HarnessError, match=r"--data-dir .*: no c.txt there, and could not load dataset x"):
        cascade(None, tmp_path, ("c.txt",), read, offline)
    with pytest.raises(HarnessError, match=r"^could not load dataset x"):
        cascade(None, None, ("c.txt",), read, offline)


def test_tasks_and_question_sets_fall_back_to_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A --data-dir without the task's layout (a mixed run's) still reaches the hub, through the one cascade."""
    from judges.questions import load_questions
    from tasks.gsm8k import GSM8K

    asked = []

    def fake_hub(path: str, name: str | None, split: str, hint: str, **kw: object) -> list[dict]:
        asked.append(path)
        if path == "openai/gsm8k":
            return [{"question": "1+1?", "answer": "2\n#### 2"}]
        return [{"prompt_id": 81, "prompt": ["hi", "more"], "category": "writing"}]

    monkeypatch.setattr("harness.data.load_hub", fake_hub)
    monkeypatch.setattr("judges.questions.load_hub", fake_hub)
    gsm = GSM8K(TaskConfig(data_dir=tmp_path))
    assert len(gsm.docs()) == 1 and gsm.source_description == "hub:openai/gsm8k/main/test"
    qs = load_questions("mt-bench", tmp_path)
    assert [q.turns for q in qs] == [("hi", "more")] and asked == ["openai/gsm8k", "HuggingFaceH4/mt_bench_prompts"]


def test_question_sets_find_fastchat_layouts_and_references(tmp_path: Path) -> None:
    from judges.questions import load_questions

    (tmp_path / "vicuna_bench__question.jsonl").write_text('{"question_id": 1, "turns": ["q"]}\n')
    (tmp_path / "data" / "vicuna_bench" / "reference_answer").mkdir(parents=True)
    (tmp_path / "data" / "vicuna_bench" / "reference_answer" / "gpt-4.jsonl").write_text(
        '{"question_id": 1, "choices": [{"turns": ["ref"]}]}\n')
    assert load_questions("vicuna", tmp_path)[0].reference == ("ref",)
    with pytest.raises(HarnessError, match=r"--questions nope.jsonl: not 'vicuna', 'mt-bench'"):
        load_questions("nope.jsonl", tmp_path)
