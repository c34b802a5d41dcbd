"""The report page's style and script, inlined into every report (no files beside it, nothing fetched).

The script only reads the page: the report-data JSON and the gzip+base64 blobs (decompressed with
DecompressionStream on first use). It writes text with textContent only, never as HTML.
"""

CSS = r"""
:root{--fg:#1d2330;--muted:#5b6475;--line:#d8dce4;--bg:#f7f8fa;--accent:#2456c9;--good:#137333;--bad:#b3261e}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:#fff}
header{padding:12px 20px 4px;border-bottom:1px solid var(--line);background:var(--bg)}
h1{font-size:19px;margin:0 0 6px}h2{font-size:17px;margin:6px 0 10px}h3{font-size:15px;margin:18px 0 6px}
nav a{display:inline-block;padding:5px 11px;margin-right:3px;border:1px solid var(--line);border-bottom:none;
border-radius:6px 6px 0 0;color:var(--fg);text-decoration:none;background:#eef0f4}
nav a.active{background:#fff;font-weight:600;color:var(--accent)}
.meta,.note{color:var(--muted);font-size:12.5px;margin:6px 0}
main{padding:10px 20px 40px}
section.page[hidden]{display:none}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid var(--line);padding:4px 7px;text-align:left;vertical-align:top}
thead th{background:var(--bg);position:sticky;top:0}
.scroll{overflow-x:auto;max-width:100%}
table.lb td{white-space:nowrap}table.lb tr.base th{font-weight:700}table.lb tr.adapter th{font-weight:400}
.se{color:var(--muted)}.delta.good{color:var(--good)}.delta.bad{color:var(--bad)}.delta.zero{color:var(--muted)}
.sig{margin-left:3px;font-weight:700;color:var(--accent);cursor:help}.sig.na{color:var(--muted)}
.p{display:none;margin-left:4px;color:var(--muted);font-size:11.5px}table.show-p .p{display:inline}
.toggle{font-size:12.5px;color:var(--muted)}
.plotbox{max-width:100%;overflow-x:auto}svg.plot{max-width:100%;height:auto}
td.best{font-weight:700;background:#fff6d6}
.controls{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:6px 0}
.controls label{font-size:12.5px;color:var(--muted)}
select,input[type=search],button{font:inherit;font-size:13px;padding:3px 6px;border:1px solid var(--line);
border-radius:5px;background:#fff}
input[type=search]{width:240px}
.seg button{border-radius:0;margin-right:-1px}.seg button:first-child{border-radius:5px 0 0 5px}
.seg button:last-child{border-radius:0 5px 5px 0}.seg button.on{background:var(--accent);color:#fff;border-color:var(--accent)}
.count{font-weight:600}.pager{margin:6px 0}.pager .pageno{margin:0 10px;color:var(--muted)}
article.sample,article.flip,article.judgment{border:1px solid var(--line);border-radius:7px;padding:7px 10px;
margin:8px 0;background:#fff}
article.sample header,article.flip header,article.judgment header{position:static;padding:0;border:0;background:none;
display:flex;gap:8px;flex-wrap:wrap;align-items:baseline}
.vname{color:var(--muted)}.badge{font-size:11.5px;border:1px solid var(--line);border-radius:9px;padding:0 6px}
.badge.ok{border-color:var(--good);color:var(--good)}.badge.no{border-color:var(--bad);color:var(--bad)}
.field{margin-top:4px}.field .label{font-size:11px;text-transform:uppercase;color:var(--muted);letter-spacing:.04em}
pre{margin:1px 0 0;white-space:pre-wrap;word-break:break-word;
font:12.5px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;
background:var(--bg);padding:4px 6px;border-radius:4px;max-height:16em;overflow:auto}
.flipcols{display:grid;grid-template-columns:1fr 1fr;gap:16px}.sidebyside{display:grid;grid-template-columns:1fr 1fr;gap:8px}
article.flip.fixed{border-left:4px solid var(--good)}article.flip.broke{border-left:4px solid var(--bad)}
code{background:var(--bg);padding:0 3px;border-radius:3px}
"""

