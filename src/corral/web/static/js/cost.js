// Cost so far, from the ledger's API (/v1/ledger) when this server has one: the workload's
// metered GPU-hours and their price (running attempts are metered up to now), and the credits
// held for it. Whether the ledger exists is read once from the server's OpenAPI document;
// without it (or for a user who may not read it) the cost line is simply not shown.

import { api } from "./api.js";

const USAGE = "/v1/ledger/usage";
let hasLedger = null; // null: not asked yet

async function available() {
  if (hasLedger === null) {
    try {
      const doc = await api("/openapi.json");
      hasLedger = Object.prototype.hasOwnProperty.call(doc.paths || {}, USAGE);
    } catch {
      hasLedger = false;
    }
  }
  return hasLedger;
}

/** {text, detail} for workload `w`, or null when the server keeps no ledger. */
export async function costOf(w) {
  if (!(await available())) return null;
  const queue = encodeURIComponent(w.queue);
  let usage, holds;
  try {
    [usage, holds] = await Promise.all([
      // this workload's own rows, not its queue's whole report (which a busy queue refuses: 422)
      api(USAGE, { params: { by: "workload", queue: w.queue, workload: w.id,
                             since: Math.floor(w.submitted_at) } }),
      api(`/v1/ledger/queues/${queue}/holds`, { params: { open_only: true } }).catch(() => []),
    ]);
  } catch (e) {
    if ([403, 404, 422, 503].includes(e.status)) return null;
    throw e;
  }
  const row = usage.rows.find((r) => r.group.workload === w.id);
  const held = holds.filter((h) => h.workload_id === w.id).reduce((a, h) => a + Number(h.amount), 0);
  const parts = [`${row ? Number(row.gpu_hours).toFixed(3) : "0.000"} GPU-hours`];
  if (held > 0) parts.push(`${held.toFixed(2)} held`);
  return { text: `${row ? row.cost : "0.00"} ${usage.currency}`, detail: parts.join(" · ") };
}
