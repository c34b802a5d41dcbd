"""Verdict parsing, prompts, question sets, multi-turn judging, and `harness generate` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_server import JudgeServer

from harness.errors import HarnessError
from judges.client import JudgeSettings
from judges.grading import multi_jobs, pairwise_jobs, run_jobs, single_jobs, wants_reference
from judges.prompts import parse_multi, parse_score, parse_verdict, single_prompt
from judges.questions import Question, load_questions, read_answers


def test_parse_score() -> None:
    assert parse_score("Good answer.\n[[7]]") == (7.0, None)
    assert parse_score("Rating: [[ 8.5 ]] and again [[8.5]]") == (8.5, None)
    assert parse_score("I would say 7/10")[1] == "parse: no [[score]] in the reply"
    assert parse_score("[[6]] ... actually [[8]]")[1].startswith("parse: several different scores")
    assert parse_score("[[11]]")[1] == "parse: score 11 outside 1-10"


def test_parse_verdict_and_multi() -> None:
    assert parse_verdict("B is clearer.\n[[B]]") == ("B", None)
    assert parse_verdict("[[Tie]]") == ("tie", None)
    assert parse_verdict("A is better")[0] is None
    assert parse_verdict("[[A]] no wait [[B]]")[1] == "parse: conflicting verdicts ['A', 'B']"
    scores, errs = parse_multi("Answer 1: [[7]]\nAnswer 2: **[[3]]**\nAnswer 3: [[12]]", 4)
    assert scores == [7.0, 3.0, None, None]
    assert errs[2] == "parse: answer 3 score outside 1-9" and errs[3].startswith("parse: no 'Answer 4")


def test_reference_only_where_it_helps() -> None:
    math = Question("1", ("2+2?", "times 3?"), "math", ("4", "12"))
    chat = Question("2", ("Hi?",), "writing", ("Hello",))
    assert wants_reference(math, "auto") == "4\n12" and wants_reference(chat, "auto") is None
    assert wants_reference(chat, "always") == "Hello" and wants_reference(math, "never") is None
    user = single_prompt([("2+2?", "5")], wants_reference(math, "auto"))[1][1]
    assert "Reference solution" in user and "[[6]]" in user
    with pytest.raises(HarnessError, match="--reference-mode"):
        wants_reference(math, "sometimes")


def test_question_sets_local_layouts(shared_data: Path, tmp_path: Path) -> None:
    fc = shared_data / "fastchat" / "llm_judge"
    vic = load_questions("vicuna", fc)
    assert len(vic) == 80 and vic[0].turns == ("How can I improve my time management skills?",)
    mt = load_questions("mt-bench", fc)
    assert len(mt) == 80 and all(len(q.turns) == 2 for q in mt)
    judged = [q for q in mt if wants_reference(q, "auto")]  # math, reasoning, coding: 10 each, all with a reference
    assert len(judged) == 30 and {q.category for q in judged} == {"math", "reasoning", "coding"}
    gpt4 = json.loads((fc / "mt_bench__reference_answer__gpt-4.jsonl").read_text().splitlines()[0])
    q = next(q for q in mt if q.question_id == str(gpt4["question_id"]))
    assert q.reference == tuple(gpt4["choices"][0]["turns"])  # the GPT-4 reference file found beside the questions
    # FastChat's own layout, and a plain file
    nested = tmp_path / "data" / "mt_bench"
    nested.mkdir(parents=True)
    (nested / "question.jsonl").write_text((fc / "mt_bench__question.jsonl").read_text())
    assert load_questions("mt-bench", tmp_path, limit=3)[2].turns == mt[2].turns
    legacy = load_questions(str(shared_data / "fastchat/legacy_vicuna_eval_table/question.jsonl"))
    assert [q.turns for q in legacy] == [q.turns for q in vic]
    with pytest.raises(HarnessError, match="--questions nope"):
        load_questions("nope")
    name, ans = read_answers(shared_data / "fastchat/mt_bench_model_answer/guanaco-33b.jsonl")
    assert name == "guanaco-33b" and len(ans) == 80 and len(ans["81"]) == 2
    name, ans = read_answers(shared_data / "fastchat/legacy_vicuna_eval_table/answer__answer_bard.jsonl")
    assert name == "bard" and len(ans["1"]) == 1


def test_multi_turn_judging_sees_the_conversation(shared_data: Path) -> None:
    mt = load_questions("mt-bench", shared_data / "fastchat" / "llm_judge")
    qs = [q for q in mt if q.category in ("writing", "math")][:2] + [q for q in mt if q.category == "math"][:1]
    qs = list({q.question_id: q for q in qs}.values())
    answers = {}
    for m in ("guanaco-33b", "vicuna-7b-v1.3", "llama-13b"):
        answers[m] = read_answers(shared_data / "fastchat/mt_bench_model_answer" / f"{m}.jsonl")[1]
    with JudgeServer() as srv:
        s = JudgeSettings("test-judge", srv.url, timeout=5, max_concurrency=4)
        pj, _ = pairwise_jobs(qs, answers, s)
        run = run_jobs(pj, s, None, quiet=True)
        sj, _ = single_jobs(qs, answers, s)
        single = run_jobs(sj, s, None, quiet=True)
        mj, _ = multi_jobs(qs, answers, s, seed=1)
        multi = run_jobs(mj, s, None, quiet=True)
    assert len(run.records) == len(qs) * 3 * 2  # 3 pairs, 2 turns each
    turn2 = next(j for j in pj if j.base["turn"] == 2)
    user = turn2.prompts[0][1][1]
    q = next(q for q in qs if q.question_id == turn2.base["question_id"])
    assert q.turns[0] in user and q.turns[1] in user  # turn 2 is judged with turn 1 as context
    assert any(r["reference_used"] for r in run.records)
    assert all(r["reference_used"] == (r["category"] == "math") for r in run.records)
    for r in single.records:  # the test judge scores the last reply by its word count
        words = len(answers[r["model"]][r["question_id"]][r["turn"] - 1].split())
        assert r["score"] == min(10, max(1, words))
    for r in multi.records:
        for m, sc in r["scores"].items():
            assert sc == min(9, max(1, len(answers[m][r["question_id"]][r["turn"] - 1].split())))


def _adapter(base: Path, out: Path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=["c_attn"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    model.save_pretrained(out)
    return out


def test_generate_base_and_adapter_multi_turn(tiny_gpt2: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import run_main

    qfile = tmp_path / "q.jsonl"
    rows = [{"question_id": 1, "turns": ["Tom has 3 apples.", "How many now?"]}, {"question_id": 2, "text": "Hi?"}]
    qfile.write_text("".join(json.dumps(r) + "\n" for r in rows))
    adapter = _adapter(tiny_gpt2, tmp_path / "my-adapter")
    out = tmp_path / "answers"
    code, _, err = run_main(monkeypatch, capsys, "generate", "--model", str(tiny_gpt2), "--adapter", str(adapter),
                            "--with-base", "--questions", str(qfile), "-o", str(out), "--max-new-tokens", "6",
                            "--batch-size", "2", "--quiet")
    assert code == 0, err
    files = sorted(p.name for p in out.glob("*.jsonl"))
    assert files == sorted([f"{tiny_gpt2.name}.jsonl", "my-adapter.jsonl"])
    base_name, base = read_answers(out / f"{tiny_gpt2.name}.jsonl")
    name, ad = read_answers(out / "my-adapter.jsonl")
    assert name == "my-adapter" and len(base["1"]) == 2 and len(base["2"]) == 1
    assert base != ad  # the adapter changed the answers
    row = json.loads((out / "my-adapter.jsonl").read_text().splitlines()[0])
    assert row["choices"][0]["turns"] == ad["1"] and row["generation_settings"]["adapter"] == str(adapter)
