// Tiny DOM helpers: build HTML and SVG elements without innerHTML (so no markup injection from results).

export const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.setAttribute("class", v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of [].concat(children || [])) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/** An HTML element: h("div", {class: "x"}, [children]). */
export function h(tag, attrs, children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Round for SVG coordinates (keeps path strings short). */
export const r1 = (x) => Math.round(x * 10) / 10;

/** "1:05" style time label. */
export function clock(seconds) {
  if (!Number.isFinite(seconds)) return "–";
  const m = Math.floor(seconds / 60);
  const sec = seconds - m * 60;
  return m ? `${m}:${String(Math.floor(sec)).padStart(2, "0")}` : `${sec.toFixed(sec < 10 ? 1 : 0)} s`;
}

/** A number for people: few digits, a real minus sign. */
export function num(x, digits = 3) {
  if (x === null || x === undefined) return "–";
  if (typeof x !== "number") return String(x);
  if (!Number.isFinite(x)) return "–";
  const a = Math.abs(x);
  let t;
  if (Number.isInteger(x)) t = String(x);
  else if (a >= 100) t = x.toFixed(1);
  else if (a >= 1) t = x.toFixed(2);
  else t = x.toPrecision(digits);
  return t.replace("-", "−");
}

/** Nice tick values covering [lo, hi] (about `count` of them). */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Math.round(v / step) * step);
  return out;
}

const NOTE_NAMES = ["C", "C♯", "D", "E♭", "E", "F", "F♯", "G", "A♭", "A", "B♭", "B"];

/** MIDI note number → "A4". */
export function noteName(midi) {
  const m = Math.round(midi);
  return `${NOTE_NAMES[((m % 12) + 12) % 12]}${Math.floor(m / 12) - 1}`;
}

/** Hz → fractional MIDI note number. */
export const hzToMidi = (hz) => 69 + 12 * Math.log2(hz / 440);
