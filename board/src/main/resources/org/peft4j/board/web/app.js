// The board's page: tabs over the JSON API of org.peft4j.board.Board. Training state comes from the server (see
// train.js), so a reload or a second tab shows the running job as it is.
import uPlot from "/webjars/uplot/1.6.30/dist/uPlot.esm.js";
import { t, setLanguage, language } from "/i18n.js";
import { $, $$, state, STEP_INCRS, api } from "/common.js";
import { renderForm, restoreForm, loadDatasets, preview, saveArgs, loadArgs, estimate, start, abort, resume, drawLoss, showJob, listen } from "/train.js";

// ---- Runs

async function loadRuns() {
  state.runs = await api("/api/runs");
  const body = $("#runs-table tbody");
  body.innerHTML = "";
  const colors = ["#2f6fde", "#e07b00", "#2e8b57", "#c2413b", "#7b4fd0", "#0f9bb0", "#a0522d", "#555"];
  state.runs.forEach((r, i) => {
    const tr = document.createElement("tr");
    tr.dataset.run = r.run;
    const cfg = JSON.stringify(r.config, null, 1);
    tr.innerHTML = `<td><input type="checkbox" class="run-pick" ${i < 8 ? "checked" : ""}></td><td class="run-name"></td>
      <td><span class="badge ${r.status}">${t("status." + r.status)}</span><div class="err"></div></td>
      <td>${new Date(r.updated).toLocaleString()}</td><td><details><summary>${t("show")}</summary><pre></pre></details></td><td class="acts"></td>`;
    $(".run-name", tr).textContent = r.run;
    $(".run-name", tr).style.borderLeft = `4px solid ${colors[i % colors.length]}`;
    $(".err", tr).textContent = r.error || "";
    $("pre", tr).textContent = cfg;
    const acts = $(".acts", tr);
    if (r.status === "running" || r.status === "queued") {
      const b = document.createElement("button");
      b.textContent = t("btn.abort");
      b.className = "danger";
      b.onclick = () => api("/api/train/abort", { run: r.run }).catch(e => alert(e.message));
      acts.append(b);
    } else {
      const b = document.createElement("button");
      b.textContent = t("btn.resume");
      b.onclick = () => resume(r.run);
      acts.append(b);
    }
    body.append(tr);
  });
  for (const c of $$(".run-pick")) c.addEventListener("change", drawRuns);
  drawRuns();
}

function drawRuns() {
  const el = $("#runs-chart");
  const picked = state.runs.filter((r, i) => $$(".run-pick")[i]?.checked && r.losses.length);
  const steps = [...new Set(picked.flatMap(r => r.losses.map(p => p[0])))].sort((a, b) => a - b);
  const colors = ["#2f6fde", "#e07b00", "#2e8b57", "#c2413b", "#7b4fd0", "#0f9bb0", "#a0522d", "#555"];
  const data = [steps, ...picked.map(r => { const m = new Map(r.losses); return steps.map(s => m.has(s) ? m.get(s) : null); })];
  const series = [{ label: t("step") }, ...picked.map(r => ({ label: r.run, stroke: colors[state.runs.indexOf(r) % colors.length], spanGaps: true }))];
  if (state.runsChart) state.runsChart.destroy();
  el.innerHTML = "";
  state.runsChart = new uPlot({ width: el.clientWidth - 10 || 800, height: 300, scales: { x: { time: false } }, axes: [{ incrs: STEP_INCRS }, {}], series }, data, el);
}

// ---- shared selects

async function loadAdapters() {
  const runs = await api("/api/runs");
  for (const sel of $$(".adapter-select")) {
    const keep = [...sel.selectedOptions].map(o => o.value);
    sel.innerHTML = "";
    if (sel.classList.contains("with-none")) sel.add(new Option(t("none"), ""));
    for (const r of runs) if (r.has_adapter) sel.add(new Option(r.run, r.run));
    for (const o of sel.options) o.selected = keep.includes(o.value);
  }
}

