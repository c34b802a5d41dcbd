"""One --data-dir serves a mixed run: every task finds its official layout in it (GLUE under glue/<TASK>/ too)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from harness.data import Hub, rows_from
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
