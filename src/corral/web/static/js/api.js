// The API, with the user's token. The token lives in sessionStorage: it is gone when the tab
// closes, and it is sent only to this server (relative URLs, same origin).

const KEY = "corral.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// Relative to /ui/, so the dashboard also works behind a reverse proxy under a path prefix.
const BASE = new URL("../", document.baseURI);

export function url(path, params) {
  const u = new URL(path.replace(/^\//, ""), BASE);
  for (const [k, v] of Object.entries(params || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const item of [].concat(v)) u.searchParams.append(k, item);
  }
  return u;
}

/** GET (or `method`) a JSON endpoint. A 401 logs the user out; other errors throw ApiError
 *  carrying the server's message. */
export async function api(path, { method = "GET", params, body, raw = false } = {}) {
  const headers = { Authorization: `Bearer ${token.get() || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url(path, params), {
      method, headers, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, "cannot reach the corral server; is `corral up` still running?", "offline");
  }
  if (response.status === 401) {
    token.clear();
    window.dispatchEvent(new CustomEvent("corral:logout", { detail: "your token was refused" }));
  }
  if (!response.ok) {
    let detail = {};
    try { detail = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, detail.message || response.statusText, detail.error);
  }
  return raw ? response : response.json();
}
