// One VM: its state and lifecycle buttons, settings (editable when it is stopped), disks,
// port forwards, shared folders, snapshots as a tree, and its logs. A VM on a libvirt host
// (HOST:VM) has what VM-Desk does with it there: its state, lifecycle, files, snapshots,
// clone and delete; its description is shown, not edited, and no status events come for it.
import { actionButtons } from "./actions.js";
import { del, followJob, get, patch, post, vmPath } from "./api.js";
import { navigate } from "./app.js";
import { badge, clear, fill, errorBox, errorToast, formatBytes, h, link, toast } from "./dom.js";
import { subscribe } from "./events.js";

const EDITABLE = ["stopped", "crashed"];
const LIVE = ["running", "paused", "starting", "stopping", "unresponsive"];
const HOST_POLL_MS = 5000; // a VM on a host sends no events: its state is asked for

export async function render(root, name) {
  document.title = `${name} — VM-Desk`;
  const base = vmPath(name);
  let detail = null;
  let thumbTimer = null;

  const head = h("div.page-head.vm-head");
  const agentsLine = h("div.muted.agents#vm-agents");
  let agentsTimer = null;
  let closed = false;
  const preview = h("div.vm-preview#vm-preview");
  const sections = {
    settings: h("section.panel#settings"),
    disks: h("section.panel#disks"),
    forwards: h("section.panel#forwards"),
    shares: h("section.panel#shares"),
    snapshots: h("section.panel#snapshots"),
    logs: h("section.panel#logs"),
  };
  root.append(h("section.page.vm-page", { dataset: { vm: name } },
    head,
    h("div.vm-columns",
      h("div.vm-main", sections.settings, sections.disks, sections.forwards, sections.shares),
      h("div.vm-side", preview, sections.snapshots)),
    sections.logs));

  const status = () => detail?.status;
  const editable = () => EDITABLE.includes(status());
  const onHost = () => !!detail?.host;
  const changeable = () => editable() && !onHost(); // a host's VM is not edited from here

  async function load() {
    try {
      detail = await get(base);
    } catch (err) {
      fill(root, h("section.page", errorBox(err),
        h("p", link("/", {}, "Back to the library"))));
      return false;
    }
    drawHead();
    drawPreview();
    drawSettings();
    drawCdroms();
    drawForwards();
    drawShares();
    return true;
  }

  function drawHead() {
    const cfg = detail.config;
    const reason = detail.runtime && (detail.runtime.reason || detail.runtime.error);
    fill(head,
      h("div",
        h("div.crumbs", link("/", {}, "Library"), " / "),
        h("h1", h("span.vm-title", cfg.name), " ", badge(detail.status)),
        onHost() ? h("div.muted#vm-host", `On host ${detail.host} (its files are in the host's storage pool)`) : null,
        h("div.muted", `${cfg.arch} · ${cfg.cpus} CPU${cfg.cpus === 1 ? "" : "s"} · ${cfg.memory} · ${describeBoot(cfg.boot)}`),
        reason && detail.status !== "running" ? h("div.muted.reason", reason) : null,
        // which engine runs the VM here, and why (engine: auto says what decided it)
        detail.engine ? h("div.muted.engine#vm-engine", { title: detail.engine.hint || "" },
          `Engine: ${detail.engine.text}`) : null,
        drawFeatures(),
        drawAgents()),
      h("div.spacer"),
      h("div.actions#vm-actions",
        actionButtons(onHost() ? name : cfg.name, detail.status,
          ["start", "stop", "pause", "resume", "reboot", ...(onHost() ? [] : ["suspend"]), "kill"],
          { onDone: () => refresh() }),
        LIVE.includes(detail.status)
          ? link(`${location.pathname.replace(/\/$/, "")}/console`, { class: "btn", id: "open-console" }, "Console")
          : null,
        h("button.btn#clone-vm", {
          type: "button", disabled: !editable(),
          title: editable() ? "Copy this VM" : "Stop the VM first", on: { click: cloneVM },
        }, "Clone"),
        h("button.btn.btn-danger#delete-vm", {
          type: "button", disabled: !editable() && detail.status !== "suspended",
          title: editable() ? "Delete this VM and its disks" : "Stop the VM first",
          on: { click: deleteVM },
        }, "Delete")));
  }

  // What the VM asks for that is optional, each marked when its engine can't give it
  // (never shown as on when it isn't).
  function drawFeatures() {
    const wanted = detail.features || [];
    if (!wanted.length) return null;
    return h("div.muted.features#vm-features", "Features: ",
      ...wanted.map((f, i) => h(`span.feature${f.available ? "" : ".unavailable"}`,
        { dataset: { feature: f.name }, title: f.reason || "" },
        (i ? ", " : "") + f.label + (f.available ? "" : ` (unavailable: ${f.reason})`))));
  }

  // Which of the guest's agents answer now, and what the guest agent says of the guest:
  // only while the VM runs, and only what an agent has said (the line stays in the head,
  // empty until then).
  function drawAgents() {
    const agents = detail.runtime && detail.runtime.agents;
    if (!LIVE.includes(detail.status) || !agents) return clear(agentsLine);
    const why = {
      waiting: "not answering yet: the guest may still be starting, or the agent is not installed in it",
      none: "this VM has no channel for it",
    };
    const guest = detail.guest;
    const os = guest && ((guest.os && guest.os.name) || "an OS it does not name");
    const address = guest && (guest.ipv4 || guest.ipv6 || "no address yet");
    return fill(agentsLine,
      h("div", "Agents: ", ...[["guest_agent", "guest agent"], ["spice_agent", "SPICE agent"]]
        .filter(([key]) => agents[key])
        .map(([key, label], i) => [i ? " · " : "", h("span.agent", {
          dataset: { agent: key, state: agents[key] }, title: why[agents[key]] || "",
        }, `${label}: ${agents[key]}`)])),
      guest ? h("div#vm-guest", "Guest: ", h("span#vm-guest-os", os), " · ",
        h("span#vm-guest-address", address), guest.host_name ? ` (${guest.host_name})` : "") : null,
      memoryLine(detail.memory));
  }

  // Agents come and go without a status change: ask again.
  function pollAgents() {
    clearTimeout(agentsTimer);
    if (closed) return;
    const agents = detail && detail.runtime && detail.runtime.agents;
    const live = detail && LIVE.includes(detail.status);
    // often while an agent is awaited, or its state is not known yet (a busy supervisor)
    const settled = !live || (agents && !Object.values(agents).includes("waiting")
      && (agents.guest_agent !== "connected" || detail.guest));
    agentsTimer = setTimeout(async () => {
      if (detail && (LIVE.includes(detail.status) || onHost()) && !document.hidden) {
        try {
          const fresh = await get(base);
          if (fresh.status !== detail.status) await refresh();
          else {
            detail.runtime = fresh.runtime;
            detail.guest = fresh.guest;
            drawAgents();
          }
        } catch { /* the next event or poll tells */ }
      }
      pollAgents();
    }, onHost() ? HOST_POLL_MS : settled ? 15000 : 3000);
  }

  function drawPreview() {
    clearInterval(thumbTimer);
    thumbTimer = null;
    const cfg = detail.config;
    const hasDisplay = cfg.display && cfg.display.device !== "none";
    const screen = detail.engine && detail.engine.display;
    if (screen && screen.kind === "window") { // vz: no screenshots; a native macOS window
      fill(preview, h("div.thumb.placeholder#native-window-note",
        h("span", "Shown in a native macOS window: ", h("code", screen.command))));
      return;
    }
    if (hasDisplay && ["running", "paused"].includes(detail.status)) {
      const img = h("img.thumb", { alt: `Screen of ${cfg.name}` });
      const refreshImg = () => {
        const next = new Image();
        next.onload = () => { img.src = next.src; };
        next.src = `${base}/screenshot?t=${Date.now()}`;
      };
      refreshImg();
      thumbTimer = setInterval(() => { if (!document.hidden) refreshImg(); }, 3000);
      fill(preview, link(`${location.pathname.replace(/\/$/, "")}/console`, { title: "Open the console" }, img));
    } else {
      fill(preview, h("div.thumb.placeholder",
        h("span", hasDisplay ? "Not running" : "No display")));
    }
  }

  // -- settings ---------------------------------------------------------------------------

  function drawSettings() {
    const cfg = detail.config;
    const locked = !changeable();
    const form = h("form.settings-form#settings-form", { on: { submit: saveSettings } });
    const display = cfg.display || {};
    const bootKind = cfg.boot?.kind;
    form.append(
      h("fieldset", { disabled: locked },
        h("div.grid2",
          h("label.field", h("span.label", "CPUs"), h("input.input.narrow", { type: "number", name: "cpus", min: 1, value: cfg.cpus, "data-field": "cpus" })),
          h("label.field", h("span.label", "Memory"), h("input.input.narrow", { type: "text", name: "memory", value: cfg.memory, "data-field": "memory" })),
          h("label.field", h("span.label", "Display width"), h("input.input.narrow", { type: "number", name: "width", value: display.width, "data-field": "display.width", disabled: display.device === "none" })),
          h("label.field", h("span.label", "Display height"), h("input.input.narrow", { type: "number", name: "height", value: display.height, "data-field": "display.height", disabled: display.device === "none" })),
          bootKind === "uefi" ? h("label.check", h("input", { type: "checkbox", name: "secure_boot", checked: !!cfg.boot.secure_boot }), " Secure boot") : null,
          h("label.check", h("input", { type: "checkbox", name: "tpm", checked: !!cfg.tpm }), " TPM 2.0"),
          h("label.field", h("span.label", "Isolation"), h("select.input", { name: "isolation" },
            ["isolated", "unrestricted"].map((v) => h("option", { value: v, selected: cfg.isolation === v }, v))))),
        h("div.form-errors"),
        h("div.form-actions", h("button.btn.btn-primary", { type: "submit" }, "Save settings"))));
    fill(sections.settings,
      h("h2", "Settings"),
      locked ? h("p.muted.locked-note", onHost()
        ? `A VM on host ${detail.host} is not changed from here yet.`
        : detail.status === "suspended"
        ? "The VM is suspended: its saved state needs the same hardware. Start it and shut it down, or stop it to discard the state, to edit." :
        "Stop the VM to change its settings.") : null,
      form);
  }

  async function saveSettings(event) {
    event.preventDefault();
    const form = event.target;
    const data = new FormData(form);
    const cfg = detail.config;
    const partial = {
      cpus: Number(data.get("cpus")),
      memory: String(data.get("memory")).trim(),
      tpm: data.get("tpm") === "on",
      isolation: data.get("isolation"),
    };
    if (cfg.display && cfg.display.device !== "none") {
      partial.display = { ...cfg.display, width: Number(data.get("width")), height: Number(data.get("height")) };
    }
    if (cfg.boot?.kind === "uefi") partial.boot = { ...cfg.boot, secure_boot: data.get("secure_boot") === "on" };
    await save(partial, form.querySelector(".form-errors"), "Settings saved");
  }

  /** PATCH the description; problems land in `errors` (or a toast). */
  async function save(partial, errors, done) {
    if (errors) clear(errors);
    try {
      await followJob(await patch(base, partial));
      if (done) toast(done, { kind: "ok", timeout: 2500 });
      await refresh();
      return true;
    } catch (err) {
      if (errors) errors.append(errorBox(err));
      else errorToast(err);
      return false;
    }
  }

  // -- disks ------------------------------------------------------------------------------

  // The add-disk form is made once: reloading the list must not wipe what the user typed.
  const diskTable = h("div#disk-table");
  const cdTable = h("div#cd-table");
  const diskForm = h("form.inline-form#add-disk", { on: { submit: addDisk } },
    h("input.input.narrow", { name: "size", placeholder: "20GiB", required: true, "aria-label": "Size" }),
    h("select.input.narrow", { name: "format", "aria-label": "Format" }, ["qcow2", "raw"].map((f) => h("option", { value: f }, f))),
    h("select.input.narrow", { name: "interface", "aria-label": "Interface" }, ["virtio-blk", "nvme", "usb"].map((f) => h("option", { value: f }, f))),
    h("button.btn", { type: "submit" }, "Add disk"),
    h("div.form-errors"));
  sections.disks.append(h("h2", "Disks"), diskTable, diskForm, cdTable);

  // CD/DVD images (an installer ISO): listed from the description; eject edits it.
  function drawCdroms() {
    const cdroms = detail.config.cdroms || [];
    if (!cdroms.length) {
      clear(cdTable);
      return;
    }
    const errors = h("div.form-errors");
    fill(cdTable, h("h3", "CD/DVD"), h("table.table#cd-list",
      h("tbody", cdroms.map((cd, i) => h("tr",
        h("td", h("code", cd.file)),
        h("td", cd.boot_order ? `boot order ${cd.boot_order}` : ""),
        h("td", h("button.btn.btn-small", {
          type: "button", disabled: !changeable(), "data-action": "eject",
          on: { click: () => save({ cdroms: cdroms.filter((_, j) => j !== i) }, errors, "Ejected") },
        }, "Eject")))))), errors);
  }

  async function drawDisks() {
    diskForm.querySelector("button").disabled = !changeable();
    diskForm.hidden = onHost();
    if (onHost()) return drawHostFiles();
    let disks;
    try {
      disks = await get(`${base}/disks`);
    } catch (err) {
      fill(diskTable, errorBox(err));
      return;
    }
    fill(diskTable, h("table.table#disk-list",
      h("thead", h("tr", ["#", "File", "Interface", "Format", "Size", ""].map((t) => h("th", t)))),
      h("tbody", disks.length ? disks.map((d, i) => h("tr",
        h("td", String(d.index ?? i)),
        h("td", h("code", d.file || d.path || "")),
        h("td", d.interface || ""),
        h("td", d.format || d.image?.format || ""),
        h("td", d.image ? `${formatBytes(d.image.virtual_size)} (${formatBytes(d.image.allocated)} used)` : (d.problem || "")),
        h("td", d.read_only ? "read-only" : ""))) : h("tr", h("td.muted", { colspan: 6 }, "No disks.")))));
  }

  // A host's VM has no bundle here: its files are volumes in the host's pool.
  function drawHostFiles() {
    const files = Object.entries(detail.files || {});
    fill(diskTable, h("table.table#disk-list",
      h("thead", h("tr", ["File", `Volume on ${detail.host}`].map((t) => h("th", t)))),
      h("tbody", files.length ? files.map(([file, volume]) => h("tr",
        h("td", h("code", file)), h("td", h("code", volume))))
        : h("tr", h("td.muted", { colspan: 2 }, "No files.")))));
  }

  async function addDisk(event) {
    event.preventDefault();
    const form = event.target;
    const data = new FormData(form);
    const errors = form.querySelector(".form-errors");
    clear(errors);
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      await followJob(await post(`${base}/disks`, {
        size: String(data.get("size")).trim(), format: data.get("format"), interface: data.get("interface"),
      }));
      toast("Disk added", { kind: "ok", timeout: 2500 });
      form.reset();
      await refresh();
    } catch (err) {
      errors.append(errorBox(err));
    } finally {
      button.disabled = !changeable();
    }
  }

  // -- port forwards ----------------------------------------------------------------------

  function drawForwards() {
    const nics = detail.config.nics || [];
    const index = nics.findIndex((n) => n.mode === "nat");
    const out = [h("h2", "Port forwards")];
    if (index < 0) {
      out.push(h("p.muted", "This VM has no NAT network card, so it has no port forwards."));
      fill(sections.forwards, ...out);
      return;
    }
    const forwards = nics[index].forwards || [];
    out.push(h("table.table#forward-list",
      h("thead", h("tr", ["Protocol", "Host", "Guest port", ""].map((t) => h("th", t)))),
      h("tbody", forwards.length ? forwards.map((f, i) => h("tr",
        h("td", f.protocol), h("td", `${f.host_address}:${f.host_port}`), h("td", String(f.guest_port)),
        h("td", h("button.btn.btn-small", {
          type: "button", disabled: !changeable(),
          on: { click: () => setForwards(index, forwards.filter((_, j) => j !== i)) },
        }, "Remove")))) : h("tr", h("td.muted", { colspan: 4 }, "No port forwards.")))));
    const errors = h("div.form-errors");
    out.push(h("form.inline-form#add-forward", {
      on: {
        submit: (e) => {
          e.preventDefault();
          const d = new FormData(e.target);
          setForwards(index, [...forwards, {
            protocol: d.get("protocol"), host_address: String(d.get("host_address")).trim() || "127.0.0.1",
            host_port: Number(d.get("host_port")), guest_port: Number(d.get("guest_port")),
          }], errors);
        },
      },
    },
    h("select.input.narrow", { name: "protocol", "aria-label": "Protocol" }, ["tcp", "udp"].map((p) => h("option", { value: p }, p))),
    h("input.input.narrow", { name: "host_address", value: "127.0.0.1", "aria-label": "Host address" }),
    h("input.input.narrow", { name: "host_port", type: "number", placeholder: "host port", required: true, "aria-label": "Host port" }),
    h("input.input.narrow", { name: "guest_port", type: "number", placeholder: "guest port", required: true, "aria-label": "Guest port" }),
    h("button.btn", { type: "submit", disabled: !changeable() }, "Add forward"),
    errors));
    fill(sections.forwards, ...out);
  }

  function setForwards(index, forwards, errors) {
    const nics = detail.config.nics.map((n, i) => (i === index ? { ...n, forwards } : n));
    return save({ nics }, errors, "Port forwards saved");
  }

  // -- shared folders ---------------------------------------------------------------------

  function drawShares() {
    const shares = detail.config.shares || [];
    const errors = h("div.form-errors");
    fill(sections.shares,
      h("h2", "Shared folders"),
      h("table.table#share-list",
        h("thead", h("tr", ["Tag", "Host folder", "Access", "Mode", ""].map((t) => h("th", t)))),
        h("tbody", shares.length ? shares.map((s, i) => h("tr",
          h("td", h("code", s.tag)), h("td", h("code", s.path)), h("td", s.read_only ? "read-only" : "read-write"),
          h("td", s.mode || "auto"),
          h("td", h("button.btn.btn-small", {
            type: "button", disabled: !changeable(),
            on: { click: () => save({ shares: shares.filter((_, j) => j !== i) }, errors, "Shared folder removed") },
          }, "Remove")))) : h("tr", h("td.muted", { colspan: 5 }, "No shared folders.")))),
      h("form.inline-form#add-share", {
        on: {
          submit: (e) => {
            e.preventDefault();
            const d = new FormData(e.target);
            save({
              shares: [...shares, {
                tag: String(d.get("tag")).trim(), path: String(d.get("path")).trim(),
                read_only: d.get("read_only") === "on", mode: d.get("mode"),
              }],
            }, errors, "Shared folder added");
          },
        },
      },
      h("input.input", { name: "path", placeholder: "/path/on/this/machine", required: true, "aria-label": "Host folder" }),
      h("input.input.narrow", { name: "tag", placeholder: "tag", required: true, "aria-label": "Tag" }),
      h("label.check", h("input", { type: "checkbox", name: "read_only" }), " read-only"),
      h("select.input.narrow", { name: "mode", "aria-label": "Mode" }, ["auto", "virtiofs", "9p"].map((m) => h("option", { value: m }, m))),
      h("button.btn", { type: "submit", disabled: !changeable() }, "Add folder"),
      errors));
  }

  // -- snapshots --------------------------------------------------------------------------

  async function drawSnapshots() {
    let tree;
    try {
      tree = await get(`${base}/snapshots`);
    } catch (err) {
      fill(sections.snapshots, h("h2", "Snapshots"), errorBox(err));
      return;
    }
    const snaps = Array.isArray(tree) ? tree : tree.snapshots || [];
    const current = tree.current || null;
    const children = (parent) => snaps.filter((s) => (s.parent || null) === parent);
    const node = (snap) => h("li.snapshot", { dataset: { snapshot: snap.name, id: snap.id } },
      h("div.snapshot-row", { class: snap.id === current ? "current" : "" },
        h("span.snapshot-name", snap.name),
        h("span.muted", ` ${new Date(snap.created * 1000).toLocaleString()}${snap.ram ? " · with RAM" : ""}`),
        snap.id === current ? h("span.badge.now", "now") : null,
        h("span.spacer"),
        h("button.btn.btn-small", { type: "button", "data-action": "revert", on: { click: () => snapAction(snap, "revert") } }, "Revert"),
        h("button.btn.btn-small.btn-danger", { type: "button", "data-action": "delete", on: { click: () => snapAction(snap, "delete") } }, "Delete")),
      children(snap.id).length ? h("ul", children(snap.id).map(node)) : null);
    const errors = h("div.form-errors");
    const form = h("form.inline-form#take-snapshot", {
      on: {
        submit: async (e) => {
          e.preventDefault();
          const d = new FormData(e.target);
          const button = e.target.querySelector("button");
          button.disabled = true;
          button.classList.add("busy");
          clear(errors);
          try {
            const payload = {};
            const snapName = String(d.get("name")).trim();
            if (snapName) payload.name = snapName;
            if (d.get("disk_only") === "on") payload.disk_only = true;
            await followJob(await post(`${base}/snapshots`, payload));
            toast("Snapshot taken", { kind: "ok", timeout: 2500 });
            await drawSnapshots();
          } catch (err) {
            errors.append(errorBox(err));
          } finally {
            button.disabled = false;
            button.classList.remove("busy");
          }
        },
      },
    },
    h("input.input#snapshot-name", { name: "name", placeholder: "name (optional)", "aria-label": "Snapshot name" }),
    h("label.check", h("input", { type: "checkbox", name: "disk_only" }), " disks only"),
    h("button.btn.btn-primary#take-snapshot-button", { type: "submit" }, "Take snapshot"),
    errors);
    fill(sections.snapshots,
      h("h2", "Snapshots"),
      snaps.length ? h("ul.snapshot-tree#snapshot-tree", children(null).map(node))
        : h("p.muted#no-snapshots", "No snapshots yet."),
      form);
  }

  async function snapAction(snap, action) {
    const question = action === "revert"
      ? `Go back to “${snap.name}”? Changes since then are lost.`
      : `Delete snapshot “${snap.name}”?`;
    if (!confirm(question)) return;
    try {
      const path = `${base}/snapshots/${encodeURIComponent(snap.name)}`;
      await followJob(action === "revert" ? await post(`${path}/revert`, {}) : await del(path));
      toast(action === "revert" ? `Reverted to ${snap.name}` : `Deleted ${snap.name}`, { kind: "ok", timeout: 2500 });
    } catch (err) {
      errorToast(err);
    }
    await drawSnapshots();
  }

  // -- logs -------------------------------------------------------------------------------

  function drawLogs() {
    if (onHost()) {
      fill(sections.logs, h("h2", "Logs"), h("p.muted#host-logs",
        `The serial log of a VM on a host is kept on ${detail.host}; its console is live on the Console page.`));
      return;
    }
    const pre = h("pre.log#log-text", "");
    const kind = h("select.input.narrow#log-kind", { "aria-label": "Log" },
      [["serial", "Serial console"], ["engine", "Engine (QEMU)"], ["events", "Events"]].map(([v, t]) => h("option", { value: v }, t)));
    const tail = h("select.input.narrow#log-tail", { "aria-label": "Lines" },
      [100, 500, 2000].map((n) => h("option", { value: n }, `last ${n} lines`)));
    const load = async () => {
      try {
        const text = await get(`${base}/logs?kind=${kind.value}&tail=${tail.value}`);
        // Terminal control sequences (colours, cursor queries) are noise in a text view.
        pre.textContent = typeof text === "string"
          ? text.replace(/\x1b\[[0-9;?]*[ -\/]*[@-~]/g, "").replace(/\x1b[()][A-Z0-9]/g, "")
          : JSON.stringify(text, null, 2);
        if (!pre.textContent) pre.textContent = "(empty)";
        pre.scrollTop = pre.scrollHeight;
      } catch (err) {
        pre.textContent = `${err.message}${err.hint ? `\n${err.hint}` : ""}`;
      }
    };
    kind.addEventListener("change", load);
    tail.addEventListener("change", load);
    fill(sections.logs,
      h("div.panel-head", h("h2", "Logs"), h("div.spacer"), kind, tail,
        h("button.btn.btn-small#log-refresh", { type: "button", on: { click: load } }, "Refresh")),
      pre);
    load();
  }

  // -- clone and delete -------------------------------------------------------------------

  function cloneVM() {
    const errors = h("div.form-errors");
    const progress = h("div.clone-progress");
    const dialog = h("dialog.dialog#clone-dialog",
      h("form", { method: "dialog", on: { submit: submitClone } },
        h("h2", `Clone ${name}`),
        h("label.field", h("span.label", "Name of the clone"),
          h("input.input#clone-name", { name: "name", value: `${name}-clone`, required: true, autocomplete: "off" })),
        h("label.check", h("input", { type: "checkbox", name: "linked" }),
          " Linked clone (its disks start as overlays on this VM's: fast and small)"),
        h("label.check", h("input", { type: "checkbox", name: "forwards" }),
          " Keep the port forwards (only when this VM is deleted or its forwards changed first: a host port is forwarded to one VM)"),
        progress, errors,
        h("div.form-actions.row",
          h("button.btn", { type: "button", value: "cancel", on: { click: () => dialog.close() } }, "Cancel"),
          h("div.spacer"),
          h("button.btn.btn-primary#clone-submit", { type: "submit" }, "Clone"))));
    dialog.addEventListener("close", () => dialog.remove());
    document.body.append(dialog);
    dialog.showModal();

    async function submitClone(event) {
      event.preventDefault();
      const data = new FormData(event.target);
      const target = String(data.get("name")).trim();
      const button = dialog.querySelector("#clone-submit");
      button.disabled = true;
      clear(errors);
      const bar = h("progress", { max: 100 });
      const message = h("span.progress-message", "copying disks…");
      fill(progress, h("div.row", bar, message));
      try {
        await followJob(await post(`${base}/clone`, {
          name: target, linked: data.get("linked") === "on", forwards: data.get("forwards") === "on",
        }), (job) => {
          if (typeof job.progress === "number") bar.value = job.progress;
          if (job.message) message.textContent = job.message;
        });
        dialog.close();
        toast(`Created ${target}`, { kind: "ok", timeout: 2500 });
        navigate(`/vms/${encodeURIComponent(onHost() ? `${detail.host}:${target}` : target)}`);
      } catch (err) {
        clear(progress);
        errors.append(errorBox(err));
        button.disabled = false;
      }
    }
  }

  async function deleteVM() {
    if (!confirm(`Delete ${name} with its disks and snapshots? This cannot be undone.`)) return;
    try {
      await del(base);
      toast(`Deleted ${name}`, { kind: "ok", timeout: 2500 });
      navigate("/");
    } catch (err) {
      errorToast(err);
    }
  }

  async function refresh() {
    if (await load()) {
      drawDisks();
    }
  }

  if (!(await load())) return undefined;
  drawDisks();
  drawSnapshots();
  drawLogs();
  pollAgents();
  const unsubscribe = subscribe((event) => {
    if (event.reconnected || event.vm === name) {
      if (event.event === "removed" || event.event === "deleted") { navigate("/"); return; }
      if (event.status && detail && event.status === detail.status && !event.reconnected) return;
      refresh();
    }
  });
  return () => {
    closed = true;
    unsubscribe();
    clearInterval(thumbTimer);
    clearTimeout(agentsTimer);
  };
}

function describeBoot(boot) {
  if (!boot) return "";
  if (boot.kind === "linux") return "direct kernel boot";
  if (boot.kind === "uefi") return boot.secure_boot ? "UEFI, secure boot" : "UEFI";
  return "BIOS";
}

// A running VM's memory as its guest has it (less what the balloon holds) and as the host
// spends it (the hypervisor's resident memory: what the guest touched and kept).
function memoryLine(memory) {
  if (!memory) return null;
  const mib = (bytes) => `${Math.round(bytes / 1048576)} MiB`;
  return h("div#vm-memory", "Memory: ", h("span#vm-memory-guest", `guest ${mib(memory.guest)}`),
    ` of ${mib(memory.booted)}`,
    memory.host_rss ? [" · ", h("span#vm-memory-host", `host ${mib(memory.host_rss)}`)] : null);
}
