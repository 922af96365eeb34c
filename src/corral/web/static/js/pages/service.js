// One service (#/services/<id>): its endpoint URL, its replicas with their states, its scale
// events with the autoscaler's reasons, and what it has used. One request per refresh:
// GET /v1/services/<id> (the same object `corral describe <id>` prints).

import { api } from "../api.js";
import { fill, h } from "../dom.js";
import { clock } from "../format.js";

function dl(pairs) {
  return h("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

// The gateway serves a service under its id at /serve/<id>/ on this same server.
export function endpointOf(id) {
  return `${location.origin}/serve/${encodeURIComponent(id)}/`;
}

function badge(state) {
  return h("span", { class: `badge state ${state}`, dataset: { testid: "service-state" } }, state);
}

function replicaTable(s) {
  const rows = s.replicas.filter((r) => r.state !== "ended");
  if (!rows.length) {
    return h("p", { class: "empty", dataset: { testid: "no-replicas" } },
      s.state === "idle" ? "Scaled to zero: a request to the endpoint starts a replica." : "No replica runs.");
  }
  return h("table", { class: "grid", dataset: { testid: "replicas" } },
    h("thead", {}, h("tr", {}, ["#", "Replica", "State", "Workload", "Node", "URL", "Restarts", "Reason"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, rows.map((r) => h("tr", { dataset: { testid: "replica", replica: r.id, state: r.state } },
      h("td", {}, String(r.index)),
      h("td", { class: "mono" }, h("a", { href: `#/workloads/${encodeURIComponent(r.id)}` }, r.id)),
      h("td", {}, h("span", { class: `state ${r.state}` }, r.state)),
      h("td", {}, r.workload_state), h("td", { class: "mono" }, r.node_id || "–"),
      h("td", { class: "mono" }, r.url || "–"), h("td", {}, String(r.restart_count)),
      h("td", {}, h("span", { class: "reason" }, r.reason_code), " ", r.reason_message)))));
}

function eventList(s) {
  if (!s.events.length) return h("p", { class: "empty" }, "No scale change yet.");
  return h("ol", { class: "timeline", dataset: { testid: "scale-events" } },
    [...s.events].reverse().map((e) => h("li", { class: `event ${e.kind}`, dataset: { testid: "scale-event", reason: e.reason } },
      h("time", {}, clock(e.at)), h("span", { class: "reason" }, e.reason),
      e.subject ? h("span", { class: "sub" }, ` by ${e.subject}`) : null, " ", h("span", {}, e.message))));
}

export function mount(root, ctx, id) {
  const head = h("div", { class: "page-head" });
  const facts = h("div", { class: "card" });
  const replicas = h("div", { class: "card" });
  const events = h("div", { class: "card" });
  fill(root, head,
    h("section", {}, h("h2", {}, "Summary"), facts),
    h("section", {}, h("h2", {}, "Replicas"), replicas),
    h("section", {}, h("h2", {}, "Scaling ", h("span", { class: "sub" }, "(by hand or by its autoscaler, with the reason)")), events));
  let last = "";

  async function refresh() {
    let s;
    try {
      s = await api(`/v1/services/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 404) throw e;
      fill(head, h("h1", {}, "No such service"), h("p", { class: "error", dataset: { testid: "not-found" } }, e.message));
      return;
    }
    const seen = JSON.stringify(s);
    if (seen === last) return; // redraw only on change: a selection survives the poll
    last = seen;
    const url = endpointOf(s.id);
    fill(head, h("div", { class: "title" }, h("h1", { dataset: { testid: "service-name" } }, s.name), badge(s.state)),
      h("p", { class: "sub mono" }, s.id));
    const auth = s.spec.auth ? "bearer token (Authorization: Bearer …)" : "public";
    const scale = s.spec.autoscale ? `autoscaled within [${s.min_replicas}, ${s.max_replicas}]` : `min ${s.min_replicas}, max ${s.max_replicas}`;
    fill(facts, dl([
      ["Endpoint", h("a", { href: url, class: "mono", dataset: { testid: "endpoint" } }, url)],
      ["Auth", auth],
      ["Replicas", h("span", { dataset: { testid: "counts" } },
        `${s.desired} desired: ${s.ready} ready, ${s.starting} starting, ${s.draining} draining (${scale})`)],
      ["Queue", s.queue], ["User", s.user],
      ["Used", h("span", { dataset: { testid: "used" } },
        `${s.replica_hours.toFixed(3)} replica-hours, ${s.gpu_hours} GPU-hours${s.cost ? `, cost ${s.cost}` : ""}`)],
    ]));
    fill(replicas, replicaTable(s));
    fill(events, eventList(s));
  }

  return { refresh, dispose() {} };
}
