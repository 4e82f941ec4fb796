// The web board end to end in Debian's chromium, driven by playwright-core (BoardBrowserTest starts the board and
// runs this). Usage: node board-e2e.mjs BASE_URL OUT_DIR STEPS. Writes screenshots of each tab and preview.yaml into
// OUT_DIR; exits non-zero on a failed check or on any console error in the page.
import { chromium } from "playwright-core";
import { writeFileSync } from "node:fs";

const [base, out, stepsArg] = process.argv.slice(2);
const steps = Number(stepsArg || 40);
const errors = [];
let expected400 = 0;   // a deliberately bad form value: the browser logs its 400 reply as a console error
const step = msg => console.log(`[e2e ${new Date().toISOString().slice(11, 19)}] ${msg}`);
function check(ok, msg) { if (!ok) throw new Error("check failed: " + msg); }

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("console", m => {
    if (m.type() !== "error") return;
    if (expected400 > 0 && m.text().includes("status of 400")) expected400--;
    else errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", e => errors.push(`page error: ${e.message}`));
  page.setDefaultTimeout(60_000);
  const ready = async () => page.waitForSelector("body[data-ready='1']");
  const shot = async name => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
  const tab = async name => { await page.click(`#tabs button[data-tab='${name}']`); await page.waitForSelector(`#tab-${name}.active`); };
  const points = () => page.$eval("#loss-chart", el => Number(el.dataset.points || 0));

  step("open the board");
  await page.goto(base);
  await ready();

  step("fill a run of the bundled model");
  await page.$$eval("details.group", ds => ds.forEach(d => { d.open = true; }));
  await page.selectOption("#dataset-pick", ["identity_en"]);
  check(await page.inputValue("#f-dataset") === "identity_en", "the dataset picker fills the dataset field");
  const fill = { cutoff_len: "128", max_steps: String(steps), learning_rate: "abc", lora_rank: "16", lora_alpha: "32", per_device_train_batch_size: "4",
    logging_steps: "5", save_steps: "10", warmup_ratio: "0.05", output_dir: "e2e/identity" };
  for (const [k, v] of Object.entries(fill)) await page.fill(`#f-${k}`, v);
  await page.selectOption("#f-lr_scheduler_type", "cosine");
  await page.selectOption("#f-template", "default");   // the template the chat below asks with
  await page.check("#f-overwrite_output_dir");
  expected400 = 1;
  await page.click("#btn-preview");
  await page.waitForSelector("[data-err-for='learning_rate']:not(:empty)");
  check((await page.textContent("[data-err-for='learning_rate']")).includes("'learning_rate' must be a number, got 'abc'"), "a bad value is shown on its field");
  check(expected400 === 0, "the bad value got a 400");
  await page.fill("#f-learning_rate", "0.01");

  step("preview the command");
  await page.click("#btn-preview");
  await page.waitForSelector("#preview:not(.hidden)");
  const yaml = await page.$eval("#preview", el => el.dataset.yaml);
  const command = await page.textContent("#preview");
  check(command.includes("./peft4j train --model_name_or_path"), "the preview shows the command line");
  check(await page.textContent("[data-err-for='learning_rate']") === "", "the field error is cleared");
  writeFileSync(`${out}/preview.yaml`, yaml);
  writeFileSync(`${out}/preview-resolved.json`, await page.$eval("#preview", el => el.dataset.resolved));

  step("estimate memory and preview the dataset");
  await page.click("#btn-estimate");
  await page.waitForSelector("#estimate:not(.hidden)");
  check((await page.textContent("#estimate")).includes("total (peak, predicted)"), "the estimate table is shown");
  await page.click("#btn-preview-data");
  await page.waitForSelector("#dataset-preview .turn .part.response");
  check((await page.textContent("#dataset-preview")).includes("Tiny"), "the dataset preview shows the rows");
  await shot("train-form");
  await page.locator("#dataset-preview").screenshot({ path: `${out}/train-dataset-preview.png` });
  await page.locator("#estimate").screenshot({ path: `${out}/train-estimate.png` });

  step("start, wait for the loss chart, abort");
  await page.click("#btn-start");
  await page.waitForSelector("#job-status[data-status='running']");
  await page.waitForFunction(() => Number(document.querySelector("#loss-chart").dataset.points || 0) >= 12, null, { timeout: 90_000 });
  await page.click("#btn-abort");
  await page.waitForSelector("#job-status[data-status='aborted']", { timeout: 60_000 });
  const abortedAt = Number(await page.$eval("#progress-text", el => el.dataset.step));
  check(abortedAt >= 10 && abortedAt < steps, `aborted mid-run at step ${abortedAt}`);
  await shot("train-aborted");

  step("resume, reload mid-run");
  await page.click("#btn-resume");
  await page.waitForFunction(() => document.querySelector("#log").textContent.includes("resumed at step"), null, { timeout: 60_000 });
  await page.waitForFunction(n => Number(document.querySelector("#progress-text").dataset.step) >= n, abortedAt + 3, { timeout: 60_000 });
  await page.reload();
  await ready();
  // running, or already finished when the abort came late (a few steps before the end: the resumed run can end
  // before the reload has loaded the page)
  await page.waitForSelector("#job-status[data-status='running'], #job-status[data-status='finished']");
  check(await points() > 0, "after a reload the chart shows the run's curve so far");
  const first = await page.$eval("#loss-chart", el => Number(el.dataset.first));
  check(first <= 5, `after a reload the chart starts before the resume (at step ${first})`);
  check(await page.inputValue("#f-learning_rate") === "0.01", "after a reload the form keeps its values");
  check((await page.textContent("#log")).includes("resumed at step"), "after a reload the log tail is back");
  await shot("train-running");
  await page.waitForSelector("#job-status[data-status='finished']", { timeout: 120_000 });
  await shot("train-finished");

  step("runs");
  await tab("runs");
  await page.waitForSelector("#runs-table tr[data-run='e2e/identity'] .badge.finished");
  await page.waitForSelector("#runs-chart .uplot");
  await shot("runs");

  step("chat with the adapter");
  await tab("chat");
  await page.selectOption("#chat-template", "default");
  await page.selectOption("#chat-adapter-1", "e2e/identity");
  await page.fill("#chat-input", "Who are you?");
  await page.click("#btn-send");
  await page.waitForSelector(".column[data-col='1'] .msg.assistant[data-done]");
  await page.waitForSelector(".column[data-col='0'] .msg.assistant[data-done]");
  const answer = await page.textContent(".column[data-col='1'] .msg.assistant");
  step(`the adapter answers: ${answer}`);
  check(/I am Tiny/.test(answer), "the adapter has learned its identity");
  await shot("chat");

  step("evaluate");
  await tab("evaluate");
  await page.selectOption("#ev-adapters", ["e2e/identity"]);
  await page.selectOption("#ev-dataset", "identity_en");
  await page.fill("#ev-cutoff", "128");
  await page.selectOption("#ev-text", "general_stories.txt");
  await page.click("#btn-evaluate");
  await page.waitForSelector("#ev-table:not(.hidden)");
  check((await page.$$("#ev-chart .bar")).length === 4, "two data sets x (base, adapter) bars");
  await shot("evaluate");

  step("export a merged folder");
  await tab("export");
  check(!(await page.isVisible("#ex-quant")), "only the chosen format's settings are shown");
  await page.selectOption("#ex-adapter", "e2e/identity");
  await page.fill("#ex-dir", "e2e/merged");
  await page.click("#btn-export");
  await page.waitForSelector("#ex-result:not(.hidden)");
  check((await page.textContent("#ex-result")).includes("config.json"), "the merged folder is listed");
  await page.waitForFunction(() => [...document.querySelector("#chat-model").options].some(o => o.value === "e2e/merged"));
  await shot("export");

  step("Chinese");
  await page.selectOption("#lang", "zh");
  await tab("train");
  check(await page.textContent("#tabs button[data-tab='train']") === "训练", "the interface switches to Chinese");
  await shot("train-zh");
  await page.selectOption("#lang", "en");
} finally {
  await browser.close();
}
if (errors.length) { console.error(errors.join("\n")); process.exit(1); }
step("ok");
