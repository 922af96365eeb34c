// Credits and cost (issue 14): each queue's credits (available, held for running work, charged,
// granted), what GPU time was charged per queue and day and per provider, the open holds and the
// grants. Every figure is the ledger API's own (/v1/ledger: balances, usage, holds, grants), in
// the ledger's one unit (its currency, credits "CRD" by default); nothing is recomputed here.
// Money moves slowly: the page re-reads every 10 s, not on every 2 s tick, in ONE request
// whatever the number of queues (/v1/ledger/summary: balances, the report by day and queue and
// the one by provider over the same days, grouped in SQL, the open holds and the grants; it
// took five requests before issue 14's third pass, two per queue before). What each queue was charged and used per
// day are two charts of bars stacked by queue (chart.js, the house's SVG charts) from one report by
// day and queue, each day's figure the ledger's row; the legend gives each queue's totals as the
// server sums them (usage `totals=queue`), and a table keeps the rows' exact figures.

import { api } from "../api.js";
import { stackedBars } from "../chart.js";
import { queueColor } from "../colors.js";
import { fill, h } from "../dom.js";
import { ago, clock, now } from "../format.js";

const EVERY_S = 10;
const DAYS = 14;
const SUMMARY = "/v1/ledger/summary";

const table = (testid, heads, rows) => h("table", { class: "grid", dataset: { testid } },
  h("thead", {}, h("tr", {}, heads.map(([t, num]) => h("th", { class: num ? "num" : "" }, t)))),
  h("tbody", {}, rows));
const num = (text, testid) => h("td", { class: "num", dataset: testid ? { testid } : {} }, text);
const hours = (x) => Number(x).toFixed(3);

function balanceRow(b) {
  return h("tr", { dataset: { testid: "balance", queue: b.queue } },
    h("td", {}, h("strong", {}, b.queue),
      b.metered ? null : h("div", { class: "sub" }, "not metered: no credits granted in its chain, so no budget applies")),
    num(b.available, "available"), num(b.held, "held"), num(b.settled, "charged"),
    num(b.granted, "granted"), num(b.expired), num(b.debt, "debt"));
}

function usageRows(report, dims, testid) {
  return report.rows.map((r) => h("tr", { dataset: { testid, ...r.group } },
    dims.map((d) => h("td", {}, r.group[d] || "–")),
    num(hours(r.gpu_hours), "gpu-hours"), num(r.cost, "cost")));
}

/** Each queue's figure per day (every day since `since`, 0 where none was charged), from the
 * report's rows as the server sent them: `pick` reads a row's GPU-hours or cost. */
function perDay(report, days, pick) {
  const dayOf = (iso) => Math.floor(Date.parse(`${iso}T00:00:00Z`) / 1000);
  const byQueue = new Map();
  for (const r of report.rows) {
    const q = r.group.queue;
    if (!byQueue.has(q)) byQueue.set(q, days.map(() => 0));
    const i = days.indexOf(dayOf(r.group.day));
    if (i >= 0) byQueue.get(q)[i] += Number(pick(r));
  }
  return byQueue;
}

/** The per-day report as two stacked charts by queue (credits charged, GPU-hours), a legend
 * naming each queue with what it was charged and used over the days shown, as the server sums
 * it (`totals=queue`: exact, rounded once, not a sum of rounded rows), and the report's rows
 * as a table for the exact figures. */
function daysCard(report, since, currency) {
  const days = [];
  for (let t = since; t <= now(); t += 86400) days.push(t);
  const dayLabel = (t) => new Date(t * 1000).toISOString().slice(5, 10);
  const queues = [...new Set(report.rows.map((r) => r.group.queue))].sort();
  const chart = (pick, label, fmt, floor, testid) => {
    const series = perDay(report, days, pick);
    const layers = queues.map((q) => ({ name: q, color: queueColor(q), values: series.get(q) }));
    const box = stackedBars({ times: days, layers, label, fmt, timeFmt: dayLabel, floor }, 180);
    box.dataset.testid = testid;
    return h("div", {}, h("h3", {}, label), box);
  };
  const money = (v) => (Math.round(v * 100) / 100).toFixed(2);
  const hrs = (v) => String(Math.round(v * 1e6) / 1e6);
  const totals = new Map(report.totals.map((t) => [t.group.queue, t]));
  const chip = (q) => h("span", { class: "chip", dataset: { testid: "usage-day", queue: q }, title: `${q}: over the days shown` },
    h("i", { style: { background: queueColor(q) } }), `${q} `,
    h("span", { dataset: { testid: "cost" } }, totals.get(q).cost), ` ${currency} · `,
    h("span", { dataset: { testid: "gpu-hours" } }, totals.get(q).gpu_hours), " GPU-hours");
  const rows = report.rows.slice().sort((a, b) => b.group.day.localeCompare(a.group.day) || a.group.queue.localeCompare(b.group.queue));
  return [
    h("div", { class: "chart-pair" },
      chart((r) => r.cost, `Credits charged per day (${currency})`, money, 0.04, "usage-days-chart"),
      chart((r) => r.gpu_hours, "GPU-hours per day", hrs, 0.004, "usage-days-hours-chart")),
    h("div", { class: "legend" }, queues.map(chip)),
    h("details", {}, h("summary", {}, "Exact figures per queue and day"),
      table("usage-days", [["Day (UTC)"], ["Queue"], ["GPU-hours", 1], [`Cost (${currency})`, 1]],
        rows.map((r) => h("tr", { dataset: { testid: "usage-day-row", day: r.group.day, queue: r.group.queue } },
          h("td", {}, r.group.day), h("td", {}, r.group.queue), num(r.gpu_hours, "gpu-hours"), num(r.cost, "cost"))))),
  ];
}

