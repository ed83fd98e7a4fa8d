// The result visuals, drawn as SVG (scales with the card, text stays crisp, elements are inspectable):
// circle of fifths, line charts (loudness, pitch, tempo), tag/value bars, piano roll, chord lane, JSON.

import { clock, h, hzToMidi, noteName, num, r1, s, ticks } from "./dom.js";

// ---- circle of fifths ------------------------------------------------------------------------------------

const PC = { C: 0, "C#": 1, Db: 1, D: 2, "D#": 3, Eb: 3, E: 4, F: 5, "F#": 6, Gb: 6, G: 7, "G#": 8, Ab: 8, A: 9, "A#": 10, Bb: 10, B: 11 };
const MAJOR_RING = ["C", "G", "D", "A", "E", "B", "F♯", "D♭", "A♭", "E♭", "B♭", "F"];
const MINOR_RING = ["Am", "Em", "Bm", "F♯m", "C♯m", "G♯m", "E♭m", "B♭m", "Fm", "Cm", "Gm", "Dm"];
const SERVER_NAMES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"];

/** Pitch class of a key name as the server spells it ("C", "F#", "Bb"), or null. */
export function pitchClass(name) {
  const pc = PC[String(name || "").trim()];
  return pc === undefined ? null : pc;
}

/** Position (0..11, clockwise from C at the top) of a key on the circle of fifths. */
function fifthsIndex(pc, scale) {
  const major = scale === "minor" ? (pc + 3) % 12 : pc; // a minor key sits with its relative major
  return (major * 7) % 12; // 7 semitones per step round the circle, and 7·7 ≡ 1 (mod 12)
}

function wedge(cx, cy, r0, r1_, a0, a1) {
  const p = (r, a) => `${r1(cx + r * Math.sin(a))} ${r1(cy - r * Math.cos(a))}`;
  return `M${p(r1_, a0)} A${r1_} ${r1_} 0 0 1 ${p(r1_, a1)} L${p(r0, a1)} A${r0} ${r0} 0 0 0 ${p(r0, a0)} Z`;
}

/** Key on a circle of fifths: majors outside, relative minors inside; optional probabilities shade each key. */
export function circleOfFifths({ key, scale, strength, probabilities }) {
  const pc = pitchClass(key);
  const active = pc === null ? -1 : fifthsIndex(pc, scale);
  const size = 280;
  const c = size / 2;
  const label = pc === null ? "unknown key" : `${key} ${scale}`;
  const svg = s("svg", { viewBox: `0 0 ${size} ${size}`, class: "fifths", role: "img", "aria-label": `Circle of fifths, ${label}` });
  svg.append(s("title", { text: `Circle of fifths: ${label}` }));
  const prob = (i, minor) => {
    if (!probabilities) return null;
    const majorPc = (i * 7) % 12;
    const pcx = minor ? (majorPc + 9) % 12 : majorPc;
    const v = probabilities[`${SERVER_NAMES[pcx]} ${minor ? "minor" : "major"}`];
    return typeof v === "number" ? v : null;
  };
  const maxP = probabilities ? Math.max(...Object.values(probabilities).filter((v) => typeof v === "number"), 1e-9) : 1;
  for (let i = 0; i < 12; i++) {
    const a0 = ((i - 0.5) / 12) * 2 * Math.PI;
    const a1 = ((i + 0.5) / 12) * 2 * Math.PI;
    const mid = (i / 12) * 2 * Math.PI;
    for (const [minor, rin, rout, names] of [
      [false, 86, 134, MAJOR_RING],
      [true, 46, 86, MINOR_RING],
    ]) {
      const isActive = i === active && (scale === "minor") === minor;
      const p = prob(i, minor);
      const g = s("g", { class: `seg ${minor ? "minor" : "major"}${isActive ? " active" : ""}`, "data-key": `${names[i]}${minor ? "" : " major"}` });
      const path = s("path", { d: wedge(c, c, rin, rout, a0, a1) });
      if (p !== null && !isActive) path.style.fillOpacity = String(0.08 + 0.7 * (p / maxP));
      g.append(path);
      const rt = (rin + rout) / 2;
      g.append(s("text", { x: r1(c + rt * Math.sin(mid)), y: r1(c - rt * Math.cos(mid)), "dominant-baseline": "central", "text-anchor": "middle", text: names[i] }));
      if (p !== null) g.append(s("title", { text: `${names[i]}${minor ? "" : " major"}: ${(100 * p).toFixed(1)} %` }));
      svg.append(g);
    }
  }
  const pretty = String(key).replace("#", "♯").replace(/^([A-G])b/, "$1♭");
  svg.append(s("text", { x: c, y: c - 6, class: "center-key", "text-anchor": "middle", text: pc === null ? "?" : `${pretty}${scale === "minor" ? "m" : ""}` }));
  if (typeof strength === "number") {
    svg.append(s("text", { x: c, y: c + 16, class: "center-sub", "text-anchor": "middle", text: `strength ${Math.round(strength * 100)} %` }));
  }
  return svg;
}

