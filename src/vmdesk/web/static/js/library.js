// The library: every VM as a card (name, OS/arch, state, live screen for running VMs with
// a display, lifecycle buttons), a filter, and live updates from /api/events.
import { actionButtons } from "./actions.js";
import { get, vmPath } from "./api.js";
import { badge, clear, fill, errorBox, formatMiB, h, link } from "./dom.js";
import { subscribe } from "./events.js";

const THUMB_EVERY_MS = 3000;
const LIVE = ["running", "paused", "starting", "stopping", "unresponsive"];

export async function render(root) {
  document.title = "Library — VM-Desk";
  const filter = h("input#filter.input", {
    type: "search", placeholder: "Filter by name", "aria-label": "Filter VMs by name",
    autocomplete: "off", value: sessionStorage.getItem("vmdesk.filter") || "",
  });
  const grid = h("div.vm-grid#vm-grid");
  const summary = h("span.muted#vm-count");
  root.append(h("section.page.library",
    h("div.page-head",
      h("h1", "Library"), summary,
      h("div.spacer"), filter,
      link("/new", { class: "btn btn-primary", id: "new-vm" }, "New VM")),
    grid));

  const cards = new Map(); // name -> {vm, el}
  let timer = null;

  function applyFilter() {
    const text = filter.value.trim().toLowerCase();
    sessionStorage.setItem("vmdesk.filter", filter.value);
    let shown = 0;
    for (const [name, card] of cards) {
      const match = !text || name.toLowerCase().includes(text);
      card.el.hidden = !match;
      if (match) shown++;
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

  await reload();
  return () => {
    unsubscribe();
    clearInterval(timer);
  };
}

const OS_NAMES = { linux: "Linux", windows: "Windows", macos: "macOS" };

function osName(vm) {
  if (vm.os) return vm.os;  // what the guest's agent last reported
  const hint = vm.os_hint || (vm.boot === "linux" ? "linux" : "");
  return OS_NAMES[hint] || hint;
}
