// Same-origin calls to VM-Desk's HTTP API. The session cookie (set when the page was
// opened with ?token=...) goes along by itself; errors become ApiError with the server's
// message, hint and problems (the same ones the CLI prints).

export class ApiError extends Error {
  constructor(status, body) {
    const message = (body && (body.error || body.detail)) || `request failed (HTTP ${status})`;
    super(typeof message === "string" ? message : JSON.stringify(message));
    this.status = status;
    this.hint = (body && body.hint) || "";
    this.problems = (body && Array.isArray(body.problems) && body.problems) || [];
    this.body = body;
  }
}

export async function request(method, path, body, { raw = false, signal } = {}) {
  const init = { method, headers: {}, credentials: "same-origin", signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, { error: "cannot reach VM-Desk", hint: "is `vmdesk ui` still running?" });
  }
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch { /* not JSON */ }
    if (response.status === 401 || response.status === 403) {
      data = data || {};
      data.hint = data.hint || "open the URL that `vmdesk ui` printed (it carries the access token)";
    }
    throw new ApiError(response.status, data);
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  const data = type.includes("json") ? await response.json() : await response.text();
  if (response.status === 202 && data && typeof data === "object" && jobId(data)) {
    return data; // a job: the caller follows it with followJob()
  }
  return data;
}

export const get = (path, opts) => request("GET", path, undefined, opts);
export const post = (path, body = {}) => request("POST", path, body);
export const put = (path, body) => request("PUT", path, body);
export const patch = (path, body) => request("PATCH", path, body);
export const del = (path) => request("DELETE", path);

export const vmPath = (name) => `/api/vms/${encodeURIComponent(name)}`;

/** The id of a job in a reply ({job: {id}} or {job: "id"} or {job_id} or a job itself). */
export function jobId(data) {
  if (!data || typeof data !== "object") return null;
  if (data.job && typeof data.job === "object") return data.job.id || null;
  if (typeof data.job === "string") return data.job;
  if (data.job_id) return data.job_id;
  if (data.id && "state" in data && !("config" in data)) return data.id;
  return null;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Follow a long operation to its end: calls onProgress({state, progress, message}) as it
 * goes; resolves with the job's result, rejects with an ApiError when it fails.
 */
export async function followJob(data, onProgress = () => {}) {
  const id = jobId(data);
  if (!id) return data; // it already finished
  for (;;) {
    const job = await get(`/api/jobs/${encodeURIComponent(id)}`);
    onProgress(job);
    if (["done", "succeeded", "success", "finished", "completed"].includes(job.state)) {
      return job.result !== undefined ? job.result : job;
    }
    if (["failed", "error", "cancelled"].includes(job.state)) {
      const err = job.error && typeof job.error === "object" ? { ...job.error } : {
        error: job.error || job.message || "the operation failed", hint: job.hint,
        problems: job.problems,
      };
      throw new ApiError(500, err);
    }
    await sleep(400);
  }
}

/** POST and, when the server answers with a job, wait for it. */
export async function postAndWait(path, body, onProgress) {
  return followJob(await post(path, body), onProgress);
}

export function wsURL(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
