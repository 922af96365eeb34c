// Cost so far, from the ledger's API when this server has one. The ledger endpoints are
// optional: the server's OpenAPI document says whether the route exists (read once per
// session), and without it the cost line is simply not shown.

import { api } from "./api.js";

const ROUTE = "/v1/workloads/{workload_id}/cost";
let hasRoute = null; // null: not asked yet

async function available() {
  if (hasRoute === null) {
    try {
      const doc = await api("/openapi.json");
      hasRoute = Object.prototype.hasOwnProperty.call(doc.paths || {}, ROUTE);
    } catch {
      hasRoute = false;
    }
  }
  return hasRoute;
}

/** {text, detail} for the workload, or null when the server keeps no ledger. */
export async function costOf(workloadId) {
  if (!(await available())) return null;
  try {
    return describe(await api(`/v1/workloads/${encodeURIComponent(workloadId)}/cost`));
  } catch (e) {
    if (e.status === 404 || e.status === 503) return null; // nothing metered (yet)
    throw e;
  }
}

function money(v, currency) {
  const n = Number(v);
  return Number.isFinite(n) ? `${n.toFixed(2)}${currency ? ` ${currency}` : ""}` : String(v);
}

// Read the fields a cost body is likely to carry; see README.md ("Cost") for the contract.
function describe(b) {
  const currency = b.currency || "";
  const spent = b.cost ?? b.spent ?? b.amount ?? b.charged ?? b.total;
  const parts = [];
  if (b.gpu_hours !== undefined) parts.push(`${Number(b.gpu_hours).toFixed(3)} GPU-hours`);
  if (b.held !== undefined) parts.push(`${money(b.held, currency)} held`);
  if (b.credits !== undefined) parts.push(`${b.credits} credits`);
  return { text: spent === undefined ? "–" : money(spent, currency), detail: parts.join(" · ") };
}