/** An axis label: as few decimals as the value needs. */
const tick = (v) => String(Math.round(v * 100) / 100).replace("-", "−");

// ---- line charts -----------------------------------------------------------------------------------------

/**
 * An SVG line chart. series: [{x: [...], y: [...] (null = gap), cls, label}]; x in seconds.
 * opts: {yDomain, yTicks, yFormat, hlines: [{y, label, cls}], band: {lo, hi, label}, height, ariaLabel, xMax}.
 */
export function lineChart(series, opts = {}) {
  const W = opts.width || 640;
  const H = opts.height || 220;
  const m = { l: 48, r: 14, t: 12, b: 26 };
  const xs = series.flatMap((se) => se.x);
  const ys = series.flatMap((se) => se.y).filter((v) => typeof v === "number" && Number.isFinite(v));
  const xMax = opts.xMax || Math.max(...xs, 1e-6);
  let [y0, y1] = opts.yDomain || [Math.min(...ys), Math.max(...ys)];
  if (!(y1 > y0)) [y0, y1] = [y0 - 1, y1 + 1];
  const X = (x) => m.l + (x / xMax) * (W - m.l - m.r);
  const Y = (y) => m.t + (1 - (Math.min(Math.max(y, y0), y1) - y0) / (y1 - y0)) * (H - m.t - m.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: `chart ${opts.cls || ""}`, role: "img", "aria-label": opts.ariaLabel || "chart" });
  if (opts.ariaLabel) svg.append(s("title", { text: opts.ariaLabel }));
  const grid = s("g", { class: "grid" });
  const yt = opts.yTicks || ticks(y0, y1, 4);
  for (const v of yt) {
    grid.append(s("line", { x1: m.l, x2: W - m.r, y1: r1(Y(v)), y2: r1(Y(v)) }));
    grid.append(s("text", { x: m.l - 6, y: r1(Y(v)), "text-anchor": "end", "dominant-baseline": "central", text: (opts.yFormat || tick)(v) }));
  }
  for (const v of ticks(0, xMax, 6)) {
    grid.append(s("text", { x: r1(X(v)), y: H - 8, "text-anchor": "middle", text: clock(v) }));
  }
  svg.append(grid);
  if (opts.band && Number.isFinite(opts.band.lo) && Number.isFinite(opts.band.hi)) {
    const { lo, hi, label } = opts.band;
    svg.append(s("rect", { class: "band", x: m.l, width: W - m.l - m.r, y: r1(Y(hi)), height: Math.max(1, r1(Y(lo) - Y(hi))) }, [s("title", { text: label })]));
    svg.append(s("text", { class: "band-label", x: W - m.r - 4, y: r1(Y(hi)) - 4, "text-anchor": "end", text: label }));
  }
  for (const se of series) {
    let d = "";
    let pen = false;
    const step = Math.max(1, Math.floor(se.x.length / 2000)); // at most ~2000 points per line
    for (let i = 0; i < se.x.length; i += step) {
      const v = se.y[i];
      if (typeof v !== "number" || !Number.isFinite(v)) {
        pen = false;
        continue;
      }
      d += `${pen ? "L" : "M"}${r1(X(se.x[i]))} ${r1(Y(v))}`;
      pen = true;
    }
    svg.append(s("path", { class: `line ${se.cls || ""}`, d: d || "M0 0" }, [s("title", { text: se.label || "" })]));
  }
  for (const hl of opts.hlines || []) {
    if (!Number.isFinite(hl.y)) continue;
    svg.append(s("line", { class: `hline ${hl.cls || ""}`, x1: m.l, x2: W - m.r, y1: r1(Y(hl.y)), y2: r1(Y(hl.y)) }));
    svg.append(s("text", { class: `hline-label ${hl.cls || ""}`, x: m.l + 6, y: r1(Y(hl.y)) - 5, text: hl.label }));
  }
  return svg;
}

