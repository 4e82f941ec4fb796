// What every tab shares: DOM helpers, the page's state and the JSON API with its error display.
export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
// x-axis ticks at whole steps
export const STEP_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000];
export const state = { form: null, info: null, job: null, losses: [], evals: [], chart: null, runsChart: null, runs: [], streams: [] };

export async function api(path, body) {
  const init = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, init);
  const data = await res.json();
  if (!res.ok) { const e = new Error(data.error || res.statusText); e.field = data.field; throw e; }
  return data;
}

export function clearErrors() {
  for (const el of $$("[data-err-for]")) el.textContent = "";
  for (const el of $$(".invalid")) el.classList.remove("invalid");
  $("#form-error").textContent = "";
  $("#message").textContent = "";
}

// Shows an error next to its field when the server named one, else under the buttons.
export function showError(e, fallback = "#form-error") {
  const slot = e.field && $(`[data-err-for="${e.field}"]`);
  if (slot) {
    slot.textContent = e.message;
    slot.closest(".field")?.classList.add("invalid");
    slot.closest("details")?.setAttribute("open", "");
  } else $(fallback).textContent = e.message;
}
