// The page's only script: it reads the recorded run (the JSON above) and draws it. No libraries.
"use strict";
const run = JSON.parse(document.getElementById("run-data").textContent);
const nSteps = run.values.length;
let step = 0, selected = null, timer = null;
const $ = (id) => document.getElementById(id);

function fmt(v) {
  if (v === null) return "non-finite";
  return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4) : v.toFixed(5);
}

// A recorded matrix of the current step: {name, rows, cols, data, shape}, data row-major over the
// shown rows and columns (an even sample when the matrix is larger than max_side).
function matrix(name, t = step) {
  const m = run.matrices[name];
  return { name, shape: m.shape, rows: m.rows, cols: m.cols, data: run.values[t][name] };
}

function color(v, scale) {
  if (v === null) return "#000";
  const x = Math.max(-1, Math.min(1, v / scale));
  const a = Math.round(255 * (1 - Math.abs(x)));
  return x >= 0 ? `rgb(255,${a},${a})` : `rgb(${a},${a},255)`;
}

function drawHeatmap(box, m, cell) {
  const canvas = box.querySelector("canvas");
  const R = m.rows.length, C = m.cols.length;
  canvas.width = C * cell; canvas.height = R * cell;
  canvas.dataset.cell = cell;
  const ctx = canvas.getContext("2d");
  let scale = 0;
  for (const v of m.data) if (v !== null) scale = Math.max(scale, Math.abs(v));
  scale = scale || 1;
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) {
    ctx.fillStyle = color(m.data[r * C + c], scale);
    ctx.fillRect(c * cell, r * cell, cell, cell);
  }
  box.querySelector(".meta").textContent =
    `colour: blue −${fmt(scale)} … white 0 … red +${fmt(scale)}` +
    (R < m.shape[0] || C < m.shape[1] ? ` · showing ${R} of ${m.shape[0]} rows, ${C} of ${m.shape[1]} columns` : "");
}

function heatmap(name, role) {
  const m = matrix(name);
  const box = document.createElement("div");
  box.className = "heatmap";
  box.dataset.name = name;
  box.innerHTML = `<div class="title"></div><div class="meta"></div>
    <button type="button" class="zoom-out">−</button> <button type="button" class="zoom-in">+</button>
    <div class="frame"><canvas></canvas></div>`;
  box.querySelector(".title").textContent = `${role} ${name}  (${m.shape[0]}×${m.shape[1]})`;
  let cell = Math.max(3, Math.min(24, Math.floor(360 / Math.max(m.rows.length, m.cols.length))));
  const canvas = box.querySelector("canvas");
  box.redraw = () => drawHeatmap(box, matrix(name), cell);
  box.querySelector(".zoom-in").onclick = () => { cell = Math.min(64, cell * 2); box.redraw(); };
  box.querySelector(".zoom-out").onclick = () => { cell = Math.max(1, Math.floor(cell / 2)); box.redraw(); };
  canvas.addEventListener("mousemove", (e) => {
    const mm = matrix(name);
    const c = Math.floor(e.offsetX / cell), r = Math.floor(e.offsetY / cell);
    if (r < 0 || c < 0 || r >= mm.rows.length || c >= mm.cols.length) return;
    const v = mm.data[r * mm.cols.length + c];
    const out = $("readout");
    out.textContent = `${name}[${mm.rows[r]}, ${mm.cols[c]}] = ${v === null ? "non-finite" : v}`;
    out.dataset.name = name; out.dataset.row = mm.rows[r]; out.dataset.col = mm.cols[c];
    out.dataset.value = v === null ? "NaN" : String(v);
    canvas.title = out.textContent;
  });
  box.redraw();
  return box;
}

function showEquation(eq, div) {
  document.querySelectorAll(".eq.selected").forEach((e) => e.classList.remove("selected"));
  div.classList.add("selected");
  selected = eq;
  $("detail-title").textContent = `${eq.formula}    ${eq.shapes}   (step ${step})`;
  const maps = $("heatmaps");
  maps.replaceChildren();
  for (const name of eq.operands) maps.appendChild(heatmap(name, "operand"));
  if (eq.name) maps.appendChild(heatmap(eq.name, "result"));
}

