// The script of a build report page: reads the JSON in #kiln-data and draws
// each step (graphs laid out here, in SVG; no outside libraries).
#pragma once

namespace kiln::cli {

inline constexpr const char* kReportScript = R"KILNJS(
"use strict";
const D = JSON.parse(document.getElementById("kiln-data").textContent);
const S = D.summary;
const SVGNS = "http://www.w3.org/2000/svg";

// Builds an element; strings become text nodes, so model names never parse as markup.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of kids) if (c !== null && c !== undefined) e.append(typeof c === "string" || typeof c === "number" ? String(c) : c);
  return e;
}
function sv(tag, attrs, text) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function shape(t) { return t.dtype + "[" + t.shape.join(",") + "]"; }
function table(head, rows) {
  const t = el("table", {}, el("tr", {}, ...head.map(h => el("th", {}, h))));
  for (const r of rows) t.append(el("tr", {}, ...r.map(c => (c instanceof Node ? el("td", {}, c) : el("td", {}, String(c))))));
  return t;
}
function precTag(p) {
  const cls = ["fp32", "fp16", "int8"].includes(p) ? "p-" + p : "p-other";
  return el("span", {class: "tag " + cls}, p || "?");
}
const PREC_FILL = {fp32: "#dbe7f4", fp16: "#f8e3bf", int8: "#e6d5f0"};

