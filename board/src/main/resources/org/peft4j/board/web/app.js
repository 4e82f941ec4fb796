// The board's page: tabs over the JSON API of org.peft4j.board.Board. Training state comes from the server (an
// EventSource on /api/events), so a reload or a second tab shows the running job as it is.
import uPlot from "/webjars/uplot/1.6.30/dist/uPlot.esm.js";
import { t, setLanguage, language } from "/i18n.js";

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
// x-axis ticks at whole steps
const STEP_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
const state = { form: null, info: null, job: null, losses: [], evals: [], chart: null, runsChart: null, runs: [], streams: [] };

// ---- API

async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) { const e = new Error(data.error || res.statusText); e.field = data.field; throw e; }
  return data;
}

function clearErrors() {
  for (const el of $$("[data-err-for]")) el.textContent = "";
  for (const el of $$(".invalid")) el.classList.remove("invalid");
  $("#form-error").textContent = "";
  $("#message").textContent = "";
}

// Shows an error next to its field when the server named one, else under the buttons.
function showError(e, fallback = "#form-error") {
  const slot = e.field && $(`[data-err-for="${e.field}"]`);
  if (slot) {
    slot.textContent = e.message;
    slot.closest(".field")?.classList.add("invalid");
    slot.closest("details")?.setAttribute("open", "");
  } else $(fallback).textContent = e.message;
}

// ---- Train form

function fieldInput(f) {
  let el;
  const def = f.default;
  if (f.type === "bool" && def !== null) {
    el = document.createElement("input");
    el.type = "checkbox";
    el.checked = def === true;
  } else if (f.choices || (f.type === "bool")) {
    el = document.createElement("select");
    const choices = f.choices || ["", "true", "false"];
    for (const c of choices) el.add(new Option(c, c));
    el.value = def === null ? "" : String(def);
  } else {
    el = document.createElement("input");
    el.value = def === null ? "" : String(def);
    if (f.type === "int" || f.type === "float") el.inputMode = "decimal";
  }
  el.id = "f-" + f.name;
  el.name = f.name;
  if (f.support === "unsupported") el.disabled = true;
  return el;
}

function renderForm() {
  const root = $("#train-form");
  root.innerHTML = "";
  for (const g of state.form.groups) {
    const d = document.createElement("details");
    d.className = "group";
    d.dataset.group = g.name;
    if (["model", "train", "output"].includes(g.name)) d.open = true;
    const s = document.createElement("summary");
    s.dataset.i18n = "group." + g.name;
    s.textContent = t("group." + g.name);
    d.append(s);
    const grid = document.createElement("div");
    grid.className = "fields";
    for (const f of g.fields) {
      const wrap = document.createElement("div");
      wrap.className = "field" + (f.support === "unsupported" ? " unsupported" : "") + (["dataset", "compare_prompts", "default_system"].includes(f.name) ? " wide" : "");
      const name = document.createElement("span");
      name.className = "name";
      name.append(`${f.name} (${f.type}`);
      if (f.default !== null && f.default !== undefined) {
        const d = document.createElement("span");
        d.dataset.i18n = "default";
        d.textContent = t("default");
        name.append(", ", d, ` ${f.default}`);
      }
      name.append(")");
      const help = document.createElement("span");
      help.className = "help";
      help.textContent = f.help;
      help.title = f.help;
      const err = document.createElement("div");
      err.className = "err";
      err.dataset.errFor = f.name;
      wrap.append(name, fieldInput(f), help, err);
      if (f.name === "dataset") wrap.append(datasetPicker());
      grid.append(wrap);
    }
    d.append(grid);
    root.append(d);
  }
  $("#f-model_name_or_path").setAttribute("list", "model-list");
  const list = document.createElement("datalist");
  list.id = "model-list";
  for (const m of state.info.models) list.append(new Option(m, m));
  root.append(list);
  root.addEventListener("change", rememberForm);
  $("#f-dataset_dir").addEventListener("change", loadDatasets);
  $("#f-model_name_or_path").addEventListener("change", defaultOutputDir);
  defaultOutputDir();
}