/** The 10th–95th percentile of gated short-term loudness: the LRA band (EBU Tech 3342). */
export function lraBand(shortTerm) {
  const vals = shortTerm.filter((v) => typeof v === "number" && v > -70);
  if (vals.length < 2) return null;
  const meanPower = vals.reduce((a, v) => a + 10 ** (v / 10), 0) / vals.length;
  const gate = 10 * Math.log10(meanPower) - 20;
  const kept = vals.filter((v) => v >= gate).sort((a, b) => a - b);
  if (kept.length < 2) return null;
  const q = (p) => {
    const i = p * (kept.length - 1);
    const lo = Math.floor(i);
    return kept[lo] + (kept[Math.min(lo + 1, kept.length - 1)] - kept[lo]) * (i - lo);
  };
  return { lo: q(0.1), hi: q(0.95) };
}

/** Momentary and short-term loudness curves with the integrated level and the LRA band. */
export function loudnessChart(r) {
  const hop = r.hop_seconds || 0.1;
  const series = [];
  const at = (arr) => arr.map((_, i) => (i + 1) * hop);
  if (Array.isArray(r.momentary)) series.push({ x: at(r.momentary), y: r.momentary, cls: "momentary", label: "momentary (400 ms)" });
  if (Array.isArray(r.short_term)) series.push({ x: at(r.short_term), y: r.short_term, cls: "short-term", label: "short-term (3 s)" });
  if (!series.length) return null;
  const vals = series.flatMap((se) => se.y).filter((v) => typeof v === "number" && v > -70);
  const integrated = Number.isFinite(r.integrated_loudness) && r.integrated_loudness > -70 ? [r.integrated_loudness] : [];
  const top = Math.ceil(Math.max(...vals, ...integrated, -60) + 2);
  const bottom = Math.max(-70, Math.floor(Math.min(...vals, ...integrated, 0) - 3));
  const band = Array.isArray(r.short_term) ? lraBand(r.short_term) : null;
  return lineChart(series, {
    yDomain: [Math.min(bottom, top - 12), top],
    cls: "loudness",
    hlines: [{ y: r.integrated_loudness, label: `integrated ${num(r.integrated_loudness)} LUFS`, cls: "integrated" }],
    band: band && { ...band, label: `LRA ${num(r.loudness_range)} LU` },
    ariaLabel: `Loudness over time: integrated ${num(r.integrated_loudness)} LUFS, range ${num(r.loudness_range)} LU`,
  });
}

/** f0 over time on a note scale (unvoiced frames are gaps). */
export function pitchChart(r) {
  const midi = r.f0_hz.map((f) => (typeof f === "number" && f > 0 ? hzToMidi(f) : null));
  const voiced = midi.filter((v) => v !== null);
  if (!voiced.length) return h("p", { class: "hint", text: "No voiced frames." });
  const sorted = [...voiced].sort((a, b) => a - b);
  const lo = Math.floor(sorted[Math.floor(sorted.length * 0.01)] - 2);
  const hi = Math.ceil(sorted[Math.ceil(sorted.length * 0.99) - 1] + 2);
  const yTicks = [];
  const every = hi - lo > 36 ? 12 : hi - lo > 14 ? 4 : 1;
  for (let m = Math.ceil(lo); m <= hi; m++) if (m % every === 0) yTicks.push(m);
  const times = r.times || r.f0_hz.map((_, i) => i * (r.hop_s || 0.01));
  return lineChart([{ x: times, y: midi, cls: "pitch", label: "f0" }], {
    yDomain: [lo, hi],
    yTicks,
    yFormat: noteName,
    cls: "pitch-chart",
    ariaLabel: `Pitch curve, median ${r.median_f0_hz ? num(r.median_f0_hz) + " Hz" : "–"}`,
  });
}

