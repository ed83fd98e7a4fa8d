// One card per requested model: queued → running → its results drawn (by the shape of the results, so a
// new model with a known shape gets a picture without page changes) or its error.

import { h, num } from "./dom.js";
import { chordLane, circleOfFifths, densityChart, jsonView, loudnessChart, pianoRoll, pitchChart, stats, tagBars, tempoChart, valueBars } from "./plots.js";

const isNums = (a) => Array.isArray(a) && a.every((v) => typeof v === "number");

/**
 * The visuals for one model's `results`, plus what it adds to the overview (markers, chords, summary chips).
 * Returns {nodes, wide}. `ov` is the Overview, `summary(label, text)` sets a chip in the overview head.
 */
export function visualsFor(model, r, ov, summary) {
  const nodes = [];
  let wide = false;
  const add = (node, isWide = false) => {
    if (node) nodes.push(node);
    wide ||= isWide && !!node;
  };

  if (typeof r.key === "string" && (r.scale === "major" || r.scale === "minor")) {
    add(circleOfFifths({ key: r.key, scale: r.scale, strength: r.strength ?? r.key_strength, probabilities: r.probabilities }));
    summary(`key:${r.key} ${r.scale}`, `${r.key} ${r.scale}`, "key");
  }
  if (typeof r.bpm === "number") {
    add(stats([["tempo", r.bpm, "BPM"], ["beats", r.beat_count ?? (isNums(r.beats) ? r.beats.length : undefined)], ["confidence", r.confidence || undefined]]));
    summary(`bpm:${model}`, `${num(r.bpm)} BPM`, "bpm");
  }
  if (isNums(r.beats)) {
    ov.setLayer("beats", r.beats);
    add(tempoChart(r.beats), false);
  }
  if (isNums(r.downbeats)) ov.setLayer("downbeats", r.downbeats);
  if (isNums(r.onsets)) {
    ov.setLayer("onsets", r.onsets);
    add(stats([["onsets", r.onset_count ?? r.onsets.length], ["rate", r.onset_rate, "/ s"]]));
    if (r.onsets.length) add(densityChart(r.onsets, ov.duration));
  }
  if (typeof r.integrated_loudness === "number") {
    add(
      stats([
        ["integrated", r.integrated_loudness, "LUFS"],
        ["range (LRA)", r.loudness_range, "LU"],
        ["momentary max", r.momentary_max ?? undefined, "LUFS"],
        ["short-term max", r.short_term_max ?? undefined, "LUFS"],
        ["true peak", r.true_peak ?? undefined, "dBTP"],
      ])
    );
    add(loudnessChart(r), true);
    summary(`lufs:${model}`, `${num(r.integrated_loudness)} LUFS · LRA ${num(r.loudness_range)} LU`, "lufs");
    const hop = r.hop_seconds || 0.1;
    if (Array.isArray(r.momentary)) ov.extend(r.momentary.length * hop);
  }
  if (Array.isArray(r.top) && r.top.length && typeof r.top[0] === "object" && "label" in r.top[0]) {
    add(tagBars(r.top));
    summary(`top:${model}`, `${String(r.top[0].label).replace(/---/g, " › ")}`, "tag");
  }
  if (r.values && typeof r.values === "object" && !Array.isArray(r.values)) add(valueBars(r.values, r.range));
  if (Array.isArray(r.notes) && r.notes.length && typeof r.notes[0] === "object") {
    add(stats([["notes", r.note_count ?? r.notes.length]]));
    add(pianoRoll(r.notes), true);
    ov.extend(Math.max(...r.notes.map((n) => n.end)));
  } else if (Array.isArray(r.notes)) {
    add(h("p", { class: "hint", text: "No notes found." }));
  }
  if (Array.isArray(r.f0_hz)) {
    add(stats([["median f0", r.median_f0_hz ?? undefined, "Hz"], ["voiced", r.voiced_ratio != null ? r.voiced_ratio * 100 : undefined, "%"]]));
    add(pitchChart(r), true);
  }
  if (Array.isArray(r.segments) && r.segments.length && typeof r.segments[0]?.chord === "string") {
    const lane = chordLane(r.segments, ov.duration || undefined);
    add(lane, true);
    ov.setChords?.(r.segments);
  }
  return { nodes, wide };
}

export class Card {
  constructor(model, info) {
    this.model = model;
    this.status = h("span", { class: "pill queued", text: "queued" });
    this.body = h("div", { class: "card-body" }, [h("p", { class: "desc", text: info?.description || "" })]);
    const [name, version] = model.split(":");
    this.root = h("article", { class: "card", "data-model": model, "aria-busy": "true" }, [
      h("header", {}, [h("h3", {}, [name, h("span", { class: "ver", text: `v${version}` })]), this.status]),
      this.body,
    ]);
  }

  running() {
    this.status.className = "pill running";
    this.status.replaceChildren(h("span", { class: "spinner", "aria-hidden": "true" }), "running");
  }

  completed(results, seconds, ov, summary) {
    this.root.setAttribute("aria-busy", "false");
    this.root.classList.add("done");
    this.status.className = "pill done";
    this.status.textContent = `✓ ${seconds.toFixed(1)} s`;
    let shown;
    try {
      shown = visualsFor(this.model, results, ov, summary);
    } catch (err) {
      console.warn(`could not draw ${this.model}`, err); // the JSON below still shows everything
      shown = { nodes: [], wide: false };
    }
    this.root.classList.toggle("wide", shown.wide);
    this.body.replaceChildren(...shown.nodes, jsonView(results, shown.nodes.length === 0));
  }

  failed(message, seconds) {
    this.root.setAttribute("aria-busy", "false");
    this.root.classList.add("error");
    this.status.className = "pill error";
    this.status.textContent = seconds === undefined ? "not run" : `✗ ${seconds.toFixed(1)} s`;
    this.body.replaceChildren(h("p", { class: "error-text", role: "alert", text: message }));
  }
}
