// Queues: each queue's quota, limit, use, borrowing and fair share (nested), and the pending
// work with the scheduler's reason for each.

import { api } from "../api.js";
import { queueColor } from "../colors.js";
import { fill, h } from "../dom.js";
import { ago, ask, gpus, words } from "../format.js";

function place(x, max) {
  return `${Math.max(0, Math.min(100, (100 * x) / max))}%`;
}

function useBar(q, max) {
  const color = queueColor(q.name);
  const within = Math.min(q.used_gpus, q.quota_gpus);
  const marks = [
    h("div", { class: "demand", title: `demand ${gpus(q.demand_gpus)} GPUs (used + wanted by pending work)`, style: { width: place(q.demand_gpus, max) } }),
    h("div", { class: "used", style: { width: place(within, max), background: color } }),
    q.borrowed_gpus > 0 ? h("div", {
      class: "borrowed", title: `borrowing ${gpus(q.borrowed_gpus)} GPUs beyond its quota (may be reclaimed)`,
      style: { left: place(q.quota_gpus, max), width: place(q.borrowed_gpus, max), backgroundColor: color },
    }) : null,
    q.quota_gpus > 0 ? h("div", { class: "mark quota", title: `quota ${gpus(q.quota_gpus)} GPUs`, style: { left: place(q.quota_gpus, max) } }) : null,
    h("div", { class: "mark fair", title: `fair share ${gpus(q.fair_share_gpus)} GPUs`, style: { left: place(q.fair_share_gpus, max) } }),
    q.limit_gpus !== null ? h("div", { class: "mark limit", title: `limit ${gpus(q.limit_gpus)} GPUs`, style: { left: place(q.limit_gpus, max) } }) : null,
  ];
  return h("div", { class: "qbar", role: "img", "aria-label": `${q.name}: ${gpus(q.used_gpus)} used of quota ${gpus(q.quota_gpus)}` }, marks);
}

function reasonChips(reasons) {
  return Object.entries(reasons).sort((a, b) => b[1] - a[1]).map(([code, n]) =>
    h("span", { class: "reason", title: words(code) }, `${code} `, h("b", {}, String(n))));
}

function queueRow(q, max) {
  const fairness = q.fair_share_gpus > 0 ? q.used_gpus / q.fair_share_gpus : null;
  return h("tr", { dataset: { testid: "queue", queue: q.name } },
    h("td", { class: "qname", style: { paddingLeft: `${0.6 + q.depth * 1.4}rem` } },
      q.depth ? h("span", { class: "tree" }, "└ ") : null,
      h("i", { class: "swatch", style: { background: queueColor(q.name) } }), h("strong", {}, q.name),
      q.priority ? h("span", { class: "sub" }, ` priority ${q.priority}`) : null),
    h("td", { class: "barcell" }, useBar(q, max)),
    h("td", { class: "num", dataset: { testid: "used" } }, gpus(q.used_gpus)),
    h("td", { class: "num", dataset: { testid: "quota" } }, gpus(q.quota_gpus)),
    h("td", { class: "num", dataset: { testid: "limit" } }, q.limit_gpus === null ? "none" : gpus(q.limit_gpus)),
    h("td", { class: `num${q.borrowed_gpus > 0 ? " borrow" : ""}` }, gpus(q.borrowed_gpus)),
    h("td", { class: "num", title: fairness === null ? "" : `using ${Math.round(100 * fairness)}% of its fair share` }, gpus(q.fair_share_gpus)),
    h("td", { class: "num", dataset: { testid: "running" } }, String(q.running)),
    h("td", { class: "num" }, q.pending ? reasonChips(q.pending_reasons) : "0"));
}

function board(data) {
  if (!data.queues.length) return h("p", { class: "empty" }, "You are not a member of any queue yet: ask an admin to add you.");
  const max = Math.max(1, ...data.queues.map((q) => Math.max(q.quota_gpus, q.limit_gpus ?? 0, q.used_gpus, q.fair_share_gpus, q.demand_gpus)));
  return h("table", { class: "grid queues", dataset: { testid: "queues" } },
    h("thead", {}, h("tr", {}, ["Queue", "Use", "Used", "Quota", "Limit", "Borrowed", "Fair share", "Running", "Pending"]
      .map((t, i) => h("th", { class: i > 1 ? "num" : "" }, t)))),
    h("tbody", {}, data.queues.map((q) => queueRow(q, max))));
}

function pendingTable(items) {
  if (!items.length) return h("p", { class: "empty" }, "Nothing is waiting.");
  return h("table", { class: "grid", dataset: { testid: "pending" } },
    h("thead", {}, h("tr", {}, ["Workload", "Queue", "Asks", "Waiting", "Why it waits"].map((t) => h("th", {}, t)))),
    h("tbody", {}, items.map((w) => h("tr", { dataset: { workload: w.id } },
      h("td", {}, h("a", { href: `#/workloads/${encodeURIComponent(w.id)}` }, w.name), h("div", { class: "sub mono" }, w.id)),
      h("td", {}, h("i", { class: "swatch", style: { background: queueColor(w.queue) } }), w.queue),
      h("td", {}, ask(w.spec)),
      h("td", {}, ago(w.submitted_at)),
      h("td", {}, h("span", { class: "reason" }, w.reason_code || "Waiting"), " ", h("span", { class: "sub" }, w.reason_message))))));
}

export function mount(root) {
  const boardBox = h("div", { class: "card" });
  const pendingBox = h("div", { class: "card" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Queues"),
      h("p", { class: "hint" }, "A queue's quota is guaranteed. Beyond it, a queue may borrow idle GPUs up to its limit; ",
        "borrowed GPUs are taken back (reclaimed) when their owner needs them. The fair share is what the scheduler ",
        "deems the queue deserves for the current demand. Use includes child queues.")),
    h("div", { class: "legend" },
      h("span", { class: "chip" }, h("i", { class: "solid" }), "used within quota"),
      h("span", { class: "chip" }, h("i", { class: "striped" }), "borrowed"),
      h("span", { class: "chip" }, h("i", { class: "demandkey" }), "demand"),
      h("span", { class: "chip" }, h("i", { class: "markkey quota" }), "quota"),
      h("span", { class: "chip" }, h("i", { class: "markkey fair" }), "fair share"),
      h("span", { class: "chip" }, h("i", { class: "markkey limit" }), "limit")),
    boardBox, h("h2", {}, "Pending work"), pendingBox);
  let drawn = "";
  return {
    async refresh() {
      const [data, pending] = await Promise.all([
        api("/v1/dashboard/queues"),
        api("/v1/workloads", { params: { state: "pending", limit: 200 } }),
      ]);
      const key = JSON.stringify(data);
      if (key !== drawn) fill(boardBox, board(data)); // unchanged: keep hovers and selection
      drawn = key;
      fill(pendingBox, pendingTable(pending.items.slice().reverse()));
    },
  };
}