function datasetPicker() {
  const box = document.createElement("div");
  box.className = "actions";
  const sel = document.createElement("select");
  sel.id = "dataset-pick";
  sel.multiple = true;
  sel.size = 3;
  sel.addEventListener("change", () => { $("#f-dataset").value = [...sel.selectedOptions].map(o => o.value).join(","); });
  const btn = document.createElement("button");
  btn.id = "btn-preview-data";
  btn.dataset.i18n = "btn.preview_data";
  btn.textContent = t("btn.preview_data");
  btn.addEventListener("click", previewDataset);
  box.append(sel, btn);
  return box;
}

async function loadDatasets() {
  try {
    const sets = await api("/api/datasets?dataset_dir=" + encodeURIComponent($("#f-dataset_dir").value));
    for (const sel of [$("#dataset-pick"), ...$$(".dataset-select")]) {
      const keep = sel.multiple ? null : sel.value;
      sel.innerHTML = sel.multiple ? "" : "<option value=''></option>";
      for (const s of sets) sel.add(new Option(`${s.name}${s.ranking ? " (ranking)" : ""}`, s.name));
      if (keep) sel.value = keep;
    }
    const chosen = $("#f-dataset").value.split(",").map(x => x.trim());
    for (const o of $("#dataset-pick").options) o.selected = chosen.includes(o.value);
  } catch (e) { showError(e); }
}

