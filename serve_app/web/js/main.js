// The analysis page: pick a file (or URL) and models, POST it, draw every model's results as they stream in.

import { Card } from "./cards.js";
import { h } from "./dom.js";
import { analysisEvents } from "./sse.js";
import { decodePeaks, Overview } from "./waveform.js";

const $ = (id) => document.getElementById(id);

const ui = {
  form: $("form"),
  drop: $("drop"),
  file: $("file"),
  fileName: $("file-name"),
  url: $("url"),
  apikey: $("apikey"),
  models: $("models"),
  modelCount: $("model-count"),
  filter: $("model-filter"),
  analyze: $("analyze"),
  stop: $("stop"),
  status: $("status"),
  results: $("results"),
  cards: $("cards"),
  title: $("track-title"),
  summary: $("summary"),
};

const overview = new Overview({
  canvas: $("wave"),
  markers: $("markers"),
  playhead: $("playhead"),
  player: $("player"),
  note: $("wave-note"),
  legend: $("legend"),
  chordLaneEl: $("chord-lane"),
});

let catalogue = []; // GET /v1/models
let chosenFile = null;
let controller = null; // AbortController of the running analysis
let objectUrl = null;

// ---- status line -----------------------------------------------------------------------------------------

function say(text, kind = "") {
  ui.status.textContent = text;
  ui.status.className = `status ${kind}`;
  ui.status.setAttribute("role", kind === "error" ? "alert" : "status");
}

