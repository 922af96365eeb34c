// Small SVG charts drawn here (no chart library): stacked areas over time, with an optional
// dashed reference line (pool capacity), and stacked bars (a day's total per queue), with time
// and value axes and a hover readout. A chart is drawn at the pixel width of its box (so text
// keeps its size) and redrawn when the box resizes.

import { fill, h, s } from "./dom.js";
import { gpus } from "./format.js";

const PAD = { l: 40, r: 12, t: 10, b: 24 };
const live = new Set(); // resize observers of charts still on screen

/** A step that makes about four round ticks: 0, 5, 10, 15 for a top of 12. */
function tickStep(top) {
  if (top <= 0) return 1;
  const raw = top / 4;
  const p = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((m) => m >= raw);
}

function timeLabel(t, span) {
  const opts = span < 600 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" } : { hour: "2-digit", minute: "2-digit" };
  return new Date(t * 1000).toLocaleTimeString([], opts);
}

function draw(box, width, height, { times, layers, line, label, fmt = gpus, timeFmt = null }) {
  const tl = timeFmt || timeLabel;
  const n = times.length;
  const t0 = times[0], t1 = n > 1 ? times[n - 1] : times[0] + 1;
  const tops = times.map((_, i) => layers.reduce((a, l) => a + (l.values[i] || 0), 0));
  const step = tickStep(Math.max(...tops, ...(line ? line.values : [0]), 1));
  const yMax = Math.ceil(Math.max(...tops, ...(line ? line.values : [0]), 1) / step) * step;
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0 || 1)) * (width - PAD.l - PAD.r);
  const y = (v) => height - PAD.b - (v / yMax) * (height - PAD.t - PAD.b);
  const xs = n > 1 ? times.map(x) : [x(t0), width - PAD.r];
  const at = (arr, i) => (n > 1 ? arr[i] : arr[0]);
  const base = new Array(xs.length).fill(0);
  const paths = layers.map((layer) => {
    const lower = base.slice();
    const upper = xs.map((_, i) => lower[i] + (at(layer.values, i) || 0));
    upper.forEach((v, i) => { base[i] = v; });
    const d = [...xs.map((px, i) => `${i ? "L" : "M"}${px.toFixed(1)},${y(upper[i]).toFixed(1)}`),
      ...xs.map((px, i) => [px, lower[i]]).reverse().map(([px, v]) => `L${px.toFixed(1)},${y(v).toFixed(1)}`), "Z"].join("");
    return s("path", { d, fill: layer.color, class: "area" }, s("title", {}, layer.name));
  });
  const grid = [];
  for (let v = 0; v <= yMax + 1e-9; v += step) {
    grid.push(s("line", { x1: PAD.l, x2: width - PAD.r, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: PAD.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmt(v)));
  }
  const ticks = Math.max(2, Math.min(6, Math.floor(width / 120)));
  for (let k = 0; k <= ticks; k++) {
    const t = t0 + ((t1 - t0) * k) / ticks;
    grid.push(s("text", { x: x(t), y: height - 6, class: "axis", "text-anchor": k === 0 ? "start" : k === ticks ? "end" : "middle" }, tl(t, t1 - t0)));
  }
  const ref = line ? s("path", {
    d: xs.map((px, i) => `${i ? "L" : "M"}${px.toFixed(1)},${y(at(line.values, i)).toFixed(1)}`).join(""),
    class: "refline",
  }, s("title", {}, line.name)) : null;
  const cursor = s("line", { y1: PAD.t, y2: height - PAD.b, class: "cursor", visibility: "hidden" });
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label }, grid, paths, ref, cursor);
  const readout = h("div", { class: "readout" }, "Hover the chart for values.");
  svg.addEventListener("mousemove", (ev) => {
    const px = ev.clientX - svg.getBoundingClientRect().left;
    let i = 0;
    for (let k = 0; k < xs.length; k++) if (Math.abs(xs[k] - px) < Math.abs(xs[i] - px)) i = k;
    cursor.setAttribute("x1", xs[i]); cursor.setAttribute("x2", xs[i]); cursor.setAttribute("visibility", "visible");
    const parts = layers.map((l) => `${l.name} ${fmt(at(l.values, i) || 0)}`);
    if (line) parts.push(`${line.name} ${fmt(at(line.values, i))}`);
    readout.textContent = `${tl(at(times, i), 0)} · ${parts.join(" · ")}`;
  });
  fill(box, svg, readout);
}

