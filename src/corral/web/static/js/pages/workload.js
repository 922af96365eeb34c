// One workload: what it is, where it runs, why it waits, what happened (events), its logs
// (followed live), its cost so far (when the server keeps a ledger), and a cancel button.

import { api } from "../api.js";
import { queueColor } from "../colors.js";
import { costOf } from "../cost.js";
import { fill, h } from "../dom.js";
import { ask, clock, duration, ENDED, gpus, now, words } from "../format.js";
import { stateBadge } from "./workloads.js";

const MAX_LOG_CHARS = 400_000;


// A worker that ends between two polls of the control loop is never seen running, so the
// workload has no start time: say that rather than "not yet" for work that has finished.
function startedUnknown(w) {
  return ENDED.has(w.state) ? "not observed (it ended within one poll)" : "not yet";
}

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function callout(w, why) {
  if (w.stopping && !ENDED.has(w.state)) {
    return h("div", { class: "callout warn", dataset: { testid: "why" } }, h("strong", {}, "Stopping: "), words(w.stopping), " — waiting for its workers to end.");
  }
  if (w.state === "pending" && why) {
    return h("div", { class: `callout ${why.unresolvable ? "bad" : "info"}`, dataset: { testid: "why" } },
      h("strong", {}, why.unresolvable ? "Can never start as asked: " : "Why it waits: "),
      h("span", { class: "reason" }, why.code || "Waiting"), " ", why.message);
  }
  if (w.state === "failed") {
    return h("div", { class: "callout bad", dataset: { testid: "why" } }, h("strong", {}, "Failed: "), w.reason_message || words(w.reason_code));
  }
  return null;
}

function placementTable(w) {
  if (!w.placements.length) return h("p", { class: "empty" }, ENDED.has(w.state) ? "It holds no GPUs now." : "Not placed yet.");
  return h("table", { class: "grid", dataset: { testid: "placement" } },
    h("thead", {}, h("tr", {}, ["Worker", "Node", "GPUs", "Share per GPU", "State", "Exit"].map((t) => h("th", {}, t)))),
    h("tbody", {}, w.placements.map((p) => h("tr", {},
      h("td", {}, String(p.worker)), h("td", { class: "mono" }, p.node_id),
      h("td", {}, p.devices.join(", ") || "–"), h("td", {}, gpus(p.milli_per_device / 1000)),
      h("td", {}, p.state), h("td", {}, p.exit_code ?? "")))));
}

function eventItem(e) {
  const move = e.to_state ? h("span", { class: "move" }, e.from_state ? `${e.from_state} → ` : "", h("span", { class: `state ${e.to_state}` }, e.to_state)) : null;
  return h("li", { class: `event ${e.kind}`, dataset: { testid: "event" } },
    h("time", {}, clock(e.at)), move, h("span", { class: "reason" }, e.reason),
    e.attempt ? h("span", { class: "sub" }, ` attempt ${e.attempt}`) : null, " ", h("span", {}, e.message));
}

function cancelButton(w, onDone) {
  if (ENDED.has(w.state)) return null;
  const box = h("span", { class: "actions" });
  const ask1 = h("button", { type: "button", class: "danger", dataset: { testid: "cancel" } }, "Cancel workload");
  ask1.addEventListener("click", () => {
    const yes = h("button", { type: "button", class: "danger", dataset: { testid: "confirm-cancel" } }, "Yes, cancel it");
    const no = h("button", { type: "button" }, "Keep it");
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try { await api(`/v1/workloads/${encodeURIComponent(w.id)}/cancel`, { method: "POST" }); await onDone(); }
      catch (e) { fill(box, h("span", { class: "error" }, e.message)); }
    });
    no.addEventListener("click", () => fill(box, ask1));
    fill(box, h("span", { class: "sub" }, w.state === "pending" ? "It will not start. " : "Its workers get SIGTERM, then SIGKILL after the grace period. "), yes, no);
  });
  box.append(ask1);
  return box;
}