/** Tempo from beat to beat (60 / inter-beat interval), which shows drifts and tempo changes. */
export function tempoChart(beats) {
  if (!Array.isArray(beats) || beats.length < 3) return null;
  const x = [];
  const y = [];
  for (let i = 1; i < beats.length; i++) {
    const d = beats[i] - beats[i - 1];
    if (d > 0) {
      x.push(beats[i]);
      y.push(60 / d);
    }
  }
  const med = [...y].sort((a, b) => a - b)[Math.floor(y.length / 2)];
  return lineChart([{ x, y, cls: "tempo", label: "tempo" }], {
    yDomain: [Math.floor(Math.min(...y, med - 5)), Math.ceil(Math.max(...y, med + 5))],
    width: 360,
    height: 150,
    cls: "tempo-chart",
    ariaLabel: `Beat-to-beat tempo, median ${num(med)} BPM`,
  });
}

/** Onsets per second as bars: where the music is busy. */
export function densityChart(times, duration) {
  const span = Math.max(duration || 0, ...times, 1);
  const bins = new Array(Math.ceil(span)).fill(0);
  for (const t of times) bins[Math.min(bins.length - 1, Math.max(0, Math.floor(t)))]++;
  const W = 360;
  const H = 130;
  const m = { l: 30, r: 8, t: 8, b: 24 };
  const top = Math.max(...bins, 1);
  const bw = (W - m.l - m.r) / bins.length;
  const Y = (v) => m.t + (1 - v / top) * (H - m.t - m.b);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart density", role: "img", "aria-label": `Onsets per second, at most ${top}` });
  svg.append(s("title", { text: "Onsets per second" }));
  const grid = s("g", { class: "grid" });
  for (const v of ticks(0, top, 3)) {
    grid.append(s("line", { x1: m.l, x2: W - m.r, y1: r1(Y(v)), y2: r1(Y(v)) }));
    grid.append(s("text", { x: m.l - 5, y: r1(Y(v)), "text-anchor": "end", "dominant-baseline": "central", text: num(v) }));
  }
  for (const v of ticks(0, span, 4)) grid.append(s("text", { x: r1(m.l + (v / span) * (W - m.l - m.r)), y: H - 8, "text-anchor": "middle", text: clock(v) }));
  svg.append(grid);
  const g = s("g", { class: "bins" });
  bins.forEach((v, i) => {
    if (v) g.append(s("rect", { x: r1(m.l + i * bw + 0.5), width: Math.max(0.5, r1(bw - 1)), y: r1(Y(v)), height: r1(Y(0) - Y(v)), rx: 1 }));
  });
  svg.append(g);
  return svg;
}

// ---- bars ------------------------------------------------------------------------------------------------

/** Horizontal score bars for [{label, score}] (classifier/tagger `top`). */
export function tagBars(top, max = 10) {
  const list = h("ol", { class: "bars", "aria-label": "Top labels" });
  for (const { label, score } of top.slice(0, max)) {
    const fillEl = h("span", { class: "fill" });
    fillEl.style.width = `${Math.max(0, Math.min(1, Number(score) || 0)) * 100}%`;
    list.append(
      h("li", {}, [
        h("span", { class: "bar-label", title: label, text: String(label).replace(/---/g, " › ") }),
        h("span", { class: "bar", role: "presentation" }, [fillEl]),
        h("span", { class: "bar-value", text: `${((Number(score) || 0) * 100).toFixed(1)} %` }),
      ])
    );
  }
  return list;
}

/** Regression outputs on their scale (`values` and optional `range`). */
export function valueBars(values, range) {
  const [lo, hi] = Array.isArray(range) && range.length === 2 ? range : [0, 1];
  const list = h("ul", { class: "bars values" });
  for (const [name, v] of Object.entries(values)) {
    const fillEl = h("span", { class: "fill" });
    fillEl.style.width = `${Math.max(0, Math.min(1, (v - lo) / (hi - lo || 1))) * 100}%`;
    list.append(
      h("li", {}, [
        h("span", { class: "bar-label", text: name }),
        h("span", { class: "bar", role: "presentation" }, [fillEl]),
        h("span", { class: "bar-value", text: `${num(v)} / ${num(hi)}` }),
      ])
    );
  }
  return list;
}

// ---- piano roll ------------------------------------------------------------------------------------------