/**
 * A stacked-area chart. times: seconds, ascending; layers: [{name, color, values}] stacked
 * bottom-up; line: optional {name, values}, dashed on top; fmt: a value's text (GPUs by
 * default), timeFmt: a time's (clock time by default). Returns the chart's box.
 */
export function stackedArea(spec, height = 220) {
  return observed((box, width) => draw(box, width, height, spec));
}

function drawBars(box, width, height, { times, layers, label, fmt, timeFmt, floor }) {
  const n = times.length;
  const tops = times.map((_, i) => layers.reduce((a, l) => a + (l.values[i] || 0), 0));
  const step = tickStep(Math.max(...tops, floor));
  const yMax = Math.ceil(Math.max(...tops, floor) / step) * step;
  const band = (width - PAD.l - PAD.r) / Math.max(n, 1);
  const y = (v) => height - PAD.b - (v / yMax) * (height - PAD.t - PAD.b);
  const base = new Array(n).fill(0);
  // one group per layer, its figures on the group: what a test compares with the API
  const groups = layers.map((layer) => s("g", { fill: layer.color, class: "bars", "data-layer": layer.name, "data-values": layer.values.join(",") },
    times.map((t, i) => {
      const v = layer.values[i] || 0;
      const lower = base[i];
      base[i] += v;
      return v > 0 ? s("rect", { x: PAD.l + i * band + band * 0.15, width: band * 0.7, y: y(base[i]), height: Math.max(y(lower) - y(base[i]), 1), class: "bar" },
        s("title", {}, `${layer.name} ${timeFmt(t)}: ${fmt(v)}`)) : null;
    })));
  const grid = [];
  for (let v = 0; v <= yMax + 1e-12; v += step) {
    grid.push(s("line", { x1: PAD.l, x2: width - PAD.r, y1: y(v), y2: y(v), class: "gridline" }),
      s("text", { x: PAD.l - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, fmt(v)));
  }
  const every = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(width / 70))));
  times.forEach((t, i) => {
    if ((n - 1 - i) % every === 0) grid.push(s("text", { x: PAD.l + (i + 0.5) * band, y: height - 6, class: "axis", "text-anchor": "middle" }, timeFmt(t)));
  });
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label }, grid, groups);
  const readout = h("div", { class: "readout" }, "Hover the chart for values.");
  svg.addEventListener("mousemove", (ev) => {
    const i = Math.min(n - 1, Math.max(0, Math.floor((ev.clientX - svg.getBoundingClientRect().left - PAD.l) / band)));
    readout.textContent = `${timeFmt(times[i])} · ${layers.map((l) => `${l.name} ${fmt(l.values[i] || 0)}`).join(" · ")}`;
  });
  fill(box, svg, readout);
}

/** The box of a chart drawn by `paint(box, width)` at its box's pixel width, again when it
 * resizes (observers of boxes replaced by a newer drawing are let go). */
function observed(paint) {
  for (const ro of live) if (ro.drawn && !ro.box.isConnected) { ro.disconnect(); live.delete(ro); }
  const box = h("div", { class: "chartbox" });
  let drawnWidth = 0;
  const ro = new ResizeObserver(() => {
    const width = Math.floor(box.clientWidth);
    if (width > 0 && width !== drawnWidth) { drawnWidth = width; ro.drawn = true; paint(box, width); }
  });
  ro.box = box;
  ro.observe(box);
  live.add(ro);
  return box;
}

/**
 * Stacked bars, one per time (a day's total): times ascending; layers [{name, color, values}]
 * stacked bottom-up; fmt a value's text, timeFmt a time's; floor the least top of the value
 * axis (so small figures are not drawn against an axis of 0..1). Returns the chart's box.
 */
export function stackedBars({ floor = 0.01, ...spec }, height = 200) {
  return observed((box, width) => drawBars(box, width, height, { floor, ...spec }));
}

export function legend(items) {
  return h("div", { class: "legend" }, items.map(({ name, color, dashed }) =>
    h("span", { class: "chip" }, h("i", { class: dashed ? "markkey capacity" : "", style: dashed ? {} : { background: color } }), name)));
}