function equationList(target, eqs) {
  for (const eq of eqs) {
    const div = document.createElement("div");
    div.className = "eq" + (eq.name || eq.operands.length ? "" : " inert");
    div.dataset.name = eq.name;
    div.innerHTML = `<span class="formula"></span><span class="shapes"></span><span class="note"></span>`;
    div.querySelector(".formula").textContent = eq.formula;
    div.querySelector(".shapes").textContent = eq.shapes;
    div.querySelector(".note").textContent = eq.note;
    if (!div.classList.contains("inert")) div.onclick = () => showEquation(eq, div);
    target.appendChild(div);
  }
}

// dW = A_prevᵀ·dZ recomputed here from the operands the page holds (every row of the batch), on the
// shown rows and columns of dW; compared with the recorded dW.
function checkProduct(p) {
  const A = matrix(p.A), dZ = matrix(p.dZ), dW = matrix(p.dW);
  const full = run.full.length ? run.full[step] : null;
  const n = run.batch;
  const aData = full ? full[p.A] : A.data, zData = full ? full[p.dZ] : dZ.data;
  const aCols = A.cols.length, zCols = dZ.cols.length;
  // dW's rows are A_prev's columns and dW's columns dZ's columns, sampled alike.
  let worst = 0, scale = 0;
  for (let i = 0; i < dW.rows.length; i++) for (let j = 0; j < dW.cols.length; j++) {
    let s = 0;
    for (let r = 0; r < n; r++) s += aData[r * aCols + i] * zData[r * zCols + j];
    const rec = dW.data[i * dW.cols.length + j];
    worst = Math.max(worst, Math.abs(s - rec));
    scale = Math.max(scale, Math.abs(rec));
  }
  const rel = worst / (scale || 1);
  const tol = run.dtype === "float32" ? 1e-4 : 1e-9;
  return { rel, worst, agree: rel <= tol, tol };
}

function updateCheck() {
  const box = $("check");
  box.replaceChildren();
  let all = true;
  for (const p of run.products) {
    const r = checkProduct(p);
    all = all && r.agree;
    const line = document.createElement("p");
    line.className = "product-check " + (r.agree ? "ok" : "bad");
    line.dataset.agree = r.agree;
    line.textContent = `${p.dW} = ${p.A}ᵀ·${p.dZ}, recomputed here in JavaScript: largest difference from the recorded ` +
      `${p.dW} ${r.worst.toExponential(2)} (relative ${r.rel.toExponential(2)}, tolerance ${r.tol}): ` +
      (r.agree ? "agrees" : "DISAGREES");
    box.appendChild(line);
  }
  box.dataset.agree = all;
  const c = run.check;
  if (c.W) {
    const a = c.analytic[step], nu = c.numeric[step];
    const rel = Math.abs(a - nu) / Math.max(Math.abs(a) + Math.abs(nu), 1e-12);
    const line = document.createElement("p");
    line.id = "numeric-check";
    line.className = rel <= c.tolerance ? "ok" : "bad";
    line.textContent = `∂L/∂${c.W}[${c.i}, ${c.j}]: backpropagation ${fmt(a)}, central differences in float64 ` +
      `${fmt(nu)}; relative difference ${rel.toExponential(2)} (tolerance ${c.tolerance}): ` +
      (rel <= c.tolerance ? "agree" : "DISAGREE");
    box.appendChild(line);
  }
  if (step + 1 < nSteps && run.products.length) {
    const p = run.products[0], W0 = matrix(p.W), W1 = matrix(p.W, step + 1), dW = matrix(p.dW);
    let worst = 0;
    for (let k = 0; k < W0.data.length; k++)
      worst = Math.max(worst, Math.abs(W1.data[k] - (W0.data[k] - run.learning_rate * dW.data[k])));
    const line = document.createElement("p");
    line.textContent = `${p.W} at step ${step + 1} = ${p.W} − ${run.learning_rate}·${p.dW} at step ${step}: ` +
      `largest difference ${worst.toExponential(2)} (the numbers are shown rounded)`;
    box.appendChild(line);
  }
}

