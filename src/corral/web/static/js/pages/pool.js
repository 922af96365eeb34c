// Pool: every node a row of GPU cells, grouped by provider; a cell is filled by the queues
// that hold the GPU (a 0.25 share fills a quarter); a GPU held by work the caller may see that its
// host measures under the server's cut-off (10% busy by default) is outlined (hover: utilisation,
// memory, the sample's age). Filters by provider, region and
// GPU model.
// Drawn from summaries (/v1/dashboard/pool/page): the server filters, pages (PAGE nodes at a
// time, `?pool_page=N` before the # to change it) and sums each provider's group, so a
// 10,000-node pool costs one page of nodes, not every node.

import { api } from "../api.js";
import { OTHER, queueColor } from "../colors.js";
import { fill, h } from "../dom.js";
import { gpus } from "../format.js";

const PAGE = Number(new URLSearchParams(location.search).get("pool_page")) || 100;
const FILTERS = [["provider", "Provider", "all providers"], ["region", "Region", "all regions"], ["gpu_model", "GPU model", "all GPU models"]];

function shareText(s) {
  const who = s.queue === null ? "another queue" : `${s.queue}${s.workload_id ? ` (${s.workload_id})` : ""}`;
  return `${gpus(s.gpus)} GPU · ${who}`;
}

// Held but barely used: the server flags each cell (device.idle_held) by its own cut-off
// (page.idle_below, `corral up --gpu-idle-below`), for work of queues the caller may see only.
function measuredText(d) {
  if (d.utilization === null || d.utilization === undefined) return "use not measured (no sample from its host)";
  const gib = (b) => (b / 2 ** 30).toFixed(1);
  const text = `measured: ${Math.round(d.utilization * 100)}% busy · ${gib(d.memory_used_bytes)} / ${gib(d.memory_total_bytes)} GiB (${Math.round(d.use_age_s)} s ago)`;
  // a sample older than the hold says nothing of the holder's use (corral.control.device_use)
  return d.before_hold === true ? `${text}; no sample since this hold began` : text;
}

function cell(node, device) {
  const used = device.shares.reduce((a, s) => a + s.gpus, 0);
  const lines = [`${node.id} · GPU ${device.index}`, ...device.shares.map(shareText)];
  if (used < 0.999) lines.push(`${gpus(1 - used)} GPU idle`);
  lines.push(measuredText(device));
  const idleHeld = device.idle_held === true;
  const target = device.shares.find((s) => s.workload_id);
  const el = h("div", {
    class: `cell${used >= 0.999 ? " full" : used > 0 ? " part" : ""}${target ? " link" : ""}${idleHeld ? " idle-held" : ""}`,
    title: lines.join("\n"), role: "img", "aria-label": lines.join("; "),
    dataset: { testid: "gpu", node: node.id, index: device.index, used: gpus(used), busy: device.utilization == null ? "" : String(Math.round(device.utilization * 100)) },
  }, device.shares.map((s) => h("span", {
    class: `seg${s.queue === null ? " other" : ""}`,
    dataset: { queue: s.queue ?? "" },
    style: { width: `${Math.min(s.gpus, 1) * 100}%`, backgroundColor: s.queue === null ? OTHER : queueColor(s.queue) },
  })));
  if (target) el.addEventListener("click", () => { location.hash = `#/workloads/${encodeURIComponent(target.workload_id)}`; });
  return el;
}

function badges(node) {
  const out = [];
  if (node.cordoned) out.push(h("span", { class: "badge cordoned", title: "no new work lands here; running work stays", dataset: { testid: "badge", badge: "cordoned" } }, "cordoned"));
  if (node.health !== "healthy") out.push(h("span", { class: `badge ${node.health}`, title: `health: ${node.health}`, dataset: { testid: "badge", badge: node.health } }, node.health));
  if (node.capacity_kind === "spot") out.push(h("span", { class: "badge spot", title: "spot capacity: may be reclaimed by the provider", dataset: { testid: "badge", badge: "spot" } }, "spot"));
  return out;
}

function nodeRow(node) {
  const state = node.cordoned ? " cordoned" : node.health !== "healthy" ? ` ${node.health}` : "";
  return h("div", { class: `node-row${state}`, dataset: { testid: "node", node: node.id } },
    h("div", { class: "node-name" },
      h("span", { class: "mono" }, node.id),
      h("span", { class: "sub" }, `${node.gpu_model || "no GPU"} · ${Math.round(node.gpu_memory_mib / 1024)} GiB · ${node.zone}`)),
    h("div", { class: "node-badges" }, badges(node)),
    h("div", { class: "cells" }, node.devices.map((d) => cell(node, d))),
    h("div", { class: "node-use", title: "GPUs held / GPUs on the node" }, `${gpus(node.gpus_used)} / ${node.gpu_count}`));
}

