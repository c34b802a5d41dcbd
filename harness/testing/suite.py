"""Small rows in each official layout of the forgetting suite (ARC, WinoGrande, HellaSwag), for smoke tests and
for trying the commands without the hub. Never used by tasks."""

from __future__ import annotations

from pathlib import Path

_THINGS = ["ice", "a magnet", "sand", "a plant", "the moon", "a battery", "salt water", "a copper wire", "a seed", "steam"]
_PROPS = ["melts in the sun", "attracts iron", "conducts electricity", "needs light to grow", "reflects sunlight",
          "stores chemical energy", "freezes below zero", "is a gas", "sprouts in wet soil", "floats on water"]


def write_suite_data(root: Path, n: int = 24, seed: int = 0) -> Path:
    """Write root/{arc,winogrande,hellaswag}/... in the official layouts (n rows each); returns root (a --data-dir).

    ARC rows nest the question as the ARC-V1 files do; WinoGrande rows leave the answer to dev-labels.lst;
    HellaSwag rows carry the WikiHow ` [title]` / `[header]` artefacts lm-eval's preprocessing removes.
    """
    import json
    import random

    rng = random.Random(seed)
    for sub in ("arc", "winogrande", "hellaswag"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for config in ("ARC-Easy", "ARC-Challenge"):
        lines = []
        for i in range(n):
            k = rng.randrange(len(_THINGS))
            labels = ["A", "B", "C", "D"] if i % 5 else ["1", "2", "3", "4"]
            wrong = rng.sample([p for j, p in enumerate(_PROPS) if j != k], 3)
            texts = wrong[:]
            gold = rng.randrange(4)
            texts.insert(gold, _PROPS[k])
            q = {"stem": f"Which statement is true of {_THINGS[k]}?",
                 "choices": [{"text": t, "label": lab} for t, lab in zip(texts, labels)]}
            lines.append(json.dumps({"id": f"{config}-{i}", "question": q, "answerKey": labels[gold]}))
        (root / "arc" / f"{config}-Test.jsonl").write_text("\n".join(lines) + "\n")
    wino, labels = [], []
    names = ["Sarah", "Maria", "Tom", "Omar", "Li", "Eva"]
    for i in range(n):
        a, b = rng.sample(names, 2)
        thing = rng.choice(_THINGS)
        sentence = f"{a} gave {thing} to {b} because _ had no use for it anymore."
        wino.append(json.dumps({"qID": f"wg-{i}", "sentence": sentence, "option1": a, "option2": b}))
        labels.append(rng.choice("12"))
    (root / "winogrande" / "dev.jsonl").write_text("\n".join(wino) + "\n")
    (root / "winogrande" / "dev-labels.lst").write_text("\n".join(labels) + "\n")
    hs = []
    for i in range(n):
        k = rng.randrange(len(_THINGS))
        endings = [f"then it {p}." for p in rng.sample(_PROPS, 4)]
        if i % 3 == 0:
            endings[0] = f"[header] Step two [title] It {_PROPS[k]}. [step]  Look again."
        hs.append(json.dumps({"ind": 100 + i, "activity_label": "Science class" if i % 2 else "Home [title] Experiments",
                              "ctx_a": f"A student looks at {_THINGS[k]} closely.", "ctx_b": "she notices that" if i % 4
                              else "", "ctx": "", "split": "val", "split_type": "indomain", "label": rng.randrange(4),
                              "endings": endings, "source_id": f"src-{i}"}))
    (root / "hellaswag" / "hellaswag_val.jsonl").write_text("\n".join(hs) + "\n")
    return root