/** Notes [{start, end, pitch, velocity, name}] as a piano roll: time across, pitch up, velocity as opacity. */
export function pianoRoll(notes) {
  const W = 640;
  const H = 240;
  const m = { l: 40, r: 10, t: 8, b: 24 };
  const lo = Math.min(...notes.map((n) => n.pitch)) - 1;
  const hi = Math.max(...notes.map((n) => n.pitch)) + 1;
  const tMax = Math.max(...notes.map((n) => n.end), 1e-3);
  const X = (t) => m.l + (t / tMax) * (W - m.l - m.r);
  const rowH = (H - m.t - m.b) / (hi - lo + 1);
  const Y = (p) => m.t + (hi - p) * rowH;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart piano-roll", role: "img", "aria-label": `Piano roll of ${notes.length} notes` });
  svg.append(s("title", { text: `Piano roll: ${notes.length} notes from ${noteName(lo + 1)} to ${noteName(hi - 1)}` }));
  const keys = s("g", { class: "keys" });
  for (let p = lo; p <= hi; p++) {
    const black = [1, 3, 6, 8, 10].includes(((p % 12) + 12) % 12);
    keys.append(s("rect", { class: black ? "row black" : "row", x: m.l, y: r1(Y(p)), width: W - m.l - m.r, height: r1(rowH) }));
    if (p % 12 === 0 || hi - lo < 14) keys.append(s("text", { x: m.l - 4, y: r1(Y(p) + rowH / 2), "text-anchor": "end", "dominant-baseline": "central", text: noteName(p) }));
  }
  for (const v of ticks(0, tMax, 6)) keys.append(s("text", { x: r1(X(v)), y: H - 8, "text-anchor": "middle", text: clock(v) }));
  svg.append(keys);
  const g = s("g", { class: "notes" });
  for (const n of notes) {
    const rect = s("rect", { x: r1(X(n.start)), y: r1(Y(n.pitch) + 0.5), width: Math.max(1, r1(X(n.end) - X(n.start))), height: Math.max(1, r1(rowH - 1)), rx: 1.5 });
    rect.style.fillOpacity = String(0.35 + 0.65 * ((n.velocity ?? 100) / 127));
    rect.append(s("title", { text: `${n.name || noteName(n.pitch)} ${num(n.start)}–${num(n.end)} s, velocity ${n.velocity ?? "–"}` }));
    g.append(rect);
  }
  svg.append(g);
  return svg;
}

// ---- chords ----------------------------------------------------------------------------------------------

/** Hue for a chord: its root's place on the circle of fifths, so related chords get related colours. */
function chordHue(chord) {
  const root = /^[A-G][b#]?/.exec(chord || "");
  const pc = root ? pitchClass(root[0]) : null;
  return pc === null ? null : ((pc * 7) % 12) * 30;
}

/** Chord segments [{chord, start, end}] as a lane of coloured blocks. */
export function chordLane(segments, duration) {
  const total = duration || Math.max(...segments.map((sg) => sg.end), 1e-3);
  const lane = h("div", { class: "chords", role: "list", "aria-label": "Chords over time" });
  for (const sg of segments) {
    const hue = chordHue(sg.chord);
    const minor = /m$/.test(sg.chord || "");
    const block = h("span", { class: `chord${hue === null ? " none" : ""}${minor ? " minor" : ""}`, role: "listitem", title: `${sg.chord} ${num(sg.start)}–${num(sg.end)} s${sg.roman ? " (" + sg.roman + ")" : ""}` }, [sg.end - sg.start > total / 60 ? sg.chord : ""]);
    block.style.left = `${(sg.start / total) * 100}%`;
    block.style.width = `${((sg.end - sg.start) / total) * 100}%`;
    if (hue !== null) block.style.setProperty("--hue", String(hue));
    lane.append(block);
  }
  return lane;
}

// ---- numbers and JSON ------------------------------------------------------------------------------------

/** Big numbers: [[label, value, unit]]. */
export function stats(items) {
  return h(
    "dl",
    { class: "stats" },
    items.filter(([, v]) => v !== undefined).map(([label, v, unit]) => h("div", {}, [h("dt", { text: label }), h("dd", {}, [num(v), unit ? h("small", { text: ` ${unit}` }) : null])]))
  );
}

/** Pretty JSON with long arrays cut short, for any result (and every card's "JSON" drawer). */
export function jsonView(value, open = false) {
  const shorten = (v) => {
    if (Array.isArray(v)) return v.length > 24 ? [...v.slice(0, 24).map(shorten), `… ${v.length - 24} more`] : v.map(shorten);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, shorten(x)]));
    return v;
  };
  return h("details", { class: "json", open }, [h("summary", { text: "JSON" }), h("pre", {}, [h("code", { text: JSON.stringify(shorten(value), null, 2) })])]);
}
