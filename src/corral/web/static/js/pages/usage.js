// Allocation over time: allocated GPUs per queue against the pool's size, allocated vs idle
// per provider, and the simulator's reports when the server has any. Allocated is what the
// scheduler gave out, not what the GPUs measured: corral reads no GPU busy-ness yet (its NVML
// probe checks health only), so the page says so instead of calling it utilization.

import { api } from "../api.js";
import { OTHER, queueColor } from "../colors.js";
import { legend, stackedArea } from "../chart.js";
import { fill, h } from "../dom.js";
import { gpus } from "../format.js";

const WINDOWS = [[900, "15 minutes"], [3600, "1 hour"], [6 * 3600, "6 hours"], [86400, "24 hours"]];
const IDLE = "#b9e4c9", ALLOC = "#4e79a7", UNAVAILABLE = "#d9dce1";

function sum(obj) {
  return Object.values(obj).reduce((a, b) => a + b, 0);
}

function queueChart(points) {
  const names = [...new Set(points.flatMap((p) => Object.keys(p.by_queue)))].sort((a, b) => (a === "") - (b === "") || a.localeCompare(b));
  const layers = names.map((q) => ({ name: q || "other queues", color: q ? queueColor(q) : OTHER, values: points.map((p) => p.by_queue[q] || 0) }));
  const capacity = points.map((p) => sum(p.allocated_by_provider) + sum(p.idle_by_provider) + sum(p.unavailable_by_provider));
  return h("div", { class: "card", dataset: { testid: "chart-queues" } },
    h("h3", {}, "Allocated GPUs by queue"),
    h("p", { class: "sub" }, "The gap between the coloured areas and the dashed line is idle or unavailable capacity."),
    names.length ? null : h("p", { class: "empty" }, "No GPU has been allocated in this window."),
    stackedArea({ times: points.map((p) => p.at), layers, line: { name: "pool GPUs", values: capacity }, label: "allocated GPUs by queue over time" }),
    legend([...layers, { name: "pool GPUs", dashed: true }]));
}

function providerCharts(points) {
  const providers = [...new Set(points.flatMap((p) => Object.keys(p.allocated_by_provider)))].sort();
  return providers.map((prov) => {
    const layers = [
      { name: "allocated", color: ALLOC, values: points.map((p) => p.allocated_by_provider[prov] || 0) },
      { name: "idle", color: IDLE, values: points.map((p) => p.idle_by_provider[prov] || 0) },
      { name: "unavailable", color: UNAVAILABLE, values: points.map((p) => p.unavailable_by_provider[prov] || 0) },
    ];
    const last = points[points.length - 1];
    const total = (last.allocated_by_provider[prov] || 0) + (last.idle_by_provider[prov] || 0) + (last.unavailable_by_provider[prov] || 0);
    return h("div", { class: "card", dataset: { testid: "chart-provider", provider: prov } },
      h("h3", {}, prov, h("span", { class: "sub" }, ` · now ${gpus(last.allocated_by_provider[prov] || 0)} of ${gpus(total)} GPUs allocated`)),
      stackedArea({ times: points.map((p) => p.at), layers, label: `allocated and idle GPUs of ${prov}` }, 150),
      legend(layers));
  });
}

/** Scalar fields, and those one level down as "jct_s.median", in the file's order. */
function flatten(obj) {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    if (typeof v === "number" || typeof v === "string") out.push([k, v]);
    else if (v && typeof v === "object" && !Array.isArray(v)) {
      for (const [k2, v2] of Object.entries(v)) if (typeof v2 === "number") out.push([`${k}.${k2}`, v2]);
    }
  }
  return out;
}

async function imageOf(name) {
  const r = await api(`/v1/dashboard/reports/${name.split("/").map(encodeURIComponent).join("/")}`, { raw: true });
  return URL.createObjectURL(await r.blob());
}

async function reportCard(file, urls) {
  const title = h("h3", { class: "mono" }, file.name);
  if (file.kind === "png") {
    const src = await imageOf(file.name);
    urls.push(src);
    return h("figure", { class: "card report", dataset: { testid: "report" } }, title, h("img", { src, alt: file.name }));
  }
  const body = await api(`/v1/dashboard/reports/${file.name.split("/").map(encodeURIComponent).join("/")}`);
  const flat = body && typeof body === "object" && !Array.isArray(body) ? flatten(body) : [];
  return h("div", { class: "card report", dataset: { testid: "report" } }, title,
    flat.length ? h("dl", { class: "facts" }, flat.slice(0, 24).map(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "number" ? String(Math.round(v * 1000) / 1000) : v)]))
      : h("pre", { class: "spec" }, JSON.stringify(body, null, 2).slice(0, 4000)));
}

export function mount(root, ctx) {
  let windowS = 3600;
  const select = h("select", { id: "window", "aria-label": "time window", onchange: () => { windowS = Number(select.value); drawn = ""; } },
    WINDOWS.map(([v, t]) => h("option", { value: v, selected: v === windowS }, `last ${t}`)));
  const charts = h("div", { class: "charts" });
  const reports = h("div", { class: "reports" });
  const note = h("span", { class: "sub" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "GPU allocation"),
      h("p", { class: "hint", dataset: { testid: "allocation-note" } }, "GPUs allocated to work against idle GPUs over time. ",
        h("strong", {}, "Allocated is not measured use: "), "a GPU counts as allocated while work holds it, ",
        "busy or not (corral does not read GPU busy-ness yet). This server keeps the history since it started; ",
        "for longer history scrape ", h("code", {}, "/metrics"), " with Prometheus (a Grafana board ships in deploy/grafana).")),
    h("div", { class: "filters" }, h("label", {}, "Window", select), note), charts,
    h("h2", {}, "Simulator reports"), reports);
  const urls = [];
  let drawn = "";
  let reportsKey = null;

  async function refreshReports() {
    if (ctx.me.role !== "admin") {
      if (reportsKey === null) fill(reports, h("p", { class: "empty" }, "Simulator reports are shown to admins."));
      reportsKey = "";
      return;
    }
    const files = await api("/v1/dashboard/reports");
    const key = JSON.stringify(files);
    if (key === reportsKey) return;
    reportsKey = key;
    urls.splice(0).forEach((u) => URL.revokeObjectURL(u));
    if (!files.length) {
      fill(reports, h("p", { class: "empty" }, "No simulator reports. Run ", h("code", {}, "corral simulate replay … --json DIR/run.json --plot DIR/run.png"),
        " and start the server with ", h("code", {}, "CORRAL_SIM_REPORTS=DIR"), " to show its plots and figures here."));
      return;
    }
    fill(reports, await Promise.all(files.slice(0, 24).map((f) => reportCard(f, urls))));
  }

  return {
    async refresh() {
      const series = await api("/v1/dashboard/usage", { params: { window_s: windowS } });
      note.textContent = `${series.points.length} samples, one every ${gpus(series.interval_s)} s`;
      const key = JSON.stringify(series.points);
      if (key !== drawn && series.points.length) {
        drawn = key;
        fill(charts, queueChart(series.points), h("h2", {}, "By provider"), h("div", { class: "providers" }, providerCharts(series.points)));
      }
      await refreshReports();
    },
    dispose() { urls.forEach((u) => URL.revokeObjectURL(u)); },
  };
}
