// Providers (issue 11): each provider with its nodes, the instances corral rented from it (state,
// price, time up, money) and the money spent per provider. Data: /v1/dashboard/providers, built
// from the autoscaler's audit records and the agents' registrations (corral.web.providers_page).

import { api } from "../api.js";
import { fill, h } from "../dom.js";
import { ago, duration, now } from "../format.js";

const money = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(2));

function providerRow(p) {
  return h("tr", { dataset: { testid: "provider", provider: p.name } },
    h("td", {}, h("strong", {}, p.name), p.origin ? h("div", { class: "sub" }, `from ${p.origin}`) : null),
    h("td", {}, p.kind),
    h("td", {}, h("span", { class: `state ${p.lifecycle}`, dataset: { testid: "lifecycle" } }, p.lifecycle)),
    h("td", { class: "num" }, String(p.nodes)),
    h("td", { class: "num" }, String(p.gpus)),
    h("td", { class: "num", dataset: { testid: "live" } }, String(p.live_instances)),
    h("td", { class: "num", dataset: { testid: "rate" } }, `${money(p.spend_per_hour)}/h`),
    h("td", { class: "num", dataset: { testid: "spent" } }, money(p.spent)));
}

function instanceRow(i) {
  const up = (i.ended_at ?? now()) - i.launched_at;
  return h("tr", { dataset: { testid: "instance", instance: i.id, state: i.state } },
    h("td", { class: "mono" }, i.id, i.node_id ? h("div", { class: "sub" }, `node ${i.node_id}`) : null),
    h("td", {}, i.provider),
    h("td", {}, i.instance_type, h("div", { class: "sub" }, `${i.capacity_kind} · ${i.zone}`)),
    h("td", {}, h("span", { class: `state ${i.state}`, dataset: { testid: "instance-state" } }, i.state)),
    h("td", { class: "num", dataset: { testid: "price" } }, `${money(i.price_per_hour)}/h`),
    h("td", { title: new Date(i.launched_at * 1000).toLocaleString() }, ago(i.launched_at)),
    h("td", {}, duration(Math.max(up, 0))),
    h("td", { class: "num", dataset: { testid: "instance-spent" } }, money(i.spent)),
    h("td", { class: "sub", title: i.reason }, i.reason));
}

export function mount(root) {
  const total = h("p", { class: "hint", dataset: { testid: "spend" } });
  const providers = h("div", { class: "card" });
  const instances = h("div", { class: "card" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Providers"),
      h("p", { class: "hint" }, "Where the pool's capacity comes from, what corral rented and what it cost: ",
        "an instance costs its price per hour from launch to return, idle or not. Add or remove renting providers with ",
        h("code", {}, "corral providers add FILE"), " and ", h("code", {}, "corral providers rm NAME"), "."),
      total),
    h("h2", {}, "Providers"), providers, h("h2", {}, "Instances"), instances);
  let last = "";

  async function refresh() {
    const v = await api("/v1/dashboard/providers");
    const key = JSON.stringify([v.providers, v.instances.map((i) => [i.id, i.state, i.spent])]);
    if (key === last) return;
    last = key;
    total.textContent = `Spent ${money(v.spent)} so far · ${money(v.spend_per_hour)}/h now`;
    fill(providers, v.providers.length ? h("table", { class: "grid", dataset: { testid: "providers" } },
      h("thead", {}, h("tr", {}, ["Provider", "Kind", "Lifecycle", "Nodes", "GPUs", "Live instances", "Spend rate", "Spent"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, v.providers.map(providerRow)))
      : h("p", { class: "empty" }, "No provider yet."));
    fill(instances, v.instances.length ? h("table", { class: "grid", dataset: { testid: "instances" } },
      h("thead", {}, h("tr", {}, ["Instance", "Provider", "Type", "State", "Price", "Launched", "Up", "Spent", "Last act"]
        .map((t) => h("th", {}, t)))),
      h("tbody", {}, [...v.instances].reverse().map(instanceRow)))
      : h("p", { class: "empty" }, "corral has rented nothing yet: the autoscaler rents when work waits for capacity a renting provider offers."));
  }

  return { refresh };
}