JS = r"""
"use strict";
(function () {
  const $ = (s, r) => (r || document).querySelector(s);
  const $$ = (s, r) => Array.from((r || document).querySelectorAll(s));
  const META = JSON.parse($("#report-data").textContent);

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function option(sel, value, label) {
    const o = document.createElement("option");
    o.value = String(value);
    o.textContent = label;
    sel.append(o);
  }
  function fmt(x) { return Number.isInteger(x) ? String(x) : Number(x).toFixed(3); }
  function field(label, text, cls) {
    const d = el("div", "field" + (cls ? " " + cls : ""));
    d.append(el("span", "label", label), el("pre", null, text === null || text === undefined ? "—" : text));
    return d;
  }
  function pager(box, page, pages, go) {
    box.textContent = "";
    const prev = el("button", "prev", "‹ prev"), next = el("button", "next", "next ›");
    prev.type = next.type = "button";
    prev.disabled = page <= 0;
    next.disabled = page >= pages - 1;
    prev.onclick = () => go(page - 1);
    next.onclick = () => go(page + 1);
    box.append(prev, el("span", "pageno", "page " + (page + 1) + " of " + pages), next);
  }
  function variantName(v) { return META.variants[v] ? META.variants[v].name : "variant " + v; }

  // --- compressed data: decoded once, on first use ------------------------------------------------------------
  const blobs = {};
  function decode(id) {
    if (!blobs[id]) {
      blobs[id] = (async () => {
        if (typeof DecompressionStream === "undefined") {
          throw new Error("this browser cannot decompress the data " +
                          "(DecompressionStream: Chrome 80+, Firefox 113+, Safari 16.4+)");
        }
        const bin = atob($("#" + id).textContent.trim());
        const bytes = new Uint8Array(bin.length);
        for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
        const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
        return JSON.parse(await new Response(stream).text());
      })();
    }
    return blobs[id];
  }
  function failed(where) { return e => { where.textContent = "error: " + e.message; }; }

  // --- samples -------------------------------------------------------------------------------------------------
  const S = { task: 0, variant: "0", metric: null, filter: "all", q: "", page: 0, size: 25 };
  const hay = new Map();
  let sToken = 0;
  function absent(v, i) { return v.more[i] === null; }
  function haystack(T, vi) {
    const key = S.task + "|" + vi;
    if (!hay.has(key)) {
      const v = T.variants[vi];
      hay.set(key, T.docs.map((d, i) => [d[0], v.prompt[i] ?? d[1], v.out[i], v.ext[i], v.target[i] ?? d[2]]
        .map(x => (x === null || x === undefined ? "" : String(x))).join("\u0001").toLowerCase()));
    }
    return hay.get(key);
  }
  function matching(T, vi) {
    const v = T.variants[vi], col = S.metric ? v.met[S.metric] : null, hs = S.q ? haystack(T, vi) : null, out = [];
    for (let i = 0; i < T.docs.length; i++) {
      if (absent(v, i)) continue;
      if (S.filter !== "all") {
        const x = col ? col[i] : null;
        if (x === null || x === undefined || (x >= 1) !== (S.filter === "correct")) continue;
      }
      if (hs && !hs[i].includes(S.q)) continue;
      out.push([vi, i]);
    }
    return out;
  }
  function sampleCard(T, vi, i) {
    const v = T.variants[vi], d = T.docs[i], a = el("article", "sample"), head = el("header");
    a.dataset.docId = d[0];
    a.dataset.variant = variantName(v.v);
    head.append(el("b", null, d[0]), el("span", "vname", variantName(v.v)));
    for (const m of T.metrics) {
      const x = v.met[m][i];
      if (x === null || x === undefined) continue;
      head.append(el("span", "badge" + (m === S.metric ? (x >= 1 ? " ok" : " no") : ""), m + "=" + fmt(x)));
    }
    a.append(head, field("prompt", v.prompt[i] ?? d[1], "prompt"), field("output", v.out[i], "output"),
      field("extracted", v.ext[i], "extracted"), field("target", v.target[i] ?? d[2], "target"));
    if (v.more[i]) {
      const det = el("details");
      det.append(el("summary", null, "other fields"), el("pre", null, v.more[i]));
      a.append(det);
    }
    return a;
  }
  async function renderSamples() {
    const token = ++sToken, list = $("#s-list");
    list.dataset.state = "busy";
    const T = await decode(META.tasks[S.task].blob);
    if (token !== sToken) return;
    const shown = S.variant === "all" ? T.variants.map((_, i) => i) : [Number(S.variant)];
    const found = [].concat(...shown.map(vi => matching(T, vi)));
    const total = shown.reduce((n, vi) => n + T.variants[vi].n, 0);
    const pages = Math.max(1, Math.ceil(found.length / S.size));
    S.page = Math.max(0, Math.min(S.page, pages - 1));
    $("#s-count").textContent = found.length + " of " + total + " samples";
    pager($("#s-pager"), S.page, pages, p => { S.page = p; renderSamples(); });
    const frag = document.createDocumentFragment();
    for (const [vi, i] of found.slice(S.page * S.size, (S.page + 1) * S.size)) frag.append(sampleCard(T, vi, i));
    list.textContent = "";
    list.append(frag);
    list.dataset.state = "ready";
  }
  async function fillSampleSelectors() {
    const T = await decode(META.tasks[S.task].blob), vs = $("#s-variant"), ms = $("#s-metric");
    vs.textContent = "";
    T.variants.forEach((v, i) => option(vs, i, variantName(v.v)));
    option(vs, "all", "all variants");
    S.variant = "0";
    ms.textContent = "";
    T.metrics.forEach(m => option(ms, m, m));
    S.metric = T.default || T.metrics[0] || null;
    if (S.metric) ms.value = S.metric;
  }
  async function samplesInit() {
    const ts = $("#s-task"), fail = failed($("#s-count"));
    META.tasks.forEach((t, i) => option(ts, i, t.name));
    const busy = () => { $("#s-list").dataset.state = "busy"; };
    const again = () => { busy(); S.page = 0; renderSamples().catch(fail); };
    ts.onchange = () => {
      busy();
      S.task = Number(ts.value);
      S.page = 0;
      fillSampleSelectors().then(renderSamples).catch(fail);
    };
    $("#s-variant").onchange = e => { S.variant = e.target.value; again(); };
    $("#s-metric").onchange = e => { S.metric = e.target.value; again(); };
    for (const b of $$("[data-filter]")) {
      b.onclick = () => {
        S.filter = b.dataset.filter;
        for (const x of $$("[data-filter]")) x.classList.toggle("on", x === b);
        again();
      };
    }
    let timer = null;
    $("#s-search").oninput = e => {
      busy();
      clearTimeout(timer);
      timer = setTimeout(() => { S.q = e.target.value.trim().toLowerCase(); again(); }, 120);
    };
    $("#s-size").onchange = e => { S.size = Number(e.target.value); again(); };
    await fillSampleSelectors();
    await renderSamples();
  }

  // --- flips ---------------------------------------------------------------------------------------------------
  const F = { variant: null, task: 0, metric: null };
  let fToken = 0;
  function flipCard(T, va, vb, i, kind) {
    const d = T.docs[i], a = el("article", "flip " + kind), head = el("header");
    a.dataset.docId = d[0];
    const change = F.metric + ": " + fmt(vb.met[F.metric][i]) + " → " + fmt(va.met[F.metric][i]);
    head.append(el("b", null, d[0]), el("span", "badge", change));
    const sides = el("div", "sidebyside");
    const left = el("div"), right = el("div");
    left.append(field("base output", vb.out[i]), field("base extracted", vb.ext[i]));
    right.append(field("adapter output", va.out[i]), field("adapter extracted", va.ext[i]));
    sides.append(left, right);
    a.append(head, field("prompt", va.prompt[i] ?? d[1], "prompt"), field("target", va.target[i] ?? d[2]), sides);
    return a;
  }
  function fillColumn(box, items, make) {
    box.textContent = "";
    const step = 100;
    let shown = 0;
    const more = el("button", "more");
    more.type = "button";
    const add = () => {
      const frag = document.createDocumentFragment();
      for (const i of items.slice(shown, shown + step)) frag.append(make(i));
      shown = Math.min(items.length, shown + step);
      box.insertBefore(frag, more);
      more.textContent = "show more (" + (items.length - shown) + " left)";
      more.hidden = shown >= items.length;
    };
    more.onclick = add;
    box.append(more);
    add();
  }
  async function renderFlips() {
    const token = ++fToken, box = $("#flips");
    box.dataset.state = "busy";
    const T = await decode(META.tasks[F.task].blob);
    if (token !== fToken) return;
    const base = META.variants[F.variant].base;
    const va = T.variants.find(v => v.v === F.variant), vb = T.variants.find(v => v.v === base);
    const fixed = [], broke = [];
    let shared = 0;
    if (va && vb && F.metric) {
      const a = va.met[F.metric], b = vb.met[F.metric];
      for (let i = 0; i < T.docs.length; i++) {
        if (a[i] === null || b[i] === null || a[i] === undefined || b[i] === undefined) continue;
        shared++;
        if (a[i] > b[i]) fixed.push(i); else if (a[i] < b[i]) broke.push(i);
      }
    }
    $("#fl-summary").textContent = va && vb
      ? fixed.length + " fixed, " + broke.length + " broken, " + (shared - fixed.length - broke.length) +
        " unchanged, of " + shared + " documents both scored on " + F.metric
      : "no samples of this task for the adapter or its base";
    $("#fl-nfixed").textContent = "(" + fixed.length + ")";
    $("#fl-nbroke").textContent = "(" + broke.length + ")";
    fillColumn($("#flips-fixed"), fixed, i => flipCard(T, va, vb, i, "fixed"));
    fillColumn($("#flips-broke"), broke, i => flipCard(T, va, vb, i, "broke"));
    box.dataset.state = "ready";
  }
  async function fillFlipMetrics() {
    const T = await decode(META.tasks[F.task].blob), ms = $("#fl-metric");
    ms.textContent = "";
    T.metrics.forEach(m => option(ms, m, m));
    F.metric = T.default || T.metrics[0] || null;
    if (F.metric) ms.value = F.metric;
  }
  function fillFlipTasks() {
    const ts = $("#fl-task"), base = META.variants[F.variant].base, keep = F.task;
    ts.textContent = "";
    META.tasks.forEach((t, i) => {
      if (t.variants.includes(F.variant) && t.variants.includes(base)) option(ts, i, t.name);
    });
    const values = Array.from(ts.options).map(o => Number(o.value));
    F.task = values.includes(keep) ? keep : (values.length ? values[0] : null);
    if (F.task !== null) ts.value = String(F.task);
  }
  async function showFlips() {
    fillFlipTasks();
    if (F.task === null) {
      $("#fl-summary").textContent = "this adapter and its base share no task with samples";
      for (const id of ["#flips-fixed", "#flips-broke", "#fl-nfixed", "#fl-nbroke", "#fl-metric"]) $(id).textContent = "";
      $("#flips").dataset.state = "ready";
      return;
    }
    await fillFlipMetrics();
    await renderFlips();
  }
  async function flipsInit() {
    const vs = $("#fl-variant"), ts = $("#fl-task"), fail = failed($("#fl-summary"));
    META.variants.forEach((v, i) => {
      if (v.base !== null && v.base !== undefined) option(vs, i, v.name + " vs " + META.variants[v.base].name);
    });
    if (!vs.options.length) {
      $("#fl-summary").textContent = "No adapter row with a base row of the same model.";
      $("#flips").dataset.state = "ready";
      return;
    }
    F.variant = Number(vs.value);
    const busy = () => { $("#flips").dataset.state = "busy"; };
    vs.onchange = () => { busy(); F.variant = Number(vs.value); showFlips().catch(fail); };
    ts.onchange = () => { busy(); F.task = Number(ts.value); fillFlipMetrics().then(renderFlips).catch(fail); };
    $("#fl-metric").onchange = e => { busy(); F.metric = e.target.value; renderFlips().catch(fail); };
    await showFlips();
  }

  // --- judgments -----------------------------------------------------------------------------------------------
  const J = { file: "all", q: "", page: 0, size: 25 };
  function judgmentCard(r) {
    const [file, kind, qid, turn, category, models, verdict, votes, rationale] = r;
    const a = el("article", "judgment"), head = el("header");
    a.dataset.question = qid;
    head.append(el("b", null, "question " + qid + (turn ? " · turn " + turn : "")), el("span", "vname", category),
      el("span", "badge", kind), el("span", "vname", META.judgments.files[file]));
    a.append(head, field("models", models), field("verdict", verdict + (votes ? "   (votes by order: " + votes + ")" : "")),
      field("judge's rationale", rationale));
    return a;
  }
  function renderJudgments(rows) {
    const q = J.q, found = rows.filter(r => (J.file === "all" || String(r[0]) === J.file) &&
      (!q || [r[2], r[5], r[6], r[8]].join("\u0001").toLowerCase().includes(q)));
    const pages = Math.max(1, Math.ceil(found.length / J.size));
    J.page = Math.max(0, Math.min(J.page, pages - 1));
    $("#j-count").textContent = found.length + " of " + rows.length + " judgments";
    pager($("#j-pager"), J.page, pages, p => { J.page = p; renderJudgments(rows); });
    const list = $("#j-list");
    list.textContent = "";
    for (const r of found.slice(J.page * J.size, (J.page + 1) * J.size)) list.append(judgmentCard(r));
    list.dataset.state = "ready";
  }
  async function judgesInit() {
    if (!META.judgments) return;
    const rows = await decode(META.judgments.blob), fs = $("#j-file");
    option(fs, "all", "all files");
    META.judgments.files.forEach((f, i) => option(fs, i, f));
    fs.onchange = () => { J.file = fs.value; J.page = 0; renderJudgments(rows); };
    let timer = null;
    $("#j-search").oninput = e => {
      $("#j-list").dataset.state = "busy";
      clearTimeout(timer);
      timer = setTimeout(() => { J.q = e.target.value.trim().toLowerCase(); J.page = 0; renderJudgments(rows); }, 120);
    };
    renderJudgments(rows);
  }

  // --- pages ---------------------------------------------------------------------------------------------------
  const inits = { samples: () => samplesInit().catch(failed($("#s-count"))),
                  flips: () => flipsInit().catch(failed($("#fl-summary"))),
                  judges: () => judgesInit().catch(failed($("#j-count") || document.body)) };
  function showTab() {
    const pages = $$("section.page");
    if (!pages.length) return;
    const id = decodeURIComponent(location.hash.slice(1));
    const target = pages.find(p => p.id === id) || pages[0];
    for (const p of pages) p.hidden = p !== target;
    for (const a of $$("#tabs a")) a.classList.toggle("active", a.getAttribute("href") === "#" + target.id);
    document.body.dataset.page = target.id;
    const init = inits[target.id];
    if (init) { inits[target.id] = null; init(); }
  }
  const showP = $("#show-p");
  if (showP) showP.onchange = () => $("#lb-table").classList.toggle("show-p", showP.checked);
  window.addEventListener("hashchange", showTab);
  showTab();
})();
"""