async function refreshModels() {
  state.info = await api("/api/info");
  for (const sel of $$(".model-select")) {
    const keep = sel.value;
    sel.innerHTML = "";
    for (const m of state.info.models) sel.add(new Option(m, m));
    sel.value = keep;
  }
  const list = $("#model-list");
  list.innerHTML = "";
  for (const m of state.info.models) list.append(new Option(m, m));
}

function fillSelects() {
  for (const sel of $$(".model-select")) {
    for (const m of state.info.models) sel.add(new Option(m, m));
    sel.value = state.info.default_model || state.info.models[0];
  }
  const templates = state.form.groups.flatMap(g => g.fields).find(f => f.name === "template").choices;
  for (const sel of $$(".template-select")) {
    if (sel.id === "chat-template") sel.add(new Option("(model / plain)", ""));
    for (const c of templates) sel.add(new Option(c, c));
    sel.value = "default";
  }
  for (const sel of $$(".text-select")) for (const f of state.info.texts) sel.add(new Option(f, f));
}

// ---- Evaluate

async function evaluate() {
  $("#ev-error").textContent = "";
  const body = {
    model: $("#ev-model").value, adapters: [...$("#ev-adapters").selectedOptions].map(o => o.value), dataset: $("#ev-dataset").value,
    dataset_dir: $("#f-dataset_dir").value, template: $("#ev-template").value, cutoff_len: $("#ev-cutoff").value,
    max_samples: $("#ev-max-samples").value, text: $("#ev-text").value,
  };
  try {
    const r = await api("/api/evaluate", body);
    const table = $("#ev-table");
    table.innerHTML = "";
    const head = table.insertRow();
    for (const h of [t("data"), ...r.models]) { const th = document.createElement("th"); th.textContent = h; head.append(th); }
    const bars = $("#ev-chart");
    bars.innerHTML = "";
    // bar length on a log scale: perplexities of learned and unseen text differ by orders of magnitude
    const max = Math.log1p(Math.max(...r.rows.flatMap(row => row.results.map(x => x.perplexity))));
    for (const row of r.rows) {
      const tr = table.insertRow();
      tr.insertCell().textContent = row.data;
      row.results.forEach((x, i) => {
        tr.insertCell().textContent = `${x.loss.toFixed(4)} (${t("perplexity")} ${x.perplexity.toFixed(2)}) · ${x.tokens} ${t("tokens")}`;
        const bar = document.createElement("div");
        bar.className = "bar";
        bar.innerHTML = `<span></span><div></div>`;
        bar.firstChild.textContent = `${row.data} · ${r.models[i]} · ${t("perplexity")} ${x.perplexity.toFixed(2)}`;
        bar.lastChild.style.width = `${Math.max(1, 100 * Math.log1p(x.perplexity) / max)}%`;
        bars.append(bar);
      });
    }
    table.classList.remove("hidden");
  } catch (e) { $("#ev-error").textContent = e.message; }
}

// ---- Chat

const histories = [[], [], []];

function columnTarget(i) {
  if (i === 0) return $("#chat-base").checked ? { adapter: "" } : null;
  const a = $("#chat-adapter-" + i).value;
  return a ? { adapter: a } : null;
}

function addMessage(col, role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $(`.column[data-col="${col}"] .conv`).append(div);
  return div;
}

// One column's answer: a POST whose response is server-sent events, read from the body stream.
async function ask(col, target, text) {
  const messages = [...histories[col], { role: "user", content: text }];
  addMessage(col, "user", text);
  const out = addMessage(col, "assistant", "");
  const ctl = new AbortController();
  state.streams.push(ctl);
  const body = { model: $("#chat-model").value, adapter: target.adapter, template: $("#chat-template").value, system: $("#chat-system").value, messages };
  for (const k of ["temperature", "top_p", "top_k", "repetition_penalty", "max_new_tokens"]) body[k] = $("#chat-" + k).value;
  try {
    const res = await fetch("/api/chat", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: ctl.signal });
    if (!res.ok) { const e = await res.json(); out.remove(); $("#chat-error").textContent = e.error; return; }
    const reader = res.body.getReader(), dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (!frame.startsWith("data: ")) continue;
        const e = JSON.parse(frame.slice(6));
        if (e.text !== undefined) out.textContent += e.text;
        if (e.done) out.dataset.done = e.finish_reason;
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") $("#chat-error").textContent = e.message;
    out.dataset.done = "stopped";
  }
  histories[col] = [...messages, { role: "assistant", content: out.textContent }];
}

