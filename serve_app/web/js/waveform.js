// The overview: waveform of the uploaded file (decoded in the browser with WebAudio) on a canvas, with
// beat / downbeat / onset markers as an SVG overlay, a time axis, and a playhead that follows the player.

import { clock, s, ticks } from "./dom.js";
import { chordLane } from "./plots.js";

const PEAK_BUCKETS = 3000;
const AXIS_PX = 20;

/** Decode a File/Blob at a low rate (enough for a picture of the envelope, light on memory) into min/max peaks. */
export async function decodePeaks(blob) {
  const data = await blob.arrayBuffer();
  const ctx = new OfflineAudioContext(1, 1, 11025); // decodeAudioData resamples to the context's rate
  const audio = await ctx.decodeAudioData(data);
  const n = audio.length;
  const chans = [];
  for (let c = 0; c < audio.numberOfChannels; c++) chans.push(audio.getChannelData(c));
  const buckets = Math.min(PEAK_BUCKETS, n);
  const min = new Float32Array(buckets);
  const max = new Float32Array(buckets);
  for (let b = 0; b < buckets; b++) {
    const i0 = Math.floor((b * n) / buckets);
    const i1 = Math.max(i0 + 1, Math.floor(((b + 1) * n) / buckets));
    let lo = 0;
    let hi = 0;
    for (let i = i0; i < i1; i++) {
      let v = 0;
      for (const ch of chans) v += ch[i];
      v /= chans.length;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    min[b] = lo;
    max[b] = hi;
  }
  return { min, max, duration: audio.duration, channels: audio.numberOfChannels };
}

export class Overview {
  constructor({ canvas, markers, playhead, player, note, legend, chordLaneEl }) {
    Object.assign(this, { canvas, markers, playhead, player, note, legend, chordLaneEl });
    this.chords = null;
    this.peaks = null;
    this.duration = 0;
    this.layers = { beats: [], downbeats: [], onsets: [] };
    this.hidden = new Set();
    new ResizeObserver(() => this.draw()).observe(canvas);
    canvas.parentElement.addEventListener("click", (e) => this.seek(e));
    player.addEventListener("play", () => this.follow());
    player.addEventListener("seeked", () => this.movePlayhead());
    player.addEventListener("timeupdate", () => this.movePlayhead());
    for (const box of legend.querySelectorAll("input[data-layer]")) {
      box.addEventListener("change", () => {
        box.checked ? this.hidden.delete(box.dataset.layer) : this.hidden.add(box.dataset.layer);
        this.drawMarkers();
      });
    }
  }

  reset() {
    this.chords = null;
    this.playhead.hidden = true;
    for (const count of this.legend.querySelectorAll("[data-count]")) count.textContent = "";
    for (const lg of this.legend.querySelectorAll(".lg")) lg.classList.remove("present");
    this.peaks = null;
    this.duration = 0;
    this.layers = { beats: [], downbeats: [], onsets: [] };
    this.note.hidden = true;
    this.draw();
  }

  setPeaks(peaks) {
    this.peaks = peaks;
    this.duration = peaks.duration;
    this.draw();
  }

  /** Without decoded audio (URL input) the time span comes from the results. */
  extend(seconds) {
    if (!this.peaks && Number.isFinite(seconds) && seconds > this.duration) {
      this.duration = seconds;
      this.draw();
    }
  }

  setLayer(name, times) {
    if (!Array.isArray(times)) return;
    this.layers[name] = times.filter((t) => typeof t === "number");
    this.extend(Math.max(0, ...this.layers[name]) + 0.5); // the last marker off the edge
    const count = this.legend.querySelector(`[data-count="${name}"]`);
    if (count) count.textContent = `(${this.layers[name].length})`;
    this.legend.querySelector(`.lg.${name}`)?.classList.add("present");
    this.drawMarkers();
  }

  /** Chord segments as a lane under the waveform. */
  setChords(segments) {
    this.chords = segments;
    this.extend(Math.max(0, ...segments.map((sg) => sg.end)));
    this.drawChords();
  }

  drawChords() {
    this.chordLaneEl.hidden = !this.chords;
    if (this.chords && this.duration > 0) this.chordLaneEl.replaceChildren(chordLane(this.chords, this.duration));
  }

  showNote(text) {
    this.note.textContent = text;
    this.note.hidden = !text;
  }

  draw() {
    const { canvas } = this;
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const css = getComputedStyle(canvas);
    const waveH = hgt - AXIS_PX;
    const mid = waveH / 2;
    g.fillStyle = css.getPropertyValue("--axis-bg").trim() || "#0000";
    g.fillRect(0, waveH, w, AXIS_PX);
    if (this.peaks) {
      const { min, max } = this.peaks;
      const grad = g.createLinearGradient(0, 0, 0, waveH);
      grad.addColorStop(0, css.getPropertyValue("--wave-a").trim() || "#6d5dfc");
      grad.addColorStop(0.5, css.getPropertyValue("--wave-b").trim() || "#9b8cff");
      grad.addColorStop(1, css.getPropertyValue("--wave-a").trim() || "#6d5dfc");
      g.fillStyle = grad;
      let peak = 1e-6;
      for (let i = 0; i < max.length; i++) peak = Math.max(peak, max[i], -min[i]);
      const gain = (0.92 * mid) / peak; // normalise so quiet files still show their shape
      const n = max.length;
      for (let x = 0; x < w; x++) {
        const b0 = Math.floor((x / w) * n);
        const b1 = Math.max(b0 + 1, Math.floor(((x + 1) / w) * n));
        let lo = 0;
        let hi = 0;
        for (let b = b0; b < b1 && b < n; b++) {
          if (min[b] < lo) lo = min[b];
          if (max[b] > hi) hi = max[b];
        }
        const top = mid - hi * gain;
        const bottom = mid - lo * gain;
        g.fillRect(x, top, 1, Math.max(1, bottom - top));
      }
    }
    if (this.duration > 0) {
      g.fillStyle = css.getPropertyValue("--muted").trim() || "#888";
      g.font = "11px system-ui, sans-serif";
      g.textBaseline = "middle";
      for (const t of ticks(0, this.duration, Math.max(2, Math.floor(w / 90)))) {
        const x = (t / this.duration) * w;
        g.fillRect(x, waveH, 1, 4);
        g.textAlign = x < 20 ? "left" : x > w - 20 ? "right" : "center";
        g.fillText(clock(t), x, waveH + AXIS_PX / 2 + 2);
      }
    }
    this.canvas.setAttribute("aria-label", this.describe());
    this.drawMarkers();
    this.drawChords();
  }

  describe() {
    const parts = [this.peaks ? `Waveform, ${clock(this.duration)}` : "Timeline"];
    for (const [name, times] of Object.entries(this.layers)) if (times.length) parts.push(`${times.length} ${name}`);
    return parts.join(", ");
  }

  drawMarkers() {
    const svg = this.markers;
    svg.replaceChildren();
    svg.setAttribute("viewBox", "0 0 1000 100");
    svg.setAttribute("preserveAspectRatio", "none");
    if (!(this.duration > 0)) return;
    const X = (t) => Math.round((t / this.duration) * 10000) / 10;
    const layer = (name, y1, y2) => {
      if (this.hidden.has(name)) return;
      const g = s("g", { class: `layer ${name}` });
      for (const t of this.layers[name]) {
        g.append(s("line", { class: name.replace(/s$/, ""), x1: X(t), x2: X(t), y1, y2, "vector-effect": "non-scaling-stroke" }));
      }
      svg.append(g);
    };
    layer("onsets", 78, 100);
    layer("beats", 0, 100);
    layer("downbeats", 0, 100);
    this.canvas.setAttribute("aria-label", this.describe());
  }

  seek(e) {
    if (!this.player.src || !(this.duration > 0)) return;
    const box = this.canvas.getBoundingClientRect();
    this.player.currentTime = Math.max(0, Math.min(1, (e.clientX - box.left) / box.width)) * this.duration;
  }

  movePlayhead() {
    if (!(this.duration > 0) || !this.player.src) return;
    this.playhead.hidden = false;
    this.playhead.style.left = `${(100 * this.player.currentTime) / this.duration}%`;
  }

  follow() {
    const tick = () => {
      this.movePlayhead();
      if (!this.player.paused) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }
}