function curves() {
  const W = 420, H = 170, pad = 34;
  const x = (t) => pad + (nSteps > 1 ? (t * (W - 2 * pad)) / (nSteps - 1) : 0);
  const series = [[run.loss, "#c0392b", "batch loss"], [run.data_loss, "#e67e22", "loss on the data"],
                  [run.metric, "#2c6fbb", run.metric_name + " on the data"]];
  const finite = series.flatMap((s) => s[0]).filter((v) => v !== null && isFinite(v));
  const hi = Math.max(1, ...finite), lo = Math.min(0, ...finite);
  const y = (v) => H - pad - ((v - lo) * (H - 2 * pad)) / (hi - lo || 1);
  let svg = `<svg id="curve-svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`;
  svg += `<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="#999"/>`;
  svg += `<text x="${pad}" y="${H - pad + 14}">0</text><text x="${W - pad - 10}" y="${H - pad + 14}">${nSteps - 1}</text>`;
  svg += `<text x="4" y="${y(hi) + 4}">${hi.toFixed(2)}</text><text x="4" y="${y(lo) + 4}">${lo.toFixed(2)}</text>`;
  series.forEach(([vals, col, label], k) => {
    const pts = vals.map((v, t) => (v === null ? "" : `${x(t)},${y(v)}`)).filter(Boolean).join(" ");
    svg += `<polyline fill="none" stroke="${col}" stroke-width="1.6" points="${pts}"/>`;
    svg += `<text x="${pad + 4 + k * 125}" y="12" fill="${col}" style="fill:${col}">■ ${label}</text>`;
  });
  svg += `<line id="marker" y1="${pad - 8}" y2="${H - pad}" stroke="#333" stroke-dasharray="3 2"/></svg>`;
  $("curves").innerHTML = svg;
}

function setStep(t) {
  step = Math.max(0, Math.min(nSteps - 1, t));
  $("step").value = step;
  $("step-label").textContent = `${step} of ${nSteps - 1}`;
  const m = run.metric[step];
  $("step-loss").textContent = `batch loss ${fmt(run.loss[step])} · ${run.metric_name} ${m === null ? "—" : m.toFixed(3)}`;
  const marker = document.getElementById("marker");
  const W = 420, pad = 34, mx = pad + (nSteps > 1 ? (step * (W - 2 * pad)) / (nSteps - 1) : 0);
  marker.setAttribute("x1", mx); marker.setAttribute("x2", mx);
  document.querySelectorAll(".heatmap").forEach((b) => b.redraw());
  if (selected) $("detail-title").textContent = `${selected.formula}    ${selected.shapes}   (step ${step})`;
  updateCheck();
}

function init() {
  $("summary").textContent = run.summary;
  $("about").textContent = `${nSteps} steps of plain SGD (W ← W − ${run.learning_rate}·dW) on mini-batches of ` +
    `${run.batch} rows of ${run.source}; seed ${run.seed}. Every number is from the real run, recorded by matnet.`;
  $("sampling").textContent = run.sampled.length
    ? `Matrices larger than ${run.max_side}×${run.max_side} are shown as an even sample of rows and columns: ` + run.sampled.join("; ") + "."
    : `Every matrix is shown whole (the page samples rows and columns of matrices over ${run.max_side}).`;
  $("sampling").textContent += ` Page size limit: ${(run.max_bytes / 1048576).toFixed(1)} MiB.`;
  $("metric-name").textContent = run.metric_name;
  equationList($("forward"), run.forward);
  equationList($("backward"), run.backward);
  const share = run.timing.share, med = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
  $("timing").textContent = `The matrix products took ${(100 * share).toFixed(0)}% of a training step's time in this run ` +
    `(forward, loss and backward through the model's layers: median ${(1e3 * med(run.timing.step)).toFixed(3)} ms a step; ` +
    `its products re-run alone on the step's operands: ${(1e3 * med(run.timing.products)).toFixed(3)} ms).`;
  $("table").textContent = run.table;
  curves();
  const slider = $("step");
  slider.max = nSteps - 1;
  slider.oninput = () => setStep(Number(slider.value));
  $("play").onclick = () => {
    if (timer) { clearInterval(timer); timer = null; $("play").textContent = "Play"; return; }
    $("play").textContent = "Pause";
    timer = setInterval(() => setStep(step + 1 < nSteps ? step + 1 : 0), 400);
  };
  setStep(0);
  const first = document.querySelector("#forward .eq:not(.inert)");
  if (first) first.click();
}
init();