function defaultOutputDir() {
  const out = $("#f-output_dir");
  if (out.value && !out.dataset.auto) return;
  const d = new Date(), p = n => String(n).padStart(2, "0");
  const model = ($("#f-model_name_or_path").value || "model").split("/").pop();
  out.value = `${model}/${$("#f-finetuning_type").value}/train_${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}-${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
  out.dataset.auto = "1";
  out.addEventListener("input", () => delete out.dataset.auto, { once: true });
}

function formValues() {
  const values = {};
  for (const g of state.form.groups) for (const f of g.fields) {
    const el = $("#f-" + f.name);
    if (el.disabled) continue;
    const v = el.type === "checkbox" ? String(el.checked) : el.value.trim();
    if (v !== "") values[f.name] = v;
  }
  return values;
}

// The form is kept in the browser across reloads (the job itself is the server's).
function rememberForm() { localStorage.setItem("peft4j.form", JSON.stringify(formValues())); }

function restoreForm() {
  try {
    const saved = JSON.parse(localStorage.getItem("peft4j.form") || "null");
    if (saved) setFormValues(saved);
  } catch (e) { localStorage.removeItem("peft4j.form"); }
}

function setFormValues(values) {
  for (const [k, v] of Object.entries(values)) {
    const el = $("#f-" + k);
    if (!el) continue;
    if (el.type === "checkbox") el.checked = v === "true";
    else el.value = v;
  }
  delete $("#f-output_dir").dataset.auto;
}

async function preview() {
  clearErrors();
  try {
    const p = await api("/api/preview", { values: formValues() });
    const box = $("#preview");
    box.textContent = p.yaml + "\n" + p.command + (p.notes.length ? "\n\n" + p.notes.map(n => "note: " + n).join("\n") : "");
    box.dataset.yaml = p.yaml;
    box.dataset.resolved = p.resolved;
    box.classList.remove("hidden");
  } catch (e) { showError(e); }
}

async function saveArgs() {
  clearErrors();
  try {
    const r = await api("/api/args/save", { values: formValues(), path: $("#config_path").value });
    $("#message").textContent = `${t("saved_to")} ${r.path}`;
  } catch (e) { showError(e); }
}

async function loadArgs() {
  clearErrors();
  try {
    const r = await api("/api/args/load", { path: $("#config_path").value });
    setFormValues(r.values);
    $("#message").textContent = `${t("loaded_from")} ${$("#config_path").value}`;
  } catch (e) { showError(e); }
}

// Shows the memory estimate of the form's run; returns it (null when the form was refused).
async function estimate() {
  clearErrors();
  const box = $("#estimate");
  try {
    const e = await api("/api/estimate", { values: formValues() });
    const mib = b => (b / 1048576).toFixed(1) + " MiB";
    box.textContent = `${e.table}\n` + (e.warning ? "⚠ " + e.warning : `✓ ${mib(e.total)} ${t("fits")} ${mib(e.heap_limit)}`);
    box.classList.toggle("warn", !e.fits);
    box.classList.remove("hidden");
    return e;
  } catch (e) { showError(e); return null; }
}

async function previewDataset() {
  clearErrors();
  const box = $("#dataset-preview");
  try {
    const p = await api("/api/datasets/preview", { values: formValues(), rows: 3 });
    box.innerHTML = "";
    for (const set of p.datasets) {
      const h = document.createElement("h3");
      h.textContent = `${set.name} · ${t("template")} ${p.template}`;
      box.append(h);
      for (const row of set.rows) {
        for (const [label, turns] of [["", row.turns], [t("rejected"), row.rejected]]) {
          if (!turns) continue;
          const div = document.createElement("div");
          div.className = "turn";
          if (label) div.append(label + ": ");
          for (const turn of turns) {
            for (const part of ["prompt", "response"]) {
              if (!turn[part + "_tokens"]) continue;
              const rowEl = document.createElement("div");
              rowEl.className = "part-row";
              const c = document.createElement("span");
              c.className = "count";
              c.textContent = `${t(part)} · ${turn[part + "_tokens"]} ${t("tokens")}`;
              const s = document.createElement("span");
              s.className = "part " + part;
              s.textContent = turn[part];
              rowEl.append(c, s);
              div.append(rowEl);
            }
          }
          box.append(div);
        }
      }
    }
    box.classList.remove("hidden");
  } catch (e) { showError(e); }
}

// Start shows the memory estimate first; a run that does not fit starts only on a second click.
async function start() {
  rememberForm();
  const values = JSON.stringify(formValues());
  const e = await estimate();
  if (!e) return;
  if (!e.fits && state.confirmed !== values) {
    state.confirmed = values;
    $("#message").textContent = t("confirm_start");
    return;
  }
  try {
    const j = await api("/api/train/start", { values: formValues() });
    $("#message").textContent = `${t("started")}: ${j.run}`;
  } catch (e) { showError(e); }
}

async function abort() {
  clearErrors();
  const run = state.job ? state.job.run : $("#f-output_dir").value;
  try { await api("/api/train/abort", { run }); } catch (e) { showError(e); }
}

async function resume(run) {
  clearErrors();
  try {
    const j = await api("/api/train/resume", { run: run || (state.job ? state.job.run : $("#f-output_dir").value) });
    $("#message").textContent = `${t("started")}: ${j.run}`;
  } catch (e) { showError(e); }
}

// ---- live job view

function lossData(losses, evals) {
  const steps = [...new Set([...losses.map(p => p[0]), ...evals.map(p => p[0])])].sort((a, b) => a - b);
  const l = new Map(losses.map(p => [p[0], p[1]])), e = new Map(evals.map(p => [p[0], p[1]]));
  return [steps, steps.map(s => l.has(s) ? l.get(s) : null), steps.map(s => e.has(s) ? e.get(s) : null)];
}

function drawLoss() {
  const el = $("#loss-chart");
  const data = lossData(state.losses, state.evals);
  if (!state.chart) {
    state.chart = new uPlot({
      width: el.clientWidth - 10 || 600, height: 290,
      scales: { x: { time: false } }, axes: [{ incrs: STEP_INCRS }, {}],
      series: [{ label: t("step") }, { label: t("loss"), stroke: "#2f6fde", spanGaps: true }, { label: t("eval_loss"), stroke: "#e07b00", spanGaps: true, points: { size: 7 } }],
    }, data, el);
  } else state.chart.setData(data);
  el.dataset.points = String(state.losses.length);
  el.dataset.first = String(data[0].length ? data[0][0] : "");
}

function showJob(job, withSeries) {
  state.job = job;
  $("#job-run").textContent = job ? job.run : "—";
  const badge = $("#job-status");
  badge.textContent = job ? t("status." + job.status) : "";
  badge.className = "badge " + (job ? job.status : "");
  badge.dataset.status = job ? job.status : "";
  if (!job) return;
  if (withSeries) {
    state.losses = job.losses || [];
    state.evals = job.evals || [];
    $("#log").textContent = (job.log || []).join("\n") + "\n";
    drawLoss();
  }
  progress(job);
}

function progress(p) {
  $("#progress").max = Math.max(1, p.total || 1);
  $("#progress").value = p.step || 0;
  const eta = p.eta_seconds === undefined ? "" : ` · ${t("eta")} ${Math.round(p.eta_seconds)} s`;
  const loss = p.loss === undefined ? "" : ` · ${t("loss")} ${p.loss.toFixed(4)}`;
  $("#progress-text").textContent = `${t("step")} ${p.step || 0}/${p.total || 0}${loss} · ${Math.round(p.tokens_per_second || 0)} ${t("tokens_per_second")}${eta}`;
  $("#progress-text").dataset.step = String(p.step || 0);
}

function log(line) {
  const el = $("#log");
  el.textContent += line + "\n";
  el.scrollTop = el.scrollHeight;
}

function listen() {
  const es = new EventSource("/api/events");
  es.onmessage = m => {
    const e = JSON.parse(m.data);
    if (e.type === "snapshot") showJob(e.current || state.job, !!e.current);
    else if (e.type === "job") {
      const fresh = !state.job || state.job.run !== e.job.run || (state.job.status !== "running" && e.job.status === "running" && e.job.step === 0);
      if (e.job.status === "queued" && state.job && state.job.status === "running") return;
      if (fresh) { e.job.losses = []; e.job.evals = []; e.job.log = []; showJob(e.job, true); } else showJob(Object.assign(state.job, e.job), false);
      if (["finished", "aborted", "failed"].includes(e.job.status)) { loadRuns(); loadAdapters(); }
    } else if (state.job && e.run === state.job.run) {
      if (e.type === "series") { state.losses = e.losses.concat(state.losses.filter(p => p[0] > e.until)); state.evals = e.evals.concat(state.evals.filter(p => p[0] > e.until)); drawLoss(); }
      else if (e.type === "step") { state.losses.push([e.step, e.loss]); drawLoss(); progress(e); }
      else if (e.type === "eval") { state.evals.push([e.step, e.eval_loss]); drawLoss(); }
      else if (e.type === "log") log(e.line);
    }
  };
}

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
    const r = await api("/api/export", {
      model: $("#ex-model").value, adapter: $("#ex-adapter").value, export_dir: $("#ex-dir").value,
      export_format: $("#ex-format").value, export_dtype: $("#ex-dtype").value, export_size: $("#ex-size").value,
    });
    box.textContent = `${t("exported")} ${r.export_dir}\n` + r.files.join("\n");
    box.classList.remove("hidden");
    await refreshModels();   // the export is a model the other tabs can pick now
  } catch (e) { $("#ex-error").textContent = e.message; }
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
  $("#chat-input").addEventListener("keydown", e => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); send(); } });
  drawLoss();
  listen();
  showTab(location.hash.slice(1) || "train");
  document.body.dataset.ready = "1";
}

init().catch(e => { document.body.prepend(Object.assign(document.createElement("pre"), { className: "err", textContent: "board failed to start: " + e.message })); });