function holdRow(x) {
  return h("tr", { dataset: { testid: "hold", workload: x.workload_id } },
    h("td", { class: "mono" }, h("a", { href: `#/workloads/${encodeURIComponent(x.workload_id)}` }, x.workload_id),
      x.attempt > 1 ? h("span", { class: "sub" }, ` attempt ${x.attempt}`) : null),
    h("td", {}, x.queue), num(x.amount, "hold-amount"),
    h("td", { title: clock(x.placed_at) }, ago(x.placed_at)));
}

function grantRow(g) {
  return h("tr", { dataset: { testid: "grant", queue: g.queue } },
    h("td", {}, g.queue), num(g.amount, "grant-amount"), num(g.left, "grant-left"),
    h("td", {}, clock(g.at)), h("td", {}, g.expires_at ? clock(g.expires_at) : "never"),
    h("td", { class: "sub" }, g.memo || ""));
}

async function hasLedger() {
  const doc = await api("/openapi.json");
  return Object.prototype.hasOwnProperty.call(doc.paths || {}, SUMMARY);
}

export function mount(root) {
  const total = h("p", { class: "hint", dataset: { testid: "spent-total" } });
  const cards = Object.fromEntries(["balances", "days", "providers", "holds", "grants"]
    .map((k) => [k, h("div", { class: "card" })]));
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Credits and cost"),
      h("p", { class: "hint" }, "What each queue was charged for its GPU time (GPU-hours metered per second, at the ",
        "price per GPU-hour of the node it ran on) and the credits that pay for it: granted, held for running work ",
        "(settled when it ends), available. Admins grant with ", h("code", {}, "corral credits grant QUEUE AMOUNT"),
        "; ", h("code", {}, "corral usage"), " prints the same figures."), total),
    h("h2", {}, "Credits by queue"), cards.balances,
    h("h2", {}, `Spend per queue and day (last ${DAYS} days, UTC)`), cards.days,
    h("h2", {}, `Charged per provider (last ${DAYS} days)`),
    h("p", { class: "hint" }, "GPU time charged to queues on each provider's nodes. What corral paid for the instances it rented is on ",
      h("a", { href: "#/providers" }, "Providers"), "."), cards.providers,
    h("h2", {}, "Open holds"), cards.holds,
    h("h2", {}, "Grants"), cards.grants);
  let readAt = 0;
  let ledger = null;

  async function refresh() {
    if (now() - readAt < EVERY_S) return;
    readAt = now();
    if (ledger === null) ledger = await hasLedger();
    if (!ledger) {
      fill(cards.balances, h("p", { class: "empty" }, "This server keeps no ledger, so there are no credits or costs to show."));
      return;
    }
    const summary = await api(SUMMARY, { params: { days: DAYS } });
    const { balances, by_day: days, by_provider: providers, holds, grants, currency, since } = summary;
    total.textContent = `Charged in the last ${DAYS} days: ${providers.total_cost} ${currency} for ${hours(Number(providers.total_gpu_seconds) / 3600)} GPU-hours (all time: each queue's "Charged" below). All amounts are in ${currency}.`;
    fill(cards.balances, balances.length ? table("balances",
      [["Queue"], ["Available", 1], ["Held", 1], ["Charged", 1], ["Granted", 1], ["Expired", 1], ["Debt", 1]],
      balances.map(balanceRow)) : h("p", { class: "empty" }, "No queue you may see."));
    fill(cards.days, days.rows.length ? daysCard(days, since, currency)
      : h("p", { class: "empty" }, `No GPU time in the last ${DAYS} days.`));
    fill(cards.providers, providers.rows.length ? table("usage-providers", [["Provider"], ["GPU-hours", 1], [`Cost (${currency})`, 1]],
      usageRows(providers, ["provider"], "usage-provider")) : h("p", { class: "empty" }, "No GPU time charged yet."));
    const open = holds;  // newest first, at most 200 (summary.holds_total counts them all)
    fill(cards.holds, open.length ? table("holds", [["Workload"], ["Queue"], [`Held (${currency})`, 1], ["Since"]], open.map(holdRow))
      : h("p", { class: "empty" }, "No credits held: no running work in a metered queue."));
    const given = grants;  // newest first, at most 200
    fill(cards.grants, given.length ? table("grants", [["Queue"], [`Amount (${currency})`, 1], ["Left", 1], ["Granted"], ["Expires"], ["Memo"]],
      given.map(grantRow)) : h("p", { class: "empty" }, "No credits granted: every queue runs unmetered."));
  }

  return { refresh };
}
