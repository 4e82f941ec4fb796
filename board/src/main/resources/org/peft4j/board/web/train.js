// The Train tab: the form over the key table, its actions, and the live view of the server's job (an EventSource
// on /api/events: a snapshot, then every change).
import uPlot from "/webjars/uplot/1.6.30/dist/uPlot.esm.js";
import { t } from "/i18n.js";
import { $, $$, state, STEP_INCRS, api, clearErrors, showError } from "/common.js";

function fieldInput(f) {
  let el;
  const def = f.default;
  if (f.type === "bool" && def !== null) {
    el = document.createElement("input");
    el.type = "checkbox";
    el.checked = def === true;
  } else if (f.choices || (f.type === "bool")) {
    el = document.createElement("select");
    // a key without a default (unset has its own meaning, e.g. template: the model's) gets an empty choice
    const choices = f.choices ? (def === null && !f.choices.includes("") ? ["", ...f.choices] : f.choices) : ["", "true", "false"];
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

export function renderForm() {
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

export async function loadDatasets() {
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

export function formValues() {
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

export function restoreForm() {
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

export async function preview() {
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

export async function saveArgs() {
  clearErrors();
  try {
    const r = await api("/api/args/save", { values: formValues(), path: $("#config_path").value });
    $("#message").textContent = `${t("saved_to")} ${r.path}`;
  } catch (e) { showError(e); }
}

export async function loadArgs() {
  clearErrors();
  try {
    const r = await api("/api/args/load", { path: $("#config_path").value });
    setFormValues(r.values);
    $("#message").textContent = `${t("loaded_from")} ${$("#config_path").value}`;
  } catch (e) { showError(e); }
}

// Shows the memory estimate of the form's run; returns it (null when the form was refused).
export async function estimate() {
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

export async function previewDataset() {
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
          if (row.label && !label) div.append(t(row.label) + ": ");
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
export async function start() {
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

export async function abort() {
  clearErrors();
  const run = state.job ? state.job.run : $("#f-output_dir").value;
  try { await api("/api/train/abort", { run }); } catch (e) { showError(e); }
}

export async function resume(run) {
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

export function drawLoss() {
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

export function showJob(job, withSeries) {
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

// `onEnded` runs when a job finishes, aborts or fails (the runs and adapters lists change).
export function listen(onEnded) {
  const es = new EventSource("/api/events");
  es.onmessage = m => {
    const e = JSON.parse(m.data);
    if (e.type === "snapshot") showJob(e.current || state.job, !!e.current);
    else if (e.type === "job") {
      const fresh = !state.job || state.job.run !== e.job.run || (state.job.status !== "running" && e.job.status === "running" && e.job.step === 0);
      if (e.job.status === "queued" && state.job && state.job.status === "running") return;
      if (fresh) { e.job.losses = []; e.job.evals = []; e.job.log = []; showJob(e.job, true); } else showJob(Object.assign(state.job, e.job), false);
      if (["finished", "aborted", "failed"].includes(e.job.status)) onEnded();
    } else if (state.job && e.run === state.job.run) {
      if (e.type === "series") { state.losses = e.losses.concat(state.losses.filter(p => p[0] > e.until)); state.evals = e.evals.concat(state.evals.filter(p => p[0] > e.until)); drawLoss(); }
      else if (e.type === "step") { state.losses.push([e.step, e.loss]); drawLoss(); progress(e); }
      else if (e.type === "eval") { state.evals.push([e.step, e.eval_loss]); drawLoss(); }
      else if (e.type === "log") log(e.line);
    }
  };
}
