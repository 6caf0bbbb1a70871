// The library: every VM as a card (name, OS/arch, state, live screen for running VMs with
// a display, lifecycle buttons), a filter, and live updates from /api/events. VMs on
// libvirt hosts follow in one group per host, asked for less often (each ask is a call to
// every host), and never hold up the desk's own list.
import { actionButtons } from "./actions.js";
import { get, vmPath } from "./api.js";
import { badge, clear, fill, errorBox, formatMiB, h, hostFacts, link } from "./dom.js";
import { subscribe } from "./events.js";

const THUMB_EVERY_MS = 3000;
const HOSTS_EVERY_MS = 5000;
const LIVE = ["running", "paused", "starting", "stopping", "unresponsive"];

export async function render(root) {
  document.title = "Library — VM-Desk";
  const filter = h("input#filter.input", {
    type: "search", placeholder: "Filter by name", "aria-label": "Filter VMs by name",
    autocomplete: "off", value: sessionStorage.getItem("vmdesk.filter") || "",
  });
  const grid = h("div.vm-grid#vm-grid");
  const summary = h("span.muted#vm-count");
  // "This desk" is titled only once there are hosts: without them the page is as it was
  const deskTitle = h("h2.group-title#desk-title", { hidden: true }, "This desk");
  const hostGroups = h("div#host-groups");
  const readiness = h("div#doctor-banner", { hidden: true });
  root.append(h("section.page.library",
    h("div.page-head",
      h("h1", "Library"), summary,
      h("div.spacer"), filter,
      link("/new", { class: "btn btn-primary", id: "new-vm" }, "New VM")),
    readiness,
    h("section.vm-group#desk-group", deskTitle, grid),
    hostGroups));
  showReadiness(readiness);

  const cards = new Map(); // name -> {vm, el}
  let timer = null;
  let hostTimer = null;
  let closed = false;

  function applyFilter() {
    const text = filter.value.trim().toLowerCase();
    sessionStorage.setItem("vmdesk.filter", filter.value);
    let shown = 0;
    for (const [name, card] of cards) {
      const match = !text || name.toLowerCase().includes(text);
      card.el.hidden = !match;
      if (match) shown++;
    }
    for (const el of hostGroups.querySelectorAll(".vm-card")) {
      el.hidden = !!text && !el.dataset.vm.toLowerCase().includes(text);
    }
    const none = grid.querySelector(".no-match");
    if (none) none.remove();
    if (cards.size && !shown) {
      grid.append(h("p.no-match.muted", `No VM's name contains “${filter.value.trim()}”.`));
    }
    summary.textContent = cards.size ? `${cards.size} VM${cards.size === 1 ? "" : "s"}` : "";
  }
  filter.addEventListener("input", applyFilter);

  function emptyState() {
    return h("div.empty-state#empty-state",
      h("h2", "No virtual machines yet"),
      h("p", "Create one with the wizard: the built-in tiny Linux boots in seconds, or install an OS from an ISO."),
      link("/new", { class: "btn btn-primary" }, "Create a VM"));
  }

  function makeCard(vm) {
    const el = h("article.vm-card", { dataset: { vm: vm.name } });
    fillCard(el, vm);
    return el;
  }

  function fillCard(el, vm) {
    const old = el.querySelector("img.thumb");
    const showThumb = vm.display && ["running", "paused"].includes(vm.status);
    let screen;
    if (showThumb) {
      screen = old || h("img.thumb", { alt: `Screen of ${vm.name}` });
      if (!old) refreshThumb(screen, vm.name);
    } else {
      screen = h("div.thumb.placeholder", h("span", vm.arch || ""),
        vm.display ? null : h("small", "no display"));
    }
    el.dataset.status = vm.status;
    fill(el,
      link(`/vms/${encodeURIComponent(vm.name)}`, { class: "thumb-link", tabindex: "-1" }, screen),
      h("div.card-body",
        h("div.card-title",
          link(`/vms/${encodeURIComponent(vm.name)}`, { class: "vm-name" }, vm.name),
          badge(vm.status)),
        h("div.card-meta",
          [osName(vm), vm.arch, `${vm.cpus} CPU${vm.cpus === 1 ? "" : "s"}`,
            formatMiB(vm.memory_mib)].filter(Boolean).join(" · ")),
        h("div.card-actions",
          actionButtons(vm.name, vm.status, ["start", "stop", "pause", "resume"], {
            onDone: () => reloadOne(vm.name),
          }),
          LIVE.includes(vm.status) ? link(`/vms/${encodeURIComponent(vm.name)}/console`,
            { class: "btn", "data-action": "console" }, "Console") : null)));
  }

  function refreshThumb(img, name) {
    const next = new Image();
    next.onload = () => {
      img.src = next.src;
      img.dataset.loaded = String(Date.now());
    };
    next.src = `${vmPath(name)}/screenshot?t=${Date.now()}`;
  }

  async function reload() {
    let vms;
    try {
      vms = await get("/api/vms");
    } catch (err) {
      fill(grid, errorBox(err));
      return;
    }
    vms.sort((a, b) => a.name.localeCompare(b.name));
    const seen = new Set(vms.map((vm) => vm.name));
    for (const [name, card] of cards) {
      if (!seen.has(name)) { card.el.remove(); cards.delete(name); }
    }
    grid.querySelector("#empty-state")?.remove();
    grid.querySelector(".error-box")?.remove();
    for (const vm of vms) {
      const card = cards.get(vm.name);
      if (card) {
        card.vm = vm;
        fillCard(card.el, vm);
      } else {
        cards.set(vm.name, { vm, el: makeCard(vm) });
      }
    }
    for (const vm of vms) grid.append(cards.get(vm.name).el); // keep sorted order
    if (!vms.length) grid.append(emptyState());
    applyFilter();
  }

  async function reloadOne(name) {
    let vm;
    try {
      const detail = await get(vmPath(name));
      const card = cards.get(name);
      if (!card) return reload();
      vm = { ...card.vm, status: detail.status };
      card.vm = vm;
      fillCard(card.el, vm);
    } catch {
      reload();
    }
  }

  const unsubscribe = subscribe((event) => {
    if (event.reconnected || !event.vm || !cards.has(event.vm)) {
      reload();
      return;
    }
    if (["added", "removed", "created", "deleted", "renamed"].includes(event.event)) {
      reload();
      return;
    }
    const card = cards.get(event.vm);
    if (event.status && event.status !== card.vm.status) {
      card.vm = { ...card.vm, status: event.status };
      fillCard(card.el, card.vm);
    }
  });

  timer = setInterval(() => {
    if (document.hidden) return;
    for (const card of cards.values()) {
      const img = card.el.querySelector("img.thumb");
      if (img && !card.el.hidden) refreshThumb(img, card.vm.name);
    }
  }, THUMB_EVERY_MS);

  // -- VMs on libvirt hosts ---------------------------------------------------------------

  let hostsLoading = null;

  /** Every host's group, asked again now (after an action) or at the hosts' cadence. */
  function reloadHosts() {
    clearTimeout(hostTimer);
    hostsLoading = hostsLoading || drawHosts().finally(() => {
      hostsLoading = null;
      if (!closed) hostTimer = setTimeout(reloadHosts, HOSTS_EVERY_MS);
    });
    return hostsLoading;
  }

  async function drawHosts() {
    let known;
    try {
      known = await get("/api/hosts");
    } catch (err) {
      fill(hostGroups, errorBox(err));
      return;
    }
    const groups = await Promise.all(known.map(hostGroup));
    if (closed) return;
    deskTitle.hidden = !known.length;
    fill(hostGroups, groups);
    applyFilter();
  }

  async function hostGroup(host) {
    const title = h("div.group-head",
      h("h2.group-title", host.name), h("span.muted.host-facts", hostFacts(host)));
    const group = h("section.vm-group.host-group", { dataset: { host: host.name } }, title);
    if (!host.reachable) {
      group.append(h("p.host-error", { role: "status" }, host.error || "does not answer"));
      return group;
    }
    let vms;
    try {
      vms = await get(`/api/hosts/${encodeURIComponent(host.name)}/vms`);
    } catch (err) {
      group.append(h("p.host-error", { role: "status" }, err.message));
      return group;
    }
    vms.sort((a, b) => a.name.localeCompare(b.name));
    group.append(h("div.vm-grid", vms.length ? vms.map((vm) => hostCard(host.name, vm))
      : h("p.muted.no-vms", "No VM-Desk VMs on this host yet.")));
    return group;
  }

  function hostCard(host, vm) {
    const ref = `${host}:${vm.name}`;
    const page = `/vms/${encodeURIComponent(ref)}`;
    return h("article.vm-card", { dataset: { vm: ref, status: vm.status, host } },
      link(page, { class: "thumb-link", tabindex: "-1" },
        h("div.thumb.placeholder", h("span", vm.arch || ""), h("small", `on ${host}`))),
      h("div.card-body",
        h("div.card-title", link(page, { class: "vm-name" }, vm.name), badge(vm.status)),
        h("div.card-meta", [vm.arch, `${vm.cpus} CPU${vm.cpus === 1 ? "" : "s"}`, vm.memory]
          .filter(Boolean).join(" · ")),
        h("div.card-actions",
          actionButtons(ref, vm.status, ["start", "stop"], { onDone: () => reloadHosts() }),
          LIVE.includes(vm.status) ? link(`${page}/console`,
            { class: "btn", "data-action": "console" }, "Console") : null)));
  }

  await reload();
  reloadHosts();
  return () => {
    closed = true;
    unsubscribe();
    clearInterval(timer);
    clearTimeout(hostTimer);
  };
}

const OS_NAMES = { linux: "Linux", windows: "Windows", macos: "macOS" };

function osName(vm) {
  if (vm.os) return vm.os;  // what the guest's agent last reported
  const hint = vm.os_hint || (vm.boot === "linux" ? "linux" : "");
  return OS_NAMES[hint] || hint;
}

// A first run on a host that lacks QEMU, its firmware or its tools: what `vmdesk doctor`
// found, each with the command that installs what is missing. Warnings (a slower NAT, no
// TPM) are left to `vmdesk doctor`: VMs run without them.
async function showReadiness(banner) {
  let found;
  try {
    found = await get("/api/doctor");
  } catch {
    return; // the library works without this answer
  }
  const failed = found.checks.filter((c) => !c.ok && c.severity === "error");
  if (!failed.length) return;
  fill(banner,
    h("div.doctor-banner",
      h("h2", "This computer can't run VMs yet"),
      h("p", "Install what is missing, then reload this page (`vmdesk doctor` checks again):"),
      h("ul", failed.map((c) => h("li.doctor-check", { dataset: { check: c.name } },
        h("strong", c.name), ": ", c.detail.split("\n")[0],
        c.fix ? h("div", h("code.doctor-fix", c.fix)) : null)))));
  banner.hidden = false;
}
