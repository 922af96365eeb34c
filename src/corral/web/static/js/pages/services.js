// Every live service (#/services): its endpoint, replicas ready / desired, its traffic now at
// the gateway (requests/s, p50 / p99 latency, errors over the last minute), what it has cost,
// and charts of its traffic over the window. One request per refresh:
// GET /v1/dashboard/services (corral.web.services_page).

import { api } from "../api.js";
import { legend, stackedArea } from "../chart.js";
import { fill, h } from "../dom.js";

const WINDOWS = [[900, "15 minutes"], [3600, "1 hour"], [6 * 3600, "6 hours"], [86400, "24 hours"]];
const OK = "#4e79a7", ERR = "#e15759", P50 = "#59a14f";

function num(x, digits = 1) {
  if (x === null || x === undefined) return "–";
  return Number(x).toFixed(digits).replace(/\.0+$/, "");
}

function ms(x) {
  return x === null || x === undefined ? "–" : `${num(x, x < 10 ? 1 : 0)} ms`;
}

function endpointOf(path) {
  return `${location.origin}${path}`;
}

function row(s) {
  const t = s.traffic;
  return h("tr", { dataset: { testid: "service-row", service: s.id, state: s.state } },
    h("td", {}, h("a", { href: `#/services/${encodeURIComponent(s.id)}` }, s.name),
      h("div", { class: "sub mono" }, s.id)),
    h("td", {}, h("span", { class: `badge state ${s.state}` }, s.state)),
    h("td", { class: "mono" }, h("a", { href: endpointOf(s.endpoint), dataset: { testid: "service-endpoint" } }, s.endpoint),
      h("div", { class: "sub" }, s.auth)),
    h("td", { dataset: { testid: "service-replicas" } }, `${s.ready}/${s.desired}`,
      h("div", { class: "sub" }, s.autoscaled ? `autoscaled ${s.min_replicas}–${s.max_replicas}` : `${s.min_replicas}–${s.max_replicas}`)),
    h("td", { dataset: { testid: "service-rps" } }, t ? num(t.requests_per_s, 2) : "–"),
    h("td", { dataset: { testid: "service-p50" } }, t ? ms(t.p50_ms) : "–"),
    h("td", { dataset: { testid: "service-p99" } }, t ? ms(t.p99_ms) : "–"),
    h("td", { dataset: { testid: "service-errors" } }, t ? `${t.errors} (${num(t.errors_per_s, 2)}/s)` : "–"),
    h("td", { dataset: { testid: "service-cost" } }, s.cost, h("div", { class: "sub" }, `${num(s.replica_hours, 3)} replica-h`)));
}

function charts(s) {
  const pts = s.series;
  const head = h("h3", {}, s.name, h("span", { class: "sub mono" }, ` · ${s.id}`));
  if (pts.length < 1) {
    return h("div", { class: "card", dataset: { testid: "service-charts", service: s.id } }, head,
      h("p", { class: "empty" }, "No traffic sampled yet: the gateway's counters are read every few seconds."));
  }
  const times = pts.map((p) => p.at);
  const load = [
    { name: "requests/s (ok)", color: OK, values: pts.map((p) => Math.max(0, p.requests_per_s - p.errors_per_s)) },
    { name: "errors/s", color: ERR, values: pts.map((p) => p.errors_per_s) },
  ];
  const latency = [{ name: "p50 ms", color: P50, values: pts.map((p) => p.p50_ms ?? 0) }];
  const p99 = { name: "p99 ms", values: pts.map((p) => p.p99_ms ?? 0) };
  return h("div", { class: "card", dataset: { testid: "service-charts", service: s.id } }, head,
    h("div", { class: "chart-pair" },
      h("div", { dataset: { testid: "chart-requests" } }, h("p", { class: "sub" }, "Requests per second"),
        stackedArea({ times, layers: load, label: `requests per second of ${s.name}` }, 150), legend(load)),
      h("div", { dataset: { testid: "chart-latency" } }, h("p", { class: "sub" }, "Latency (whole response), ms"),
        stackedArea({ times, layers: latency, line: p99, label: `latency of ${s.name}` }, 150),
        legend([...latency, { name: "p99 ms", dashed: true }]))));
}

export function mount(root) {
  let windowS = 900;
  let last = "";
  const picker = h("select", { "aria-label": "window", dataset: { testid: "services-window" } },
    WINDOWS.map(([v, label]) => h("option", { value: String(v) }, label)));
  picker.addEventListener("change", () => { windowS = Number(picker.value); last = ""; refresh(); });
  const note = h("p", { class: "sub" });
  const table = h("div", { class: "card" });
  const chartBox = h("section", {});
  fill(root, h("div", { class: "page-head" }, h("h1", {}, "Services"), picker), note,
    h("section", {}, table), chartBox);

  async function refresh() {
    const v = await api(`/v1/dashboard/services?window_s=${windowS}`);
    const seen = JSON.stringify(v);
    if (seen === last) return; // redraw only on change
    last = seen;
    fill(note, v.sampled ? `Traffic at this server's gateway; numbers over the last ${num(v.recent_s, 0)} s.`
      : "This server's gateway has recorded no traffic yet (a standby routes nothing).");
    if (!v.services.length) {
      fill(table, h("p", { class: "empty", dataset: { testid: "no-services" } }, "No service runs in your queues."));
      fill(chartBox);
      return;
    }
    fill(table, h("table", { class: "grid", dataset: { testid: "services" } },
      h("thead", {}, h("tr", {}, ["Service", "State", "Endpoint", "Ready/desired", "Requests/s", "p50", "p99", "Errors", "Cost"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, v.services.map(row))));
    fill(chartBox, h("h2", {}, "Traffic"), v.services.map(charts));
  }

  return { refresh, dispose() {} };
}
