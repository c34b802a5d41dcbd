"""The report as one self-contained HTML file: static tables and inline SVG plots, plus a small script that browses
the samples, flips and judgments, which travel gzip-compressed and base64-encoded inside the page.

Nothing is fetched: a Content-Security-Policy meta tag allows only the page's own inline script and style (and
data: images), and no element refers to another file or URL. The samples are decompressed in the browser with
DecompressionStream (Chrome 80+, Firefox 113+, Safari 16.4+) when their page is first opened.
"""

from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

from harness.reports import plots
from harness.reports.assets import CSS, JS
from harness.reports.build import Report
from harness.reports.significance import LEGEND

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"
SIZE_MARK = "@@REPORT_SIZE@@"


def h(x: Any) -> str:
    return escape("" if x is None else str(x), quote=True)


def size_text(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB" if n >= 1e3 else f"{n} B"


def _digits(col: str, scale: dict[str, float]) -> int:
    return 1 if scale.get(col) == 100 else 3


def _unit(col: str, scale: dict[str, float]) -> str:
    return " (%)" if scale.get(col) == 100 else ""


# --- leaderboard ---------------------------------------------------------------------------------------------------


def _sig(sig: dict[str, Any] | None) -> str:
    if sig is None:
        return '<span class="sig na" title="no per-sample scores to pair">·</span><span class="p">n/a</span>'
    if sig["test"] == "mcnemar-exact":
        how = f"McNemar exact on {sig['n']} shared docs ({sig['gained']} fixed, {sig['lost']} broken)"
    else:
        lo, hi = sig["ci95"]
        how = f"paired bootstrap on {sig['n']} shared docs, change 95% CI [{lo:+.4f}, {hi:+.4f}]"
    p = sig["p_value"]
    ptext = f"{p:.3g}" if p >= 1e-4 else "<1e-4"
    return (f'<span class="sig" title="p = {p:.4g}: {h(how)}" data-p="{p:.6g}">{sig["marker"] or "ns"}</span>'
            f'<span class="p">p={h(ptext)}</span>')


def _lb_cell(col: str, cell: dict[str, Any] | None, t: dict[str, Any]) -> str:
    if cell is None:
        return "<td>–</td>"
    d = _digits(col, t["scale"])
    parts = [f'<span class="v">{cell["value"]:.{d}f}</span>']
    if cell.get("stderr") is not None:
        parts.append(f'<span class="se"> ± {cell["stderr"]:.{d}f}</span>')
    if "delta" in cell:
        good = (cell["delta"] > 0) == t["higher_is_better"].get(col, True)
        cls = "zero" if cell["delta"] == 0 else "good" if good else "bad"
        parts.append(f' <span class="delta {cls}">({cell["delta"]:+.{d}f})</span>')
        if "significance" in cell:
            parts.append(_sig(cell["significance"]))
    return f'<td data-col="{h(col)}">{"".join(parts)}</td>'


def leaderboard_section(rep: Report) -> str:
    t = rep.table
    if t is None:
        return '<section id="leaderboard" class="page"><h2>Leaderboard</h2><p>No results.json in these directories.</p></section>'
    head = "".join(f"<th>{h(c)}{_unit(c, t['scale'])}</th>" for c in t["columns"])
    body = []
    for r in t["rows"]:
        kind = "adapter" if r["model"].get("adapter") else "base"
        cells = "".join(_lb_cell(c, r["cells"][c], t) for c in t["columns"])
        body.append(f'<tr class="{kind}" data-row="{h(r["name"])}"><th scope="row">{h(r["name"])}</th>{cells}</tr>')
    return (f'<section id="leaderboard" class="page"><h2>Leaderboard</h2>'
            f'<p class="note">Mean ± standard error; (±x): change against the base row of the same model. Markers: '
            f'{h(LEGEND)}; ns = not significant. Hover a marker for its test.</p>'
            f'<label class="toggle"><input type="checkbox" id="show-p"> show p-values</label>'
            f'<div class="scroll"><table class="lb" id="lb-table"><thead><tr><th>model</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table></div></section>')


# --- per task ------------------------------------------------------------------------------------------------------


def _decoding(gen: dict[str, Any] | None, output_type: str | None) -> str:
    if not gen:
        return f"none ({output_type or 'scored'})"
    how = "greedy" if not gen.get("temperature") and gen.get("num_beams", 1) == 1 else (
        f"beam search ({gen['num_beams']})" if gen.get("num_beams", 1) != 1
        else f"sampling T={gen['temperature']}, top_p={gen.get('top_p')}")
    extra = [f"{k}={gen[k]}" for k in ("max_new_tokens", "n", "length_penalty", "no_repeat_ngram_size")
             if k in gen and gen[k] not in (None, 0, 1, 1.0) or k == "max_new_tokens"]
    stop = gen.get("stop")
    if stop:
        extra.append("stop=" + json.dumps(stop if len(json.dumps(stop)) < 60 else "…", ensure_ascii=False))
    return ", ".join([how, *extra])


def _backend(b: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in b.items() if k not in ("name", "options") and v is not None)
    opts = ", ".join(f"{k}={v}" for k, v in (b.get("options") or {}).items())
    return f"{b.get('name', '?')}" + (f" ({versions})" if versions else "") + (f"; {opts}" if opts else "")


def _settings_rows(task: dict[str, Any], names: list[str]) -> str:
    out = []
    for s in task["rows"]:
        e, m = s["entry"], s["model"]
        data = e.get("data") or {}
        quant = m.get("quantization") or "none"
        if m.get("compute_dtype"):
            quant += f" (compute {m['compute_dtype']})"
        cells = [names[s["row"]], e.get("n"), e.get("num_fewshot", s["settings"].get("num_fewshot")),
                 _decoding(e.get("generation"), e.get("output_type")), e.get("seed"), _backend(s["backend"]), quant,
                 m.get("dtype"), data.get("source"), data.get("hash"), f"{e.get('version')} / {e.get('config_hash')}",
                 e.get("wall_time_s"), s["run"]]
        out.append("<tr>" + "".join(f"<td>{h(c)}</td>" for c in cells) + "</tr>")
    return "".join(out)


def tasks_section(rep: Report) -> str:
    t = rep.table
    if t is None:
        return ""
    names = [r["name"] for r in t["rows"]]
    parts = ['<section id="tasks" class="page"><h2>Per task</h2>']
    for task in rep.tasks:
        rows = [s["row"] for s in task["rows"]]
        metrics = {}
        for c in task["columns"]:
            cells = [t["rows"][i]["cells"].get(c) for i in rows]
            metrics[c.rsplit("/", 1)[1]] = [(x["value"], x.get("stderr")) if x else None for x in cells]
        unit = {c.rsplit("/", 1)[1]: _unit(c, t["scale"]) for c in task["columns"]}
        plot = plots.ci_plot(task["name"], [names[i] for i in rows], metrics, unit)
        head = "".join(f"<th>{x}</th>" for x in ("variant", "n", "few-shot", "decoding", "seed", "backend", "quantisation",
                                                   "dtype", "data source", "data hash", "version / config", "wall s", "run"))
        parts.append(f'<article class="task" data-task="{h(task["name"])}"><h3>{h(task["name"])}</h3>'
                     f'<div class="plotbox">{plot}</div><div class="scroll"><table class="settings"><thead><tr>{head}'
                     f'</tr></thead><tbody>{_settings_rows(task, names)}</tbody></table></div></article>')
    parts.append("</section>")
    return "".join(parts)


# --- checkpoints ---------------------------------------------------------------------------------------------------


def checkpoints_section(rep: Report) -> str:
    from harness.reports.checkpoints import loss_at

    trajs = rep.table["trajectories"] if rep.table else []
    if not trajs:
        return ""
    scale = rep.table["scale"] if rep.table else {}
    parts = ['<section id="checkpoints" class="page"><h2>Checkpoint trajectories</h2>']
    for tr in trajs:
        cols = tr["columns"]
        head = "".join(f"<th>{h(c)}{_unit(c, scale)}</th>" for c in cols)
        body = []
        for p in tr["points"]:
            loss = loss_at(tr["loss"], p["step"])
            cells = []
            for c in cols:
                cell = p["cells"].get(c)
                best = cell is not None and tr["best"].get(c) == p["step"]
                text = "–" if cell is None else f"{cell['value']:.{_digits(c, scale)}f}"
                cells.append(f'<td class="{"best" if best else ""}">{text}{" ★" if best else ""}</td>')
            body.append(f'<tr data-step="{p["step"]}"><td>{p["step"]}</td><td>{"–" if loss is None else f"{loss:.4f}"}'
                        f'</td>{"".join(cells)}</tr>')
        parts.append(f'<article class="trajectory" data-train-dir="{h(tr["train_dir"])}"><h3>{h(tr["base_name"])}: '
                     f'{h(tr["name"])} ({len(tr["points"])} checkpoints)</h3><p class="note">{h(tr["train_dir"])}; ★ = best '
                     f'checkpoint of each metric; grey line: train loss.</p><div class="plotbox">'
                     f'{plots.trajectory_plot(tr, scale)}</div><table class="traj"><thead><tr><th>step</th>'
                     f'<th>train loss</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></article>')
    parts.append("</section>")
    return "".join(parts)


# --- judges --------------------------------------------------------------------------------------------------------


def _ratings_html(ratings: list[dict[str, Any]], name: str) -> str:
    out = []
    for table in ratings:
        rows = [(r["model"], r["rating"], r["lo"], r["hi"]) for r in table["ratings"]]
        out.append(f'<div class="plotbox">{plots.interval_plot(table["method"], "rating (95% interval)", rows, name)}</div>')
        out.append("<table><thead><tr><th>model</th><th>rating</th><th>95% interval</th><th>W / T / L</th></tr></thead>"
                   "<tbody>" + "".join(f"<tr><td>{h(r['model'])}</td><td>{r['rating']:.1f}</td><td>[{r['lo']:.1f}, "
                                       f"{r['hi']:.1f}]</td><td>{r['wins']:g} / {r['ties']:g} / {r['losses']:g}</td></tr>"
                                       for r in table["ratings"]) + "</tbody></table>")
    return "".join(out)


def _judge_file(i: int, f: dict[str, Any]) -> str:
    parts = [f'<article class="judgments" data-file="{i}"><h3>{h(Path(f["path"]).name)}: {h(f["kind"])} · judge '
             f'{h(f["judge"])}</h3><p class="note">{h(f["path"])}: {f["n"]} judgments, {f["failed"]} without a verdict.']
    flips = f.get("order_flips")
    if flips:
        rate = "n/a" if flips["rate"] is None else f"{100 * flips['rate']:.1f}%"
        parts.append(f' Order-flip rate: <b class="flip-rate">{rate}</b> ({flips["flipped"]} of '
                     f'{flips["judged_both_orders"]} pairs judged in both orders changed verdict when the answers swapped '
                     'places).')
    parts.append("</p>")
    parts.append(_ratings_html(f["ratings"], f"ratings-{i}"))
    if f["scores"]:
        rows = [(s["model"], s["mean"], s["lo"], s["hi"]) for s in f["scores"]]
        plot = plots.interval_plot("mean judge score", "score (95% interval)", rows, f"scores-{i}")
        parts.append(f'<div class="plotbox">{plot}</div>')
    parts.append("</article>")
    return "".join(parts)


def judges_section(rep: Report) -> str:
    j = rep.judges
    if not j:
        return ""
    parts = ['<section id="judges" class="page"><h2>Judges and tournaments</h2>']
    parts += [_judge_file(i, f) for i, f in enumerate(j["files"])]
    for k, tour in enumerate(j["tournaments"]):
        parts.append(f'<article class="tournament"><h3>Tournament: {h(Path(tour["path"]).name)}</h3><p class="note">'
                     f'{tour["n"]} matches.</p>{_ratings_html(tour["ratings"], f"tournament-{k}")}</article>')
    if j["judgments"]:
        parts.append('<h3>Judgments</h3><div class="controls"><label>file <select id="j-file"></select></label>'
                     '<label>search <input id="j-search" type="search" placeholder="question, model, rationale"></label>'
                     '<span id="j-count" class="count"></span></div><div id="j-pager" class="pager"></div>'
                     '<div id="j-list"></div>')
    parts.append("</section>")
    return "".join(parts)


# --- forgetting and sweeps -----------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _forgetting_table(r: dict[str, Any]) -> str:
    suite, target = r["suite"], r["target"]
    cols = [f"{t} ({r['metrics'][t]})" for t in suite] + (["mean change"] if suite else []) + (
        [f"target {target}"] if target else [])
    rows = []
    for a in r["adapters"]:
        cells = []
        for t in suite:
            x = a["tasks"][t]
            cells.append(f"{_pct(x['adapter'])} ({100 * x['change']:+.1f} [{100 * x['change_ci95'][0]:+.1f}, "
                         f"{100 * x['change_ci95'][1]:+.1f}], p={x['p_value']:.3g})")
        if suite:
            cells.append(f"{100 * a['mean_change']:+.1f}")
        if target:
            x = a["target"]
            cells.append(f"{_pct(x['adapter'])} (gain {100 * x['change']:+.1f}, p={x['p_value']:.3g})")
        rows.append(f"<tr><td>{h(a['label'])}</td>" + "".join(f"<td>{h(c)}</td>" for c in cells) + "</tr>")
    first = r["adapters"][0] if r["adapters"] else None
    base = [_pct(first["tasks"][t]["base"]) for t in suite] + (["–"] if suite else []) + (
        [_pct(first["target"]["base"])] if target else []) if first else []
    head = "".join(f"<th>{h(c)}</th>" for c in cols)
    return (f"<table><thead><tr><th>adapter</th>{head}</tr></thead><tbody><tr><td>base</td>"
            + "".join(f"<td>{c}</td>" for c in base) + "</tr>" + "".join(rows) + "</tbody></table>")


def _sweep(s: dict[str, Any]) -> str:
    points = s.get("points") or []
    keys = list(points[0]["params"]) if points else []
    metrics = list(points[0]["metrics"]) if points else []
    head = "".join(f"<th>{h(k)}</th>" for k in ["point", *keys, *metrics, "final loss", "trainable params"])
    body = "".join("<tr>" + "".join(f"<td>{h(c)}</td>" for c in [p["point"], *[p["params"][k] for k in keys],
                                                                 *[f"{p['metrics'].get(m, float('nan')):.4g}" for m in metrics],
                                                                 p.get("final_loss"), p.get("trainable_params")]) + "</tr>"
                   for p in points)
    plot = plots.sweep_plot(s)
    return (f'<article class="sweep"><h3>Sweep: {h(s.get("task"))} on {h(Path(str(s.get("model"))).name)}</h3>'
            f'<p class="note">{h(s["path"])}; grid <code>{h(s.get("grid"))}</code></p>'
            + (f'<div class="plotbox">{plot}</div>' if plot else "")
            + f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></article>")


def forgetting_section(rep: Report) -> str:
    if not (rep.forgetting or rep.sweeps):
        return ""
    parts = ['<section id="forgetting" class="page"><h2>Forgetting reports and sweeps</h2>']
    for r in rep.forgetting:
        plot = plots.forgetting_plot(r) if r["target"] and r["suite"] and r["adapters"] else ""
        parts.append(f'<article class="forgetting-report"><h3>Forgetting: {h(Path(str(r["base"]["model"])).name)}</h3>'
                     f'<p class="note">Base run {h(r["base"]["run"])}. Scores in %; change = adapter − base on the same '
                     f'questions, 95% paired-bootstrap interval, p-value (McNemar exact for 0/1 scores).</p>'
                     + (f'<div class="plotbox">{plot}</div>' if plot else "")
                     + f'<div class="scroll">{_forgetting_table(r)}</div></article>')
    parts += [_sweep(s) for s in rep.sweeps]
    parts.append("</section>")
    return "".join(parts)


# --- samples data, page --------------------------------------------------------------------------------------------


def blob(data: Any) -> tuple[str, int, int]:
    """(base64 of the gzip of the JSON, raw bytes, compressed bytes)."""
    raw = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii"), len(raw), len(packed)


def _script_json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str).replace("<", "\\u003c")


SAMPLES_PAGE = """<section id="samples" class="page"><h2>Samples</h2>
<div class="controls"><label>task <select id="s-task"></select></label>
<label>variant <select id="s-variant"></select></label><label>metric <select id="s-metric"></select></label>
<span class="seg" role="group" aria-label="correctness"><button type="button" data-filter="all" id="f-all"
class="on">all</button><button type="button" data-filter="correct" id="f-correct">correct</button><button
type="button" data-filter="incorrect" id="f-incorrect">incorrect</button></span>
<label>search <input id="s-search" type="search" placeholder="prompt, output, target"></label>
<label>per page <select id="s-size"><option>25</option><option>100</option><option>500</option></select></label></div>
<p class="note">correct = full score (1) on the chosen metric, incorrect = less; samples without that metric are in
neither.</p><div><span id="s-count" class="count">loading…</span></div><div id="s-pager" class="pager"></div>
<div id="s-list"></div></section>
<section id="flips" class="page"><h2>Flips</h2>
<div class="controls"><label>adapter <select id="fl-variant"></select></label>
<label>task <select id="fl-task"></select></label><label>metric <select id="fl-metric"></select></label></div>
<p class="note">Documents both the adapter and its base scored, whose score changed: fixed (adapter higher) and
broken (adapter lower).</p><p id="fl-summary" class="count"></p><div class="flipcols">
<div><h3>fixed by the adapter <span id="fl-nfixed"></span></h3><div id="flips-fixed"></div></div>
<div><h3>broken by the adapter <span id="fl-nbroke"></span></h3><div id="flips-broke"></div></div></div></section>"""


def _data_scripts(rep: Report) -> tuple[str, dict[str, Any], dict[str, int]]:
    scripts, tasks, stats = [], [], {"raw": 0, "packed": 0, "samples": 0}
    for i, (name, data) in enumerate(rep.samples.items()):
        b64, raw, packed = blob(data)
        scripts.append(f'<script type="application/octet-stream" id="blob-samples-{i}">{b64}</script>')
        stats["raw"] += raw
        stats["packed"] += packed
        stats["samples"] += sum(v["n"] for v in data["variants"])
        tasks.append({"name": name, "blob": f"blob-samples-{i}", "metrics": data["metrics"], "default": data["default"],
                      "variants": [v["v"] for v in data["variants"]]})
    meta: dict[str, Any] = {"tasks": tasks, "variants": [], "judgments": None}
    if rep.table is not None:
        index = {r["name"]: i for i, r in enumerate(rep.table["rows"])}
        meta["variants"] = [{"name": r["name"], "base": index.get(r["base"]) if r.get("base") else None}
                            for r in rep.table["rows"]]
    if rep.judges and rep.judges["judgments"]:
        b64, raw, packed = blob(rep.judges["judgments"])
        scripts.append(f'<script type="application/octet-stream" id="blob-judgments">{b64}</script>')
        meta["judgments"] = {"blob": "blob-judgments", "files": [Path(f["path"]).name for f in rep.judges["files"]]}
        stats["raw"] += raw
        stats["packed"] += packed
    return "".join(scripts), meta, stats


NAV = (("leaderboard", "Leaderboard"), ("tasks", "Per task"), ("samples", "Samples"), ("flips", "Flips"),
       ("checkpoints", "Checkpoints"), ("judges", "Judges"), ("forgetting", "Forgetting & sweeps"))


def render(rep: Report, title: str = "harness report") -> str:
    """The whole page; its own size is filled in last (SIZE_MARK), see write()."""
    sections = {"leaderboard": leaderboard_section(rep), "tasks": tasks_section(rep),
                "samples": SAMPLES_PAGE if rep.samples else "", "checkpoints": checkpoints_section(rep),
                "judges": judges_section(rep), "forgetting": forgetting_section(rep)}
    scripts, meta, stats = _data_scripts(rep)
    shown = [(k, label) for k, label in NAV if sections.get("samples" if k == "flips" else k)]
    nav = "".join(f'<a href="#{k}" id="tab-{k}">{h(label)}</a>' for k, label in shown)
    n_rows = len(rep.table["rows"]) if rep.table else 0
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    summary = (f"{n_rows} model variants from {h(', '.join(map(str, rep.roots)))}; generated {stamp}. "
               f'Report size <b id="report-size">{SIZE_MARK}</b> (samples: {stats["samples"]:,} records, '
               f"{size_text(stats['packed'])} compressed from {size_text(stats['raw'])}).")
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{h(title)}</title><style>{CSS}</style></head><body>"
            f'<header><h1>{h(title)}</h1><nav id="tabs">{nav}</nav><p class="meta">{summary}</p></header><main>'
            + "".join(sections[k] for k in ("leaderboard", "tasks", "samples", "checkpoints", "judges", "forgetting"))
            + f'</main><script type="application/json" id="report-data">{_script_json(meta)}</script>{scripts}'
            f"<script>{JS}</script></body></html>\n")


def write(rep: Report, path: Path, title: str = "harness report") -> int:
    """Write the report atomically; returns its size in bytes (which the page states)."""
    from harness.results import atomic_write_text

    text = render(rep, title)
    size = len(text.encode("utf-8"))
    for _ in range(3):  # the stated size is part of the page: settle it
        final = text.replace(SIZE_MARK, size_text(size))
        new = len(final.encode("utf-8"))
        if new == size:
            break
        size = new
    atomic_write_text(path, final)
    return size
