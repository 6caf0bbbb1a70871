// Tiny DOM helpers: h() builds elements, so no page ever assembles HTML from strings
// (names of VMs, paths and log text are always inserted as text).

/** h("div.card#id", {attrs, on: {click}}, ...children) */
export function h(spec, attrs = {}, ...children) {
  const [, tag = "div", rest = ""] = /^([a-z0-9-]*)(.*)$/i.exec(spec);
  const el = document.createElement(tag || "div");
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs === null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    children.unshift(attrs);
    attrs = {};
  }
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "on") {
      for (const [event, fn] of Object.entries(value)) el.addEventListener(event, fn);
    } else if (key === "class") {
      el.className += (el.className ? " " : "") + value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style" && typeof value === "object") {
      Object.assign(el.style, value);
    } else if (key in el && key !== "list" && typeof value !== "string") {
      el[key] = value;
    } else if (key === "value" || key === "checked") {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : value);
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Replace an element's children (null, false and undefined ones are left out). */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A same-origin link that the router follows without reloading the page. */
export function link(href, attrs, ...children) {
  return h("a", { href, "data-link": "", ...attrs }, ...children);
}

export const STATUS_LABEL = {
  stopped: "Stopped", starting: "Starting", running: "Running", paused: "Paused",
  stopping: "Stopping", suspended: "Suspended", crashed: "Crashed",
  unresponsive: "Not responding",
};

export function badge(status) {
  return h(`span.badge.state-${status || "unknown"}`, { "data-status": status || "" },
    STATUS_LABEL[status] || status || "unknown");
}

export function formatMiB(mib) {
  if (mib === undefined || mib === null) return "";
  if (mib >= 1024 && mib % 1024 === 0) return `${mib / 1024} GiB`;
  if (mib >= 1024) return `${(mib / 1024).toFixed(1)} GiB`;
  return `${mib} MiB`;
}

/** A libvirt host in one line: its URI, and what it said of itself when it answered. */
export function hostFacts(host) {
  const facts = [host.uri];
  if (host.hostname) facts.push(host.hostname);
  if (host.libvirt) facts.push(`libvirt ${host.libvirt}`);
  if (host.cpus) facts.push(`${host.cpus} CPU${host.cpus === 1 ? "" : "s"}`);
  if (host.memory_mib) facts.push(formatMiB(host.memory_mib));
  return facts.join(" · ");
}

export function formatBytes(bytes) {
  if (bytes === undefined || bytes === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (bytes >= 1024 && i < units.length - 1) { bytes /= 1024; i++; }
  return `${bytes >= 10 || i === 0 ? Math.round(bytes) : bytes.toFixed(1)} ${units[i]}`;
}

/** Short-lived message in the corner; errors carry the API's hint. */
export function toast(message, { hint = "", kind = "info", timeout = 6000 } = {}) {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div#toasts", { role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const el = h(`div.toast.toast-${kind}`, h("div.toast-message", message),
    hint ? h("div.toast-hint", hint) : null);
  el.addEventListener("click", () => el.remove());
  box.append(el);
  if (timeout) setTimeout(() => el.remove(), timeout);
  return el;
}

export function errorToast(err) {
  return toast(err.message || String(err), { hint: err.hint || "", kind: "error", timeout: 12000 });
}

/** An error block inside a page (kept until replaced). */
export function errorBox(err) {
  const message = err.message || String(err);
  // A single problem is usually the message itself: list problems only when they add to it.
  const problems = (err.problems || []).filter((p) => !message.includes(p.message));
  return h("div.error-box", { role: "alert" },
    h("strong", message),
    err.hint ? h("div.hint", err.hint) : null,
    problems.length ? h("ul", problems.map((p) => h("li",
      p.field ? h("code", p.field) : null, p.field ? ": " : "", p.message,
      p.hint ? h("span.hint", ` — ${p.hint}`) : null))) : null);
}