function group(g, nodes) {
  const sub = [g.capacity_kinds.join(", "), g.regions.join(", "), g.prices.join(", ")];
  return h("section", { class: "provider card", dataset: { testid: "provider", provider: g.provider } },
    h("header", {},
      h("h2", {}, g.provider),
      h("span", { class: "sub" }, sub.filter(Boolean).join(" · ")),
      h("span", { class: "spacer" }),
      h("span", { class: "use" }, `${gpus(g.gpus_used)} of ${g.gpus} GPUs allocated · ${g.nodes} nodes`)),
    nodes.map(nodeRow));
}

function legend(data, me) {
  const seen = new Set();
  let other = false;
  for (const n of data.nodes) for (const d of n.devices) for (const s of d.shares) {
    if (s.queue === null) other = true; else seen.add(s.queue);
  }
  const names = [...new Set([...seen, ...me.queues])].sort();
  return [
    h("span", { class: "legend-title" }, "Queues:"),
    names.map((q) => h("span", { class: "chip" }, h("i", { style: { background: queueColor(q) } }), q)),
    other ? h("span", { class: "chip" }, h("i", { class: "other", style: { backgroundColor: OTHER } }), "other queues") : null,
    h("span", { class: "chip" }, h("i", { class: "idle" }), "idle GPU"),
    h("span", { class: "chip", dataset: { testid: "idle-held-legend" }, title: `held by work you may see and measured under ${+(data.idle_below * 100).toPrecision(2)}% busy (a sample under ${data.stale_after_s} s old)` }, h("i", { class: "idle-held" }), "held, barely used"),
    h("span", { class: "chip" }, h("span", { class: "badge cordoned" }, "cordoned"), "no new work"),
    h("span", { class: "chip" }, h("span", { class: "badge unhealthy" }, "unhealthy"), "out of service"),
  ];
}

export function mount(root, ctx) {
  const chosen = Object.fromEntries(FILTERS.map(([k]) => [k, ""]));
  const selects = {};
  const controls = FILTERS.map(([key, label]) => {
    selects[key] = h("select", { id: `filter-${key}`, onchange: () => { chosen[key] = selects[key].value; offset = 0; load(true); } });
    return h("label", {}, label, selects[key]);
  });
  const legendBox = h("div", { class: "legend", dataset: { testid: "legend" } });
  const body = h("div", { class: "pool", dataset: { testid: "pool" } });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Pool"),
      h("p", { class: "hint" }, "Each row is a node and each square one GPU, coloured by the queue that holds it. ",
        "A partly filled square is a fractional share (0.25 GPU fills a quarter). Hover a square for details; click it to open its workload.")),
    h("div", { class: "filters" }, controls), legendBox, body);
  const pager = h("div", { class: "filters pager", dataset: { testid: "pager" } });
  root.append(pager);
  let data = null;
  let offset = 0;
  let drawn = "";

  function query() {
    const q = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    for (const [k] of FILTERS) if (chosen[k]) q.set(k, chosen[k]);
    return q;
  }

  function options() {
    for (const [key, , all] of FILTERS) {
      const values = data.facets[key] || [];
      const wanted = [["", all], ...values.map((v) => [v, v])];
      const have = [...selects[key].options].map((o) => o.value);
      if (have.join("\n") !== wanted.map(([v]) => v).join("\n")) {
        fill(selects[key], wanted.map(([v, t]) => h("option", { value: v }, t)));
        selects[key].value = values.includes(chosen[key]) ? chosen[key] : "";
      }
    }
  }

  function turn(to) { offset = to; load(true); }

  function drawPager() {
    const last = Math.min(data.offset + data.nodes.length, data.matching);
    fill(pager, data.matching > data.limit ? [
      h("button", { type: "button", dataset: { testid: "pager-prev" }, disabled: data.offset === 0,
        onclick: () => turn(Math.max(0, data.offset - PAGE)) }, "‹ Previous"),
      h("span", { class: "sub", dataset: { testid: "pager-status" } },
        `nodes ${data.offset + 1}–${last} of ${data.matching}`),
      h("button", { type: "button", dataset: { testid: "pager-next" }, disabled: last >= data.matching,
        onclick: () => turn(data.offset + PAGE) }, "Next ›"),
    ] : []);
  }

  function draw(force) {
    const key = JSON.stringify(data);
    if (!force && key === drawn) return; // unchanged: keep the DOM (and the hover) as it is
    drawn = key;
    fill(legendBox, legend(data, ctx.me));
    const byProvider = new Map();
    for (const n of data.nodes) byProvider.set(n.provider, [...(byProvider.get(n.provider) || []), n]);
    const groups = data.groups.filter((g) => byProvider.has(g.provider));
    fill(body, data.nodes.length ? groups.map((g) => group(g, byProvider.get(g.provider)))
      : h("p", { class: "empty" }, data.facets.provider.length ? "No node matches these filters." : "The pool has no nodes yet: start corral up with a pool file (--pool)."));
    drawPager();
  }

  async function load(force) {
    data = await api(`/v1/dashboard/pool/page?${query()}`);
    if (data.offset > 0 && data.offset >= data.matching) { // the pool shrank under this page
      offset = Math.max(0, data.matching - PAGE);
      data = await api(`/v1/dashboard/pool/page?${query()}`);
    }
    options();
    draw(force);
  }

  return {
    async refresh() { await load(false); },
  };
}