// Layered layout: each node one row below its deepest producer; rows ordered
// by the mean position of their producers to keep edges short.
let graphs = 0;  // marker ids must differ per graph: a hidden step's marker would not draw
function drawGraph(layers, styleOf) {
  const arrow = "arrow" + (++graphs);
  const nodes = [], producer = {}, edges = [];
  for (const t of S.inputs) {
    producer[t.name] = nodes.length;
    nodes.push({label: t.name, sub: "input " + shape(t), kind: "input", preds: [], depth: 0});
  }
  layers.forEach((l, i) => {
    const n = {label: l.name, sub: l.op_type + (l.outputs.length ? " " + shape(l.outputs[0]) : ""), kind: "layer", layer: l, preds: [], index: i};
    const id = nodes.length;
    for (const t of l.inputs) {
      const p = producer[t.name];
      if (p !== undefined && p !== id && !n.preds.includes(p)) { n.preds.push(p); edges.push([p, id, shape(t)]); }
    }
    n.depth = 1 + Math.max(0, ...n.preds.map(p => nodes[p].depth));
    nodes.push(n);
    for (const t of l.outputs) producer[t.name] = id;
  });
  for (const t of S.outputs) {
    const p = producer[t.name];
    if (p === undefined) continue;
    const id = nodes.length;
    nodes.push({label: t.name, sub: "output " + shape(t), kind: "output", preds: [p], depth: nodes[p].depth + 1});
    edges.push([p, id, shape(t)]);
  }
  const rows = [];
  nodes.forEach((n, i) => { (rows[n.depth] = rows[n.depth] || []).push(i); });
  const CH = 6.6, H = 34, GAP = 14, ROWH = 66;
  nodes.forEach(n => { n.w = Math.min(280, Math.max(90, 16 + CH * Math.max(n.label.length, n.sub.length))); });
  let width = 0;
  rows.forEach((row, d) => {
    if (!row) return;
    if (d > 0) {
      const key = i => { const p = nodes[i].preds; return p.length ? p.reduce((a, q) => a + nodes[q].cx, 0) / p.length : 0; };
      row.sort((a, b) => key(a) - key(b));
    }
    let x = GAP;
    for (const i of row) { nodes[i].x = x; nodes[i].cx = x + nodes[i].w / 2; x += nodes[i].w + GAP; }
    width = Math.max(width, x);
  });
  rows.forEach(row => {  // center each row
    if (!row) return;
    const last = nodes[row[row.length - 1]];
    const shift = (width - (last.x + last.w + GAP)) / 2;
    for (const i of row) { nodes[i].x += shift; nodes[i].cx += shift; }
  });
  const height = rows.length * ROWH + 10;
  const svg = sv("svg", {width: width, height: height, viewBox: "0 0 " + width + " " + height});
  const marker = sv("marker", {id: arrow, viewBox: "0 0 8 8", refX: 8, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto"});
  marker.append(sv("path", {d: "M0,0 L8,4 L0,8 z", fill: "#888"}));
  const defs = sv("defs");
  defs.append(marker);
  svg.append(defs);
  const y = n => 8 + n.depth * ROWH;
  for (const [a, b, tip] of edges) {
    const p = nodes[a], q = nodes[b], y1 = y(p) + H, y2 = y(q), m = (y1 + y2) / 2;
    const path = sv("path", {d: `M${p.cx},${y1} C${p.cx},${m} ${q.cx},${m} ${q.cx},${y2}`, fill: "none", stroke: "#999", "marker-end": `url(#${arrow})`});
    path.append(sv("title", {}, tip));
    svg.append(path);
  }
  for (const n of nodes) {
    const st = n.kind === "layer" ? styleOf(n.layer) : {fill: n.kind === "input" ? "#e4f2e1" : "#f2e1e1", stroke: "#777"};
    const g = sv("g", {class: "node", "data-name": n.label});
    g.append(sv("rect", {x: n.x, y: y(n), width: n.w, height: H, rx: n.kind === "layer" ? 4 : 14, fill: st.fill, stroke: st.stroke,
      "stroke-width": st.strokeWidth || 1, "stroke-dasharray": st.dash || ""}));
    g.append(sv("text", {x: n.x + 6, y: y(n) + 14, "font-weight": "bold"}, n.label));
    g.append(sv("text", {x: n.x + 6, y: y(n) + 27}, n.sub));
    if (st.badge) {
      const bw = 10 + 6.6 * st.badge.length;
      g.append(sv("rect", {x: n.x + n.w - bw, y: y(n) - 15, width: bw, height: 15, rx: 7, fill: st.stroke}));
      g.append(sv("text", {x: n.x + n.w - bw + 5, y: y(n) - 4, fill: "#fff"}, st.badge));
    }
    const l = n.layer;
    g.append(sv("title", {}, l ? `${l.name} (${l.op_type}, ${l.path}, ${l.precision})\ntactic: ${l.tactic || "-"}\n` +
      l.outputs.map(t => "out " + t.name + " " + shape(t)).join("\n") : n.label + " " + n.sub));
    svg.append(g);
  }
  return el("div", {class: "graph"}, svg);
}

const plain = () => ({fill: "#fff", stroke: "#777"});
const body = n => document.querySelector("#step-" + n + " .body");

function step1(b) {
  if (S.layers_before) {
    b.append(el("p", {class: "note"}, `${S.layers_before.length} nodes as the ONNX importer produced them, before any graph pass. Hover a node for its tensors.`));
    b.append(drawGraph(S.layers_before, plain));
  } else {
    const n = D.layers_before_count >= 0 ? D.layers_before_count + " layers" : "an unrecorded number of layers";
    b.append(el("p", {class: "note", id: "no-imported-graph"}, `The plan records that the imported graph had ${n} and ${S.launches_before} kernel launches, ` +
      "but not its nodes. Run `kiln report PLAN --model MODEL.onnx` or `kiln build MODEL.onnx --report FILE.html` to draw it."));
  }
  b.append(el("h3", {}, "Inputs and outputs"));
  b.append(table(["", "name", "tensor"], [...S.inputs.map(t => ["input", t.name, shape(t)]), ...S.outputs.map(t => ["output", t.name, shape(t)])]));
}

function step2(b) {
  const before = S.layers_before ? S.layers_before.length : D.layers_before_count;
  b.append(el("p", {}, el("span", {class: "big", id: "launches"}, `${S.launches_before} \u2192 ${S.launches_after}`), " kernel launches per inference",
    before >= 0 ? ` (${before} \u2192 ${S.layers.length} layers)` : ""));
  const groups = S.fused_groups.length ? el("ul", {class: "groups"}, ...S.fused_groups.map(g => el("li", {}, g))) : el("p", {class: "note"}, "No layers were fused.");
  b.append(el("h3", {}, "Fused groups"), groups);
  const elided = S.layers.filter(l => l.elided).length;
  if (elided) b.append(el("p", {class: "note"}, `${elided} layers run no kernel (dashed): their outputs are views of other tensors' memory.`));
  b.append(drawGraph(S.layers, l => l.fused.length >= 2 ? {fill: "#fde0cf", stroke: "#c0562b", strokeWidth: 2, badge: l.fused.join("+") + " \u2192 " + (l.fusion || l.op_type)}
    : l.elided ? {fill: "#f4f4f4", stroke: "#999", dash: "4 3"} : plain()));
  if (S.passes.length) b.append(el("h3", {}, "What the passes changed"), el("ul", {}, ...S.passes.map(p => el("li", {}, p))));
}

function step3(b) {
  const count = {};
  for (const l of S.layers) count[l.precision] = (count[l.precision] || 0) + 1;
  b.append(el("p", {class: "legend"}, ...Object.entries(count).map(([p, c]) => el("span", {}, precTag(p), ` ${c} layers`))));
  if (S.precision_choice) b.append(el("p", {}, "Precision choice: ", el("code", {}, S.precision_choice)));
  if (S.reformats) b.append(el("p", {class: "note"}, `${S.reformats} reformat layers convert precision or layout.`));
  b.append(drawGraph(S.layers, l => ({fill: PREC_FILL[l.precision] || "#eee", stroke: "#777", badge: l.precision})));
  if (S.int8) b.append(el("p", {}, "INT8: ", el("code", {}, S.int8)));
  const any = S.layers.some(l => l.precision_choice);
  const q = S.layers.some(l => l.int8_scales);
  if (!any) b.append(el("p", {class: "note"}, "No per-layer precision choice was made (made only by GPU builds with --fp16 or --int8)."));
  b.append(table(["layer", "op", "precision", "tactic", ...(any ? ["why this precision"] : []), ...(q ? ["INT8 scales"] : [])],
    S.layers.map(l => [l.name, l.op_type, precTag(l.precision), l.tactic || "-", ...(any ? [l.precision_choice || "-"] : []),
                       ...(q ? [l.int8_scales || "-"] : [])])));
}

function step4(b) {
  const plugins = S.layers.map((l, i) => [l, i]).filter(([l]) => l.path === "plugin");
  const paths = {};
  for (const l of S.layers) paths[l.path] = (paths[l.path] || 0) + 1;
  b.append(el("p", {}, "Layer paths: ", Object.entries(paths).map(([p, c]) => `${p} \u00d7${c}`).join(", ")));
  if (!plugins.length) {
    b.append(el("p", {class: "note", id: "no-plugins"}, "No plugin layers in this plan: every layer runs one of kiln's own kernels."));
    return;
  }
  const prod = {};
  S.layers.forEach(l => l.outputs.forEach(t => { prod[t.name] = l.name; }));
  b.append(table(["plugin layer", "op", "position", "fed by", "feeds"], plugins.map(([l, i]) => {
    const outs = new Set(l.outputs.map(t => t.name));
    const feeds = S.layers.filter(o => o.inputs.some(t => outs.has(t.name))).map(o => o.name);
    const outsNamed = S.outputs.filter(t => outs.has(t.name)).map(t => "output " + t.name);
    return [l.name, l.op_type, `layer ${i + 1} of ${S.layers.length}`, l.inputs.map(t => prod[t.name] || t.name).join(", "),
      [...feeds, ...outsNamed].join(", ") || "-"];
  })));
  b.append(drawGraph(S.layers, l => l.path === "plugin" ? {fill: "#efe0f7", stroke: "#7b3fa0", strokeWidth: 3, badge: "plugin"} : plain()));
}

function step5(b) {
  const run = S.layers.filter(l => !l.elided);
  const timed = run.filter(l => l.candidates.length > 1).length;
  b.append(el("p", {class: "note"}, timed ? `${timed} of ${run.length} layers that run a kernel had several candidates, timed at build (median ms); the winner is bold.`
    : `Every one of the ${run.length} layers that run a kernel had a single candidate, so nothing was timed` + (S.device === "cpu" ? " (CPU plans have one kernel per layer)." : ".")));
  const rows = S.layers.map(l => {
    if (l.elided) return [l.name, l.op_type, "no kernel: its output is a view"];
    if (!l.candidates.length) return [l.name, l.op_type, el("span", {}, el("span", {class: "winner"}, l.tactic || "-"), " (only candidate)")];
    const ok = l.candidates.filter(c => !c.error).map(c => c.ms);
    const max = Math.max(...ok, 1e-12);
    const list = el("div", {});
    for (const c of [...l.candidates].sort((x, y) => (x.error ? 1e30 : x.ms) - (y.error ? 1e30 : y.ms))) {
      const w = c.error ? 0 : Math.max(1, 160 * c.ms / max);
      list.append(el("div", {}, el("span", {style: `display:inline-block;width:${w}px;height:9px;margin-right:6px;background:${c.chosen ? "#1d7a2e" : "#9ab"}`}),
        el("span", {class: c.chosen ? "winner" : ""}, `${c.tactic} ${c.error ? "failed" : c.ms.toFixed(4) + " ms"}${c.chosen ? "  \u2190 chosen" : ""}`)));
    }
    return [l.name, l.op_type, list];
  });
  b.append(table(["layer", "op", "candidates"], rows));
}

function step6(b) {
  if (!D.benches.length) {
    b.append(el("p", {class: "note", id: "no-bench"}, "No measurement was given. Run `kiln bench PLAN --json > bench.json` and pass `--bench bench.json` to `kiln report`."));
    return;
  }
  const R = D.benches.map(x => x.result);
  const top = Math.max(...R.map(r => r.max_ms), 1e-12);
  const LW = 260, BW = 420, RH = 30, W = LW + BW + 130, H = RH * R.length + 24;
  const svg = sv("svg", {width: W, height: H, id: "latency-chart"});
  D.benches.forEach((x, i) => {
    const r = x.result, yy = 6 + i * RH, sx = v => LW + BW * v / top;
    svg.append(sv("text", {x: 4, y: yy + 15}, x.label.length > 38 ? "\u2026" + x.label.slice(-37) : x.label));
    svg.append(sv("rect", {x: LW, y: yy + 3, width: Math.max(1, sx(r.median_ms) - LW), height: 16, fill: "#c0562b"}));
    const hi = typeof r.p99_ms === "number" ? r.p99_ms : r.max_ms;
    svg.append(sv("line", {x1: sx(r.min_ms), x2: sx(hi), y1: yy + 11, y2: yy + 11, stroke: "#222"}));
    svg.append(sv("text", {x: sx(r.max_ms) + 6, y: yy + 15}, `${r.median_ms.toFixed(3)} ms median`));
  });
  svg.append(sv("text", {x: LW, y: H - 4, fill: "#555"}, `bar: median ms; line: min to p99 (axis 0 to ${top.toFixed(3)} ms)`));
  b.append(el("div", {class: "graph"}, svg));
  const cap = el("div", {class: "chart-caption"});
  for (const x of D.benches) {
    const r = x.result, f = x.file;
    cap.append(el("div", {}, el("b", {}, x.label), `: device ${r.device || "(not recorded)"}, date ${r.date || "(not recorded in " + f + ")"}, ` +
      `command ${r.command || "(not recorded; from file " + f + ")"}`));
  }
  b.append(cap);
  const keys = ["batch", "iterations", "min_ms", "median_ms", "mean_ms", "p90_ms", "p99_ms", "max_ms", "throughput_per_s"];
  b.append(table(["file / plan", ...keys], D.benches.map(x => [x.label, ...keys.map(k => typeof x.result[k] === "number" ? +x.result[k].toFixed(4) : "-")])));
}

const steps = [step1, step2, step3, step4, step5, step6];
steps.forEach((f, i) => {
  try { f(body(i + 1)); } catch (e) { body(i + 1).append(el("p", {}, "could not draw this step: " + e)); console.error(e); }
});
document.getElementById("meta").textContent = `${S.source} \u2014 plan for ${S.device}, kiln ${D.kiln_version}, written ${D.generated} by: ${D.command}`;

let cur = 1, timer = null;
const dots = document.getElementById("dots");
for (let i = 1; i <= 6; ++i) {
  const d = el("span", {class: "dot", "data-step": i}, document.getElementById("step-" + i).dataset.title);
  d.addEventListener("click", () => show(i));
  dots.append(d);
}
function show(n) {
  cur = Math.min(6, Math.max(1, n));
  document.querySelectorAll(".step").forEach(s => s.classList.toggle("current", s.id === "step-" + cur));
  dots.querySelectorAll(".dot").forEach(d => d.classList.toggle("on", +d.dataset.step === cur));
  document.getElementById("step-title").textContent = document.getElementById("step-" + cur).dataset.title;
  document.getElementById("prev").disabled = cur === 1;
  document.getElementById("next").disabled = cur === 6;
}
function stop() { clearInterval(timer); timer = null; document.getElementById("play").textContent = "play"; }
document.getElementById("prev").addEventListener("click", () => { stop(); show(cur - 1); });
document.getElementById("next").addEventListener("click", () => { stop(); show(cur + 1); });
document.getElementById("play").addEventListener("click", () => {
  if (timer) return stop();
  if (cur === 6) show(1);
  document.getElementById("play").textContent = "pause";
  timer = setInterval(() => { if (cur >= 6) stop(); else show(cur + 1); }, 2500);
});
document.addEventListener("keydown", e => { if (e.key === "ArrowRight") show(cur + 1); if (e.key === "ArrowLeft") show(cur - 1); });
show(1);
)KILNJS";

}  // namespace kiln::cli