function authHeaders() {
  const key = ui.apikey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    return body.detail || JSON.stringify(body);
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

// ---- the model catalogue ---------------------------------------------------------------------------------

async function loadModels() {
  ui.models.setAttribute("aria-busy", "true");
  let response;
  try {
    response = await fetch("/v1/models", { headers: authHeaders() });
  } catch (err) {
    ui.models.replaceChildren(h("p", { class: "error-text", text: `Cannot reach the server: ${err.message}` }));
    return;
  }
  if (!response.ok) {
    const detail = await errorDetail(response);
    const hint = response.status === 401 ? " Enter the API key above; the list reloads." : "";
    ui.models.replaceChildren(h("p", { class: "error-text", text: `${detail}.${hint}` }));
    if (response.status === 401) $("apikey").closest("details").open = true;
    return;
  }
  catalogue = (await response.json()).models;
  renderModels();
}

function renderModels() {
  const sorted = [...catalogue].sort((a, b) => (b.available !== false) - (a.available !== false) || a.name.localeCompare(b.name) || a.version.localeCompare(b.version));
  ui.models.replaceChildren(
    ...sorted.map((m) => {
      const id = `m-${m.name}-${m.version}`.replace(/[^A-Za-z0-9_-]/g, "_");
      const available = m.available !== false;
      const reason = m.reason || m.unavailable_reason || "";
      const box = h("input", { type: "checkbox", id, value: `${m.name}:${m.version}`, checked: available && m.default, disabled: !available, "data-default": m.default ? "1" : "0" });
      box.addEventListener("change", countModels);
      return h("div", { class: `model${available ? "" : " unavailable"}`, "data-search": `${m.name} ${m.version} ${m.description} ${(m.aliases || []).join(" ")}`.toLowerCase() }, [
        box,
        h("label", { for: id, title: m.description }, [h("span", { class: "mname", text: m.name }), h("span", { class: "ver", text: `v${m.version}` })]),
        available ? null : h("p", { class: "reason", text: reason || "not available on this server" }),
      ]);
    })
  );
  ui.models.setAttribute("aria-busy", "false");
  countModels();
}

function selectedModels() {
  return [...ui.models.querySelectorAll("input:checked")].map((i) => i.value);
}

function countModels() {
  const n = selectedModels().length;
  ui.modelCount.textContent = `${n} selected`;
}

for (const button of document.querySelectorAll("[data-pick]")) {
  button.addEventListener("click", () => {
    for (const box of ui.models.querySelectorAll("input:not(:disabled)")) {
      if (box.closest(".model").hidden) continue;
      box.checked = button.dataset.pick === "all" || (button.dataset.pick === "defaults" && box.dataset.default === "1");
    }
    countModels();
  });
}

ui.filter.addEventListener("input", () => {
  const q = ui.filter.value.trim().toLowerCase();
  for (const row of ui.models.querySelectorAll(".model")) row.hidden = q && !row.dataset.search.includes(q);
});
ui.apikey.addEventListener("change", loadModels);

// ---- choosing the audio ----------------------------------------------------------------------------------

function chooseFile(file) {
  if (!file) return;
  chosenFile = file;
  ui.url.value = "";
  ui.fileName.textContent = `${file.name} · ${(file.size / 2 ** 20).toFixed(1)} MB`;
  ui.drop.classList.add("has-file");
}

ui.drop.addEventListener("click", () => ui.file.click());
ui.drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    ui.file.click();
  }
});
ui.file.addEventListener("change", () => chooseFile(ui.file.files[0]));
for (const type of ["dragenter", "dragover"]) {
  ui.drop.addEventListener(type, (e) => {
    e.preventDefault();
    ui.drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) ui.drop.addEventListener(type, () => ui.drop.classList.remove("over"));
ui.drop.addEventListener("drop", (e) => {
  e.preventDefault();
  chooseFile(e.dataTransfer.files[0]);
});
ui.url.addEventListener("input", () => {
  if (ui.url.value.trim()) {
    chosenFile = null;
    ui.file.value = "";
    ui.fileName.textContent = "";
    ui.drop.classList.remove("has-file");
  }
});

// ---- running an analysis ---------------------------------------------------------------------------------

const chips = new Map();

function summary(id, text, kind) {
  let chip = chips.get(id);
  if (!chip) {
    chip = h("span", { class: `chip ${kind}` });
    chips.set(id, chip);
    ui.summary.append(chip);
  }
  chip.textContent = text;
}

function prepareOverview(file, url) {
  chips.clear();
  ui.summary.replaceChildren();
  overview.reset();
  ui.results.hidden = false;
  ui.title.textContent = file ? file.name : decodeURIComponent(url.split("/").pop() || url);
  const player = $("player");
  if (objectUrl) URL.revokeObjectURL(objectUrl);
  objectUrl = null;
  player.hidden = !file;
  player.removeAttribute("src");
  if (file) {
    objectUrl = URL.createObjectURL(file);
    player.src = objectUrl;
    decodePeaks(file)
      .then((peaks) => overview.setPeaks(peaks))
      .catch(() => overview.showNote("This browser cannot decode the file for a waveform; the server can still analyse it."));
  } else {
    overview.showNote("Waveform is drawn for uploaded files; beats and onsets still show on the timeline.");
  }
}

async function analyze(event) {
  event.preventDefault();
  const url = ui.url.value.trim();
  const models = selectedModels();
  if (!chosenFile && !url) return say("Choose an audio file or paste a URL first.", "error");
  if (url && !/^https?:\/\//i.test(url)) return say("The URL must start with http:// or https://", "error");
  if (!models.length) return say("Tick at least one model.", "error");

  controller = new AbortController();
  ui.analyze.disabled = true;
  ui.stop.hidden = false;
  const headers = { ...authHeaders() };
  if (url) headers["audio-url"] = encodeURIComponent(url);
  else headers["filename"] = encodeURIComponent(chosenFile.name);
  const info = Object.fromEntries(catalogue.map((m) => [`${m.name}:${m.version}`, m]));
  const cards = new Map(models.map((m) => [m, new Card(m, info[m])]));
  ui.cards.replaceChildren(...[...cards.values()].map((c) => c.root));
  prepareOverview(chosenFile, url);
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  say(url ? "Sending the URL…" : `Uploading ${chosenFile.name}…`);
  let errors = 0;
  let done = 0;
  try {
    const response = await fetch(`/v1/analysis/stream?models=${encodeURIComponent(models.join(","))}`, {
      method: "POST",
      headers: url ? headers : { ...headers, "Content-Type": "application/octet-stream" },
      body: url ? null : chosenFile,
      signal: controller.signal,
    });
    if (!response.ok) {
      const detail = await errorDetail(response);
      for (const card of cards.values()) card.failed(`Not run: HTTP ${response.status}`);
      if (response.status === 401) $("apikey").closest("details").open = true;
      return say(`HTTP ${response.status}: ${detail}`, "error");
    }
    for await (const ev of analysisEvents(response, controller.signal)) {
      if (ev.status === "started") {
        say(`Analysing with ${ev.total_models} model${ev.total_models === 1 ? "" : "s"}…`);
        for (const card of cards.values()) card.running();
      } else if (ev.status === "completed") {
        const { model_name, model_version, results } = ev.result;
        cardFor(cards, model_name, model_version, info).completed(results, elapsed(), overview, summary);
        done++;
      } else if (ev.status === "error" && ev.model_name) {
        cardFor(cards, ev.model_name, ev.model_version, info).failed(ev.error, elapsed());
        errors++;
      } else if (ev.status === "error") {
        for (const card of cards.values()) card.failed("Not run: the audio could not be read.");
        say(ev.error, "error");
        errors = -1;
      } else if (ev.status === "finished") {
        if (errors >= 0) {
          const tail = errors ? `, ${errors} failed` : "";
          say(`Done: ${done} of ${ev.total_models} model${ev.total_models === 1 ? "" : "s"} in ${elapsed().toFixed(1)} s${tail}.`, errors ? "warn" : "ok");
        }
      }
    }
  } catch (err) {
    if (err.name === "AbortError") say("Stopped.", "warn");
    else say(`The connection failed: ${err.message}`, "error");
    for (const card of cards.values()) if (card.root.getAttribute("aria-busy") === "true") card.failed("Stopped before this model finished.");
  } finally {
    ui.analyze.disabled = false;
    ui.stop.hidden = true;
    controller = null;
  }
}

/** The card of name:version; the server answers with canonical names, the page asked with catalogue names. */
function cardFor(cards, name, version, info) {
  const key = `${name}:${version}`;
  if (!cards.has(key)) {
    const card = new Card(key, info[key]);
    cards.set(key, card);
    ui.cards.append(card.root);
  }
  return cards.get(key);
}

ui.form.addEventListener("submit", analyze);
ui.stop.addEventListener("click", () => controller?.abort());
loadModels();