async function send() {
  $("#chat-error").textContent = "";
  const text = $("#chat-input").value.trim();
  if (!text) return;
  $("#chat-input").value = "";
  const jobs = [];
  for (let i = 0; i < 3; i++) { const target = columnTarget(i); if (target) jobs.push(ask(i, target, text)); }
  await Promise.all(jobs);
  state.streams = [];
}

function stopChat() { for (const c of state.streams) c.abort(); state.streams = []; }

function clearChat() {
  stopChat();
  for (let i = 0; i < 3; i++) histories[i] = [];
  for (const c of $$(".conv")) c.innerHTML = "";
}

// ---- Export

async function doExport() {
  $("#ex-error").textContent = "";
  const box = $("#ex-result");
  try {
    const format = $("#ex-format").value;
    const body = { model: $("#ex-model").value, adapter: $("#ex-adapter").value, export_dir: $("#ex-dir").value, export_format: format };
    if (format === "hf") Object.assign(body, { export_dtype: $("#ex-dtype").value, export_size: $("#ex-size").value });
    if (format === "gguf") body.export_quant = $("#ex-quant").value;
    const r = await api("/api/export", body);
    box.textContent = `${t("exported")} ${r.export_dir}\n` + r.files.join("\n");
    box.classList.remove("hidden");
    await refreshModels();   // the export is a model the other tabs can pick now
  } catch (e) { $("#ex-error").textContent = e.message; }
}

// Only the settings of the chosen export format are shown (and sent).
function exportFields() {
  const f = $("#ex-format").value;
  for (const id of ["#ex-dtype", "#ex-size"]) $(id).closest("label").classList.toggle("hidden", f !== "hf");
  $("#ex-quant").closest("label").classList.toggle("hidden", f !== "gguf");
}

// ---- start-up

function showTab(name) {
  for (const b of $$("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of $$(".tab")) s.classList.toggle("active", s.id === "tab-" + name);
  location.hash = name;
  if (name === "runs") loadRuns();
  if (name === "train" && state.chart) state.chart.setSize({ width: $("#loss-chart").clientWidth - 10, height: 290 });
}

async function init() {
  setLanguage(language());
  $("#lang").value = language();
  $("#lang").addEventListener("change", e => {
    setLanguage(e.target.value);
    if (state.job) showJob(state.job, false);
    // uPlot's legend is drawn once: draw the chart again with the new labels
    state.chart.destroy();
    state.chart = null;
    $("#loss-chart").innerHTML = "";
    drawLoss();
    if (state.runs.length) loadRuns();
  });
  [state.info, state.form] = await Promise.all([api("/api/info"), api("/api/form")]);
  renderForm();
  restoreForm();
  fillSelects();
  setLanguage(language());
  await loadDatasets();
  await loadAdapters();
  for (const b of $$("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("#btn-preview").onclick = preview;
  $("#btn-save").onclick = saveArgs;
  $("#btn-load").onclick = loadArgs;
  $("#btn-estimate").onclick = estimate;
  $("#btn-start").onclick = start;
  $("#btn-abort").onclick = abort;
  $("#btn-resume").onclick = () => resume();
  $("#btn-runs-refresh").onclick = loadRuns;
  $("#btn-evaluate").onclick = evaluate;
  $("#btn-send").onclick = send;
  $("#btn-stop").onclick = stopChat;
  $("#btn-clear").onclick = clearChat;
  $("#btn-export").onclick = doExport;
  $("#ex-format").addEventListener("change", exportFields);
  exportFields();
  $("#chat-input").addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
  drawLoss();
  listen(() => { loadRuns(); loadAdapters(); });
  showTab(location.hash.slice(1) || "train");
  document.body.dataset.ready = "1";
}

init().catch(e => { document.body.prepend(Object.assign(document.createElement("pre"), { className: "err", textContent: "board failed to start: " + e.message })); });
