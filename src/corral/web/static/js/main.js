// The dashboard shell: sign-in, the page router (#/pool, #/queues, #/workloads[/id], #/usage,
// #/credits, #/services[/id], #/providers),
// the summary strip, and the live refresh: every 2 seconds the open page re-reads its data
// (paused while the tab is hidden).

import { api, token } from "./api.js";
import { setQueues } from "./colors.js";
import { fill, h } from "./dom.js";
import { clock, gpus, pct } from "./format.js";
import * as credits from "./pages/credits.js";
import * as pool from "./pages/pool.js";
import * as providers from "./pages/providers.js";
import * as queues from "./pages/queues.js";
import * as service from "./pages/service.js";
import * as services from "./pages/services.js";
import * as usage from "./pages/usage.js";
import * as workload from "./pages/workload.js";
import * as workloads from "./pages/workloads.js";

const PAGES = { pool, queues, workloads, workload, usage, credits, service, services, providers };
const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const shell = { me: null, view: null, key: "", timer: null, busy: false };

function parseRoute() {
  const [name, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  if (name === "workloads" && rest.length && rest[0]) {
    return { page: "workload", arg: decodeURIComponent(rest.join("/")) };
  }
  if (name === "services" && rest.length && rest[0]) { // a service: #/services/<id>
    return { page: "service", arg: decodeURIComponent(rest.join("/")) };
  }
  return { page: PAGES[name] ? name : "pool", arg: null };
}

// --- sign-in ------------------------------------------------------------------------------

function showLogin(message) {
  stop();
  $("topbar").hidden = true;
  $("kpis").hidden = true;
  const input = h("input", {
    id: "token", type: "password", autocomplete: "off", spellcheck: "false",
    placeholder: "crl_…", "aria-label": "API token", required: true,
  });
  const error = h("p", { class: "error", id: "login-error", role: "alert" }, message || "");
  const form = h("form", { class: "login card", id: "login" },
    h("h1", {}, "Sign in to corral"),
    h("p", {}, "Paste an API token. ", h("code", {}, "corral up"),
      " prints the admin token when it starts for the first time and saves it in its data ",
      "directory as ", h("code", {}, "admin-token"), " (by default ", h("code", {}, ".corral/admin-token"),
      "). Other users get a token from an admin."),
    h("label", { for: "token" }, "API token"), input,
    h("button", { type: "submit", class: "primary" }, "Sign in"), error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    token.set(input.value.trim());
    try {
      await start();
    } catch (e) {
      token.clear();
      error.textContent = e.status === 401 ? "That token was refused: check it and try again." : e.message;
    }
  });
  fill($("main"), form);
  input.focus();
}

async function start() {
  shell.me = await api("/v1/dashboard/me");
  setQueues(shell.me.queues);
  $("topbar").hidden = false;
  $("kpis").hidden = false;
  fill($("who"), h("strong", {}, shell.me.name), ` · ${shell.me.role}`);
  if (shell.me.role !== "admin") $("who").title = `queues: ${shell.me.queues.join(", ") || "none"}`;
  openPage();
  shell.timer = setInterval(tick, POLL_MS);
}

function stop() {
  clearInterval(shell.timer);
  shell.timer = null;
  shell.view?.dispose?.();
  shell.view = null;
  shell.key = "";
}

// --- pages --------------------------------------------------------------------------------

function openPage() {
  const r = parseRoute();
  const key = `${r.page}:${r.arg ?? ""}`;
  if (key === shell.key) return;
  shell.view?.dispose?.();
  shell.key = key;
  for (const a of $("nav").querySelectorAll("a")) {
    const current = a.dataset.page === r.page || (r.page === "workload" && a.dataset.page === "workloads")
      || (r.page === "service" && a.dataset.page === "services");
    a.classList.toggle("current", current);
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const root = fill($("main"));
  root.dataset.page = r.page;
  shell.view = PAGES[r.page].mount(root, { me: shell.me }, r.arg);
  tick();
}

async function tick() {
  if (shell.busy || document.hidden || !shell.view) return;
  shell.busy = true;
  const live = $("live");
  try {
    await Promise.all([refreshKpis(), shell.view.refresh()]);
    live.className = "live ok";
    live.textContent = `live · ${clock(Date.now() / 1000)}`;
  } catch (e) {
    live.className = "live down";
    live.textContent = e.status === 0 ? "server unreachable" : `error: ${e.message}`;
  } finally {
    shell.busy = false;
  }
}

function kpi(label, value, note, cls) {
  return h("div", { class: `kpi ${cls || ""}`, dataset: { kpi: label.toLowerCase() } },
    h("span", { class: "kpi-value" }, value), h("span", { class: "kpi-label" }, label),
    note ? h("span", { class: "kpi-note" }, note) : null);
}

async function refreshKpis() {
  const p = await api("/v1/dashboard/pool/summary"); // the numbers only, not every node
  const t = p.totals;
  fill($("kpis"),
    kpi("GPUs", gpus(t.total), `${p.nodes} node${p.nodes === 1 ? "" : "s"}`),
    kpi("Allocated", gpus(t.allocated), `${pct(t.allocated, t.total)} of the pool`, "alloc"),
    kpi("Idle", gpus(t.idle), "free to schedule", "idle"),
    t.unavailable ? kpi("Unavailable", gpus(t.unavailable), "cordoned or unhealthy", "warn") : null,
    kpi("Running", String(p.running), shell.me.role === "admin" ? "workloads" : "in your queues"),
    kpi("Pending", String(p.pending), shell.me.role === "admin" ? "workloads" : "in your queues",
      p.pending ? "pending" : ""));
}

window.addEventListener("hashchange", () => shell.me && openPage());
window.addEventListener("corral:logout", (e) => showLogin(e.detail));
document.addEventListener("visibilitychange", () => !document.hidden && tick());
document.addEventListener("DOMContentLoaded", () => {
  $("logout").addEventListener("click", () => { token.clear(); showLogin("Signed out."); });
  if (token.get()) start().catch((e) => showLogin(e.message)); else showLogin();
});
