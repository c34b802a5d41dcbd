"""`harness generate` input checks and request building (in-process, through the real entry point)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_main


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): (b"<dir>" if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def _questions(path: Path, n: int = 1) -> Path:
    path.write_text("".join(json.dumps({"question_id": i, "turns": [f"Question {i}?"]}) + "\n" for i in range(1, n + 1)))
    return path


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_empty_questions_file_is_one_line_error_and_writes_nothing(content: str, tiny_gpt2: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content)
    before = _snapshot(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "generate", "-m", str(tiny_gpt2), "--questions", str(empty),
                              "-o", str(tmp_path / "out"), "--max-new-tokens", "2", "-q")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(empty) in lines[0], err
    assert "Traceback" not in err + out
    assert _snapshot(tmp_path) == before  # no .store.sqlite, no answers directory


@pytest.mark.parametrize(("flag", "value"), [("--temperature", "nan"), ("--temperature", "inf"),
                                             ("--temperature", "-inf"), ("--top-p", "nan")])
def test_non_finite_sampling_values_are_refused(flag: str, value: str, tiny_gpt2: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    q = _questions(tmp_path / "q.jsonl")
    before = _snapshot(tmp_path)
    code, _, err = run_main(monkeypatch, capsys, "generate", "-m", str(tiny_gpt2), "--questions", str(q),
                            "-o", str(tmp_path / "out"), "--max-new-tokens", "2", "-q", flag, value)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"error: {flag}:") and value in lines[0], err
    assert _snapshot(tmp_path) == before


def test_generate_builds_its_requests_through_generate_request(tiny_gpt2: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """The one request builder every task uses, so a generation setting cannot be applied in one place and not the
    other; the requests are the ones generate built before (stores written then still resume)."""
    import harness.task
    from harness.requests import Generate

    built: list[Generate] = []
    real = harness.task.generate_request

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        g = real(*args, **kwargs)
        built.append(g)
        return g

    monkeypatch.setattr(harness.task, "generate_request", spy)
    q = _questions(tmp_path / "q.jsonl", 2)
    code, _, err = run_main(monkeypatch, capsys, "generate", "-m", str(tiny_gpt2), "--questions", str(q),
                            "-o", str(tmp_path / "out"), "--max-new-tokens", "3", "--temperature", "0.5",
                            "--top-p", "0.9", "--seed", "7", "-q")
    assert code == 0, err
    assert len(built) == 2
    for g in built:
        old = Generate(prompt=g.prompt, stop=g.stop, max_new_tokens=3, temperature=0.5, top_p=0.9, seed=7)
        assert g == old and g.key() == old.key()
