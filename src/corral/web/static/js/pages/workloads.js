// Workloads: a searchable list, newest first. The state and queue filters ask the server; the
// search box narrows what came back (name, id, queue, user, state, reason).

import { api } from "../api.js";
import { queueColor } from "../colors.js";
import { fill, h } from "../dom.js";
import { ago, ask, duration, ENDED, now } from "../format.js";

const LIMIT = 500;
const VIEWS = [
  ["active", "Active", ["pending", "scheduled", "starting", "running"]],
  ["pending", "Pending", ["pending"]],
  ["running", "Running", ["scheduled", "starting", "running"]],
  ["ended", "Ended", ["succeeded", "failed", "cancelled", "preempted"]],
  ["all", "All", []],
];

export function stateBadge(w) {
  const stopping = w.stopping && !ENDED.has(w.state) ? h("span", { class: "badge stopping", title: `stop requested: ${w.stopping}` }, "stopping") : null;
  return [h("span", { class: `state ${w.state}`, dataset: { testid: "state" } }, w.state), stopping];
}

function runtime(w) {
  if (!w.started_at) return "–";
  return duration((w.finished_at || now()) - w.started_at);
}

function row(w) {
  const detail = w.state === "pending" ? (w.reason_code || "") : w.exit_code !== null && w.exit_code !== undefined ? `exit ${w.exit_code}` : "";
  return h("tr", { class: "clickable", dataset: { testid: "workload", workload: w.id }, onclick: () => { location.hash = `#/workloads/${encodeURIComponent(w.id)}`; } },
    h("td", {}, h("a", { href: `#/workloads/${encodeURIComponent(w.id)}` }, w.name), h("div", { class: "sub mono" }, w.id)),
    h("td", {}, h("i", { class: "swatch", style: { background: queueColor(w.queue) } }), w.queue),
    h("td", {}, w.user),
    h("td", {}, w.kind),
    h("td", {}, stateBadge(w)),
    h("td", {}, ask(w.spec)),
    h("td", { title: new Date(w.submitted_at * 1000).toLocaleString() }, ago(w.submitted_at)),
    h("td", {}, runtime(w)),
    h("td", { class: "num" }, String(w.restart_count)),
    h("td", { class: "sub", title: w.reason_message }, detail));
}

function matches(w, words) {
  const hay = `${w.name} ${w.id} ${w.queue} ${w.user} ${w.state} ${w.kind} ${w.reason_code}`.toLowerCase();
  return words.every((word) => hay.includes(word));
}

export function mount(root, ctx) {
  let view = "active";
  let items = [];
  const search = h("input", { type: "search", id: "search", placeholder: "Search name, id, queue, user, state…", "aria-label": "search workloads", oninput: draw });
  const queue = h("select", { id: "queue-filter", "aria-label": "queue", onchange: () => refresh() },
    h("option", { value: "" }, "all queues"), ctx.me.queues.map((q) => h("option", { value: q }, q)));
  const tabs = h("div", { class: "tabs", role: "tablist" }, VIEWS.map(([key, label]) =>
    h("button", { type: "button", role: "tab", dataset: { view: key }, class: key === view ? "current" : "", onclick: () => { view = key; markTab(); refresh(); } }, label)));
  const count = h("span", { class: "sub" });
  const body = h("div", { class: "card" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Workloads"),
      h("p", { class: "hint" }, "Jobs, services and interactive sessions, newest first. Click one for its placement, events, logs and why it waits. ",
        "Submit with ", h("code", {}, "corral submit job.yaml"), " or the Python SDK.")),
    h("div", { class: "filters" }, tabs, queue, search, count), body);

  function markTab() {
    for (const b of tabs.children) b.classList.toggle("current", b.dataset.view === view);
  }

  function draw() {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = items.filter((w) => matches(w, words));
    count.textContent = `${shown.length} shown${items.length >= LIMIT ? ` (newest ${LIMIT})` : ""}`;
    fill(body, shown.length ? h("table", { class: "grid", dataset: { testid: "workloads" } },
      h("thead", {}, h("tr", {}, ["Workload", "Queue", "User", "Kind", "State", "Asks", "Submitted", "Runtime", "Restarts", ""]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, shown.map(row)))
      : h("p", { class: "empty" }, items.length ? "Nothing matches the search." : "No workloads here yet."));
  }

  async function refresh() {
    const states = VIEWS.find(([k]) => k === view)[2];
    const page = await api("/v1/workloads", { params: { state: states, queue: queue.value || undefined, limit: LIMIT } });
    items = page.items;
    draw();
  }

  return { refresh };
}
