// One colour per queue, the same on every page. Queues get palette slots by their position in
// the sorted list of queues the user may see (so few queues get clearly different colours);
// a name not in that list (should not happen) falls back to a hash of the name.

const PALETTE = [
  "#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#edc948",
  "#76b7b2", "#ff9da7", "#9c755f", "#e15759", "#8cd17d", "#499894", "#d37295",
];
export const OTHER = "#c9ced6"; // other queues' use, seen by a non-admin (no names)
let order = new Map();

export function setQueues(names) {
  order = new Map([...names].sort().map((n, i) => [n, i]));
}

function hash(name) {
  let x = 0;
  for (const ch of name) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x;
}

export function queueColor(name) {
  if (!name) return OTHER;
  const i = order.has(name) ? order.get(name) : hash(name);
  return PALETTE[i % PALETTE.length];
}