export function mount(root, ctx, id) {
  const head = h("div", { class: "page-head" });
  const why = h("div");
  const facts = h("div", { class: "card" });
  const placement = h("div", { class: "card" });
  const events = h("ol", { class: "timeline", dataset: { testid: "events" } });
  const logs = h("pre", { class: "logs", dataset: { testid: "logs" } });
  const worker = h("select", { id: "log-worker", "aria-label": "worker" });
  const follow = h("input", { type: "checkbox", id: "log-follow", checked: true });
  const spec = h("pre", { class: "spec", dataset: { testid: "spec" } });
  root.append(head, why,
    h("div", { class: "two" }, h("section", {}, h("h2", {}, "Summary"), facts), h("section", {}, h("h2", {}, "Placement"), placement)),
    h("section", {}, h("h2", {}, "Logs ", h("span", { class: "sub" }, "(following live)")),
      h("div", { class: "filters" }, h("label", {}, "Worker", worker), h("label", {}, follow, "stick to the end")), logs),
    h("section", {}, h("h2", {}, "Events"), h("div", { class: "card" }, events)),
    h("section", {}, h("h2", {}, "Spec"), spec));
  const log = { worker: 0, attempt: null, offset: 0 };
  let lastEvent = 0;
  let cost = null;
  let headKey = "";
  worker.addEventListener("change", () => { log.worker = Number(worker.value); log.offset = 0; log.attempt = null; logs.textContent = ""; });

  function drawHead(w) {
    const key = `${w.state}|${w.stopping}`;
    if (key === headKey) return;
    headKey = key;
    fill(head, h("a", { href: "#/workloads", class: "back" }, "← Workloads"),
      h("div", { class: "title" }, h("h1", { dataset: { testid: "workload-name" } }, w.name), stateBadge(w), cancelButton(w, refresh)),
      h("p", { class: "sub" }, h("span", { class: "mono" }, w.id), " · ", h("i", { class: "swatch", style: { background: queueColor(w.queue) } }),
        `queue ${w.queue} · ${w.kind} · by ${w.user}`,
        w.kind === "service" ? [" · a replica of ", h("a", { href: `#/services/${encodeURIComponent(w.group_id)}`, dataset: { testid: "service-link" } }, "its service")] : null));
  }

  async function followLogs(w) {
    logs.dataset.empty = ENDED.has(w.state) ? "No output." : "No output yet: logs appear once it starts.";
    if (!w.started_at && !w.placements.length) return;
    if (log.attempt !== null && log.attempt !== w.attempt) {
      logs.append(`\n──── attempt ${w.attempt} ────\n`);
      log.offset = 0;
    }
    log.attempt = w.attempt;
    const chunk = await api(`/v1/workloads/${encodeURIComponent(w.id)}/logs`, { params: { worker: log.worker, offset: log.offset } });
    log.offset = chunk.next_offset;
    if (chunk.data) {
      logs.append(chunk.data);
      if (logs.textContent.length > MAX_LOG_CHARS) logs.textContent = logs.textContent.slice(-MAX_LOG_CHARS / 2);
      if (follow.checked) logs.scrollTop = logs.scrollHeight;
    }
  }

  async function refresh() {
    const w = await api(`/v1/workloads/${encodeURIComponent(id)}`);
    const [whyBody, evPage, costBody] = await Promise.all([
      w.state === "pending" ? api(`/v1/workloads/${encodeURIComponent(id)}/why`) : null,
      api(`/v1/workloads/${encodeURIComponent(id)}/events`, { params: { after: lastEvent } }),
      costOf(w).catch(() => cost),
    ]);
    cost = costBody;
    drawHead(w);
    fill(why, callout(w, whyBody));
    const workers = w.spec.replicas ? 1 : (w.spec.workers || 1);
    if (worker.options.length !== workers) fill(worker, Array.from({ length: workers }, (_, i) => h("option", { value: i }, `worker ${i}`)));
    fill(facts, dl([
      ["State", w.state], ["Asks", ask(w.spec)], ["Priority", w.spec.priority ?? 0],
      ["Attempt", String(w.attempt)], ["Restarts", h("span", { dataset: { testid: "restarts" } }, `${w.restart_count} of ${w.spec.max_restarts ?? 3} allowed`)],
      ["Submitted", clock(w.submitted_at)], ["Started", w.started_at ? clock(w.started_at) : startedUnknown(w)],
      ["Finished", w.finished_at ? clock(w.finished_at) : null],
      ["Runtime", w.started_at ? duration((w.finished_at || now()) - w.started_at) : null],
      ["Exit code", w.exit_code ?? null],
      ["Cost so far", cost ? h("span", { dataset: { testid: "cost" } }, cost.text, cost.detail ? h("span", { class: "sub" }, ` (${cost.detail})`) : null) : null],
    ]));
    fill(placement, placementTable(w));
    for (const e of evPage.items) events.append(eventItem(e));
    lastEvent = evPage.next_after;
    if (!spec.textContent) spec.textContent = JSON.stringify(w.spec, null, 2);
    await followLogs(w);
  }

  return {
    refresh: () => refresh().catch((e) => {
      if (e.status === 404) fill(root, h("div", { class: "callout bad" }, `Workload ${id} does not exist or is not visible to you. `, h("a", { href: "#/workloads" }, "Back to workloads")));
      else throw e;
    }),
  };
}
