// The HTML around a build report's data: markup and style, all inline (the
// page must open with no network). The data and kReportScript go between
// kReportPageHead and kReportPageTail.
#pragma once

#include "report_script.h"

namespace kiln::cli {

inline constexpr const char* kReportPageHead = R"KILNHTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>kiln build report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #2d2a26; color: #fff; padding: 10px 18px; }
header h1 { font-size: 18px; margin: 0; }
header .meta { font-size: 12px; color: #ddd; }
nav { display: flex; gap: 6px; align-items: center; padding: 8px 18px; background: #eee; border-bottom: 1px solid #ccc;
      position: sticky; top: 0; z-index: 2; }
nav button { font: inherit; padding: 4px 12px; cursor: pointer; }
nav .dot { padding: 2px 8px; border-radius: 10px; background: #ddd; font-size: 12px; cursor: pointer; }
nav .dot.on { background: #c0562b; color: #fff; }
#step-title { margin-left: 10px; font-weight: 600; }
main { padding: 12px 18px; }
.step { display: none; }
.step.current { display: block; animation: fadein .45s ease; }
@keyframes fadein { from { opacity: 0; transform: translateY(6px); } to { opacity: 1; transform: none; } }
.step h2 { font-size: 17px; margin: 4px 0 8px; }
.note { color: #555; margin: 6px 0; }
.big { font-size: 26px; font-weight: 700; }
.graph { overflow: auto; max-height: 70vh; border: 1px solid #ccc; background: #fff; }
.graph svg text { font: 11px monospace; }
table { border-collapse: collapse; margin: 6px 0; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: left; vertical-align: top; font-size: 12px; }
th { background: #eee; }
td.num { text-align: right; font-family: monospace; }
.tag { display: inline-block; padding: 0 6px; border-radius: 8px; font-size: 11px; color: #fff; }
.p-fp32 { background: #3a6ea5; } .p-fp16 { background: #d08a1b; } .p-int8 { background: #7b3fa0; } .p-other { background: #777; }
.winner { font-weight: 700; color: #1d7a2e; }
.legend span { margin-right: 12px; }
.chart-caption { font-size: 12px; color: #444; margin-top: 6px; }
ul.groups li { font-family: monospace; }
</style>
</head>
<body>
<header><h1>kiln build report</h1><div class="meta" id="meta"></div></header>
<nav>
<button id="prev" type="button">&#9664; previous</button>
<button id="next" type="button">next &#9654;</button>
<button id="play" type="button">play</button>
<span id="dots"></span>
<span id="step-title"></span>
</nav>
<main>
<section class="step" id="step-1" data-title="1. Parse"><h2>1. Parse: the graph as imported</h2><div class="body"></div></section>
<section class="step" id="step-2" data-title="2. Fusion"><h2>2. Fusion: the graph after the passes</h2><div class="body"></div></section>
<section class="step" id="step-3" data-title="3. Precision"><h2>3. Precision: what each layer runs in</h2><div class="body"></div></section>
<section class="step" id="step-4" data-title="4. Plugins"><h2>4. Plugins: where plugin layers slot in</h2><div class="body"></div></section>
<section class="step" id="step-5" data-title="5. Tactics"><h2>5. Tactics: candidates timed per layer</h2><div class="body"></div></section>
<section class="step" id="step-6" data-title="6. Latency"><h2>6. Latency: measurements given</h2><div class="body"></div></section>
</main>
)KILNHTML";

inline constexpr const char* kReportPageTail = R"KILNHTML(</body>
</html>
)KILNHTML";

}  // namespace kiln::cli
