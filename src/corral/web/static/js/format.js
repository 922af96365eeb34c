// How numbers, times and states read on every page.

/** GPUs: whole numbers plain, shares with up to two decimals (0.25, 1.5). */
export function gpus(x) {
  if (x === null || x === undefined) return "–";
  const r = Math.round(x * 100) / 100;
  return Number.isInteger(r) ? String(r) : r.toFixed(2).replace(/0$/, "");
}

export function pct(part, whole) {
  return whole > 0 ? `${Math.round((100 * part) / whole)}%` : "–";
}

/** A duration in seconds as "42s", "3m 05s", "2h 07m", "3d 4h". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  const t = Math.max(0, Math.round(seconds));
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m ${String(t % 60).padStart(2, "0")}s`;
  if (t < 86400) return `${Math.floor(t / 3600)}h ${String(Math.floor((t % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(t / 86400)}d ${Math.floor((t % 86400) / 3600)}h`;
}

export function now() {
  return Date.now() / 1000;
}

export function ago(ts) {
  return ts ? `${duration(now() - ts)} ago` : "–";
}

/** Clock time, with the date when it is not today. */
export function clock(ts) {
  if (!ts) return "–";
  const d = new Date(ts * 1000);
  const today = new Date().toDateString() === d.toDateString();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return today ? time : `${d.toLocaleDateString()} ${time}`;
}

export const ENDED = new Set(["succeeded", "failed", "cancelled"]);
export const HOLDING = new Set(["scheduled", "starting", "running"]);

/** GPUs a workload asks for, from its spec: "2 × 4 GPUs", "0.5 GPU (L4)", "no GPU". */
export function ask(spec) {
  const workers = spec.replicas || spec.workers || 1;
  const each = Number(spec.gpus || 0);
  const models = spec.gpu_models && spec.gpu_models.length ? ` (${spec.gpu_models.join(" or ")})` : "";
  if (!each && spec.gpu_memory) return `${workers > 1 ? `${workers} × ` : ""}${spec.gpu_memory} GPU memory${models}`;
  if (!each) return "no GPU";
  const unit = each === 1 && workers === 1 ? "GPU" : "GPUs";
  return `${workers > 1 ? `${workers} × ` : ""}${gpus(each)} ${unit}${models}`;
}

/** Split a reason code into words: "InsufficientCapacity" -> "Insufficient capacity". */
export function words(code) {
  if (!code) return "";
  const w = code.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  return w.charAt(0).toUpperCase() + w.slice(1);
}
