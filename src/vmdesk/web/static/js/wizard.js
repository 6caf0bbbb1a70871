// The creation wizard: source, system, storage, network, shared folders, display and
// firmware, then a summary. Every step is checked by POST /api/validate (the same model
// the CLI uses) and its problems are shown next to the fields they are about. A VM made
// from an image (the catalog's, or one at a URL) is sent with the image and its settings
// (disk size, the cloud-init user...); the server pulls the image as part of the job.
import { followJob, get, post, vmPath } from "./api.js";
import { clear, fill, errorBox, formatBytes, formatMiB, h, hostFacts } from "./dom.js";
import { navigate } from "./app.js";

const STEPS = [
  { id: "source", title: "Source" },
  { id: "system", title: "System" },
  { id: "storage", title: "Storage" },
  { id: "network", title: "Network" },
  { id: "shares", title: "Shared folders" },
  { id: "display", title: "Display & firmware" },
  { id: "summary", title: "Summary" },
];

// Which step a problem's field belongs to (first matching prefix wins).
const FIELD_STEPS = [
  ["name", "source"], ["boot.kernel", "source"], ["boot.initrd", "source"],
  ["boot.cmdline", "source"], ["cdroms", "source"], ["disks[0]", "source"],
  ["arch", "system"], ["cpus", "system"], ["memory", "system"], ["engine", "system"],
  ["disks", "storage"], ["nics", "network"], ["shares", "shares"], ["approved_paths", "shares"],
  ["display", "display"], ["boot", "display"], ["tpm", "display"],
  ["image", "source"], ["url", "source"], ["digest", "source"], ["user", "source"],
  ["ssh_keys", "source"], ["timezone", "source"], ["disk_size", "storage"],
];

// The fields of an image's settings, checked only when the VM is made (the description's
// own are checked as they are typed): the state key each one's problem goes with.
const IMAGE_FIELDS = {
  image: "catalogImage", url: "imageUrl", digest: "imageDigest", user: "user",
  ssh_keys: "sshKeys", timezone: "timezone", disk_size: "imageDiskSize",
};

// What the server calls the fields of an image's settings, as the wizard names them.
const FIELD_ALIASES = { ssh_key_files: "ssh_keys", vm_name: "name" };

const isImage = (s) => s.source === "catalog" || s.source === "url";

const RESOLUTIONS = ["1024x768", "1280x800", "1280x1024", "1440x900", "1920x1080", "2560x1440"];

function stepOf(field, state) {
  if (!field) return "summary";
  if (field.startsWith("disks") && state.source !== "disk") return "storage";
  for (const [prefix, step] of FIELD_STEPS) {
    if (field === prefix || field.startsWith(prefix + ".") || field.startsWith(prefix + "[")
        || field.startsWith(prefix)) return step;
  }
  return "summary";
}

function defaults() {
  return {
    name: "", source: "tiny-linux",
    iso: "", diskFile: "", diskFormat: "qcow2", kernel: "", initrd: "", cmdline: "console=ttyS0",
    arch: "", cpus: 1, memory: 256, memoryUnit: "MiB",
    newDisk: false, diskSize: 20,
    catalogImage: "", imageUrl: "", imageDigest: "", imageDiskSize: 20,
    user: "", sshKeys: "", timezone: "",
    network: "nat", forwards: [],
    shares: [],
    displayDevice: "virtio-gpu", resolution: "1280x800", width: 1280, height: 800,
    firmware: "uefi", secureBoot: false, tpm: false,
    start: false,
    where: "", // "": this desk; else a libvirt host's name
  };
}

/** The VM description the wizard's answers make, as POST /api/vms takes it. */
export function buildConfig(s) {
  const config = {
    name: s.name.trim(),
    arch: s.arch,
    cpus: Number(s.cpus),
    memory: `${s.memory}${s.memoryUnit}`,
    nics: s.network === "nat" ? [{
      mode: "nat",
      forwards: s.forwards.map((f) => ({
        protocol: f.protocol, host_address: f.host_address || "127.0.0.1",
        host_port: Number(f.host_port), guest_port: Number(f.guest_port),
      })),
    }] : [],
    shares: s.shares.map((x) => ({
      tag: x.tag, path: x.path, read_only: !!x.read_only, mode: x.mode || "auto",
    })),
    display: s.displayDevice === "none"
      ? { device: "none", vnc: false }
      : { device: s.displayDevice, width: Number(s.width), height: Number(s.height), vnc: true },
    tpm: !!s.tpm,
  };
  if (s.source === "iso") {
    config.cdroms = [{ file: s.iso.trim(), boot_order: 1 }];
  } else if (s.source === "disk") {
    config.disks = [{ file: s.diskFile.trim(), format: s.diskFormat }];
  } else if (s.source === "kernel") {
    config.boot = { kind: "linux", kernel: s.kernel.trim(), cmdline: s.cmdline };
    if (s.initrd.trim()) config.boot.initrd = s.initrd.trim();
  }
  if (s.source === "iso" || s.source === "disk" || isImage(s)) {
    config.boot = s.firmware === "bios"
      ? { kind: "bios" }
      : { kind: "uefi", secure_boot: !!s.secureBoot };
  }
  return config;
}

/** For a VM made from an image: the image and the settings POST /api/vms takes with it. */
export function buildImageRequest(s) {
  const settings = { disk_size: `${String(s.imageDiskSize).trim()}GiB` };
  if (s.source === "url" && s.imageDigest.trim()) settings.digest = s.imageDigest.trim();
  if (s.user.trim()) settings.user = s.user.trim();
  const keys = sshKeyPaths(s);
  if (keys.length) settings.ssh_keys = keys;
  if (s.timezone.trim()) settings.timezone = s.timezone.trim();
  return { image: s.source === "url" ? s.imageUrl.trim() : s.catalogImage, settings };
}

const sshKeyPaths = (s) => s.sshKeys.split("\n").map((k) => k.trim()).filter(Boolean);

/** A problem as the wizard places it: settings.X and the seed's own names made ours. */
function placed(p) {
  let field = (p.field || "").replace(/^settings\./, "");
  const head = field.split(/[.[]/)[0];
  if (FIELD_ALIASES[head]) field = FIELD_ALIASES[head] + field.slice(head.length);
  return { ...p, field };
}

export async function render(root) {
  document.title = "New VM — VM-Desk";
  const state = defaults();
  let host = {};
  try {
    host = await get("/api/host");
  } catch { /* limits are only shown when known */ }
  // host.arches: [{arch, available, accelerator, reason}] (older servers: plain names)
  const archInfo = (host.arches && host.arches.length ? host.arches : ["x86_64", "aarch64"])
    .map((a) => (typeof a === "string" ? { arch: a, available: true } : a));
  const arches = archInfo.map((a) => a.arch);
  const usable = archInfo.filter((a) => a.available !== false).map((a) => a.arch);
  state.arch = usable.includes(host.host_arch) ? host.host_arch : usable[0] || arches[0];

  // The hosts a VM can be made on: asked for without holding up the wizard (each host is
  // called); the "Where" choice appears once they are known.
  let hosts = [];
  get("/api/hosts").then((known) => {
    hosts = known;
    if (STEPS[current].id === "source" && hosts.length) draw();
  }).catch(() => { /* no hosts to offer: VMs are made on this desk */ });

  let current = 0;
  let problems = [];
  let imageProblems = []; // from creating: kept until their field changes
  let triedNext = false;
  const catalogs = {}; // arch -> {rows} | {error} | a promise of them
  let validating = null;
  let debounce = null;

  const stepper = h("ol.stepper#wizard-steps");
  const body = h("div.wizard-body#wizard-body");
  const back = h("button.btn#wizard-back", { type: "button" }, "Back");
  const next = h("button.btn.btn-primary#wizard-next", { type: "button" }, "Next");
  const general = h("div.wizard-general#wizard-problems");
  root.append(h("section.page.wizard",
    h("div.page-head", h("h1", "New virtual machine")),
    h("div.wizard-layout", stepper,
      h("form.wizard-form#wizard", { novalidate: true, on: { submit: (e) => e.preventDefault() } },
        body, general, h("div.wizard-nav", back, h("div.spacer"), next)))));

  back.addEventListener("click", () => go(current - 1));
  next.addEventListener("click", async () => {
    if (STEPS[current].id === "summary") return create();
    triedNext = true;
    await validateNow();
    const mine = problems.filter((p) => stepOf(p.field, state) === STEPS[current].id);
    if (mine.length) { showProblems(); return; }
    go(current + 1);
  });

  function go(index) {
    current = Math.max(0, Math.min(STEPS.length - 1, index));
    draw();
    validateSoon(0);
  }

  function set(key, value, { redraw = false } = {}) {
    state[key] = value;
    const before = imageProblems.length;
    imageProblems = imageProblems.filter((p) => IMAGE_FIELDS[p.field.split(/[.[]/)[0]] !== key);
    if (imageProblems.length !== before) {
      problems = problems.filter((p) => IMAGE_FIELDS[p.field.split(/[.[]/)[0]] !== key);
    }
    if (["cpus", "memory", "memoryUnit"].includes(key)) state.systemTouched = true;
    if (key === "source" && !state.systemTouched) {
      // The tiny guest is happy with little; an installed OS wants more.
      const tiny = value === "tiny-linux" || value === "kernel";
      // An image's disk holds an OS of its own: more than the tiny guest.
      Object.assign(state, tiny ? { cpus: 1, memory: 256, memoryUnit: "MiB" }
        : { cpus: Math.min(2, host.cpus || 2), memory: 2, memoryUnit: "GiB" });
    }
    if (redraw) draw();
    validateSoon();
  }

  function validateSoon(delay = 350) {
    clearTimeout(debounce);
    debounce = setTimeout(validateNow, delay);
  }

  async function validateNow() {
    clearTimeout(debounce);
    const config = buildConfig(state);
    const mine = (validating = post("/api/validate", { config })
      .then((reply) => (reply && reply.problems) || [])
      .catch((err) => err.problems && err.problems.length ? err.problems
        : [{ field: "", message: err.message, hint: err.hint }]));
    const found = await mine;
    if (mine !== validating) return;
    // The name is required to create, but a missing one is not worth a red line until
    // the user has moved past the first step.
    problems = found.filter((p) => !(p.field === "name" && !state.name.trim() && current === 0))
      .concat(imageChecks(), imageProblems);
    showProblems();
  }

  /** What is missing or wrong in an image's settings, found before asking the server. */
  function imageChecks() {
    if (!isImage(state)) return [];
    const found = [];
    const asked = triedNext || current > 0; // an empty field is not an error at first sight
    if (state.source === "catalog") {
      const known = catalogs[state.arch] && catalogs[state.arch].rows;
      if (!state.catalogImage) {
        if (asked) found.push({ field: "image", message: "choose an image from the catalog", hint: "" });
      } else if (known && !known.some((r) => r.name === state.catalogImage)) {
        found.push({ field: "image", message: `${state.catalogImage} has no ${state.arch} image in the catalog`,
          hint: "choose another image, or another architecture" });
      }
    } else {
      if (asked && !state.imageUrl.trim()) {
        found.push({ field: "url", message: "give the image's URL", hint: "https://... (plain http only from this machine)" });
      }
      if (asked && !state.imageDigest.trim()) {
        found.push({ field: "digest", message: "give the image's digest, so that what arrives can be checked",
          hint: "sha256:HEX or sha512:HEX, as its publisher gives it" });
      }
    }
    const size = String(state.imageDiskSize).trim();
    if (!/^\d+(\.\d+)?$/.test(size) || Number(size) <= 0) {
      found.push({ field: "disk_size", message: `${size || "nothing"} is not a size in GiB`, hint: "e.g. 20" });
    }
    return found.filter((p) => !imageProblems.some((q) => q.field === p.field));
  }

  function showProblems() {
    for (const el of body.querySelectorAll(".field-error")) el.remove();
    for (const el of body.querySelectorAll(".invalid")) el.classList.remove("invalid");
    clear(general);
    const here = STEPS[current].id;
    const unplaced = [];
    for (const p of problems) {
      const step = stepOf(p.field, state);
      if (here !== "summary" && step !== here) continue;
      const target = findField(p.field);
      const msg = h("div.field-error", { role: "alert", dataset: { field: p.field || "" } },
        p.field ? h("code", p.field) : null, p.field ? " " : "", p.message,
        p.hint ? h("div.hint", p.hint) : null);
      if (target && here !== "summary") {
        target.classList.add("invalid");
        (target.closest(".field") || target).append(msg);
      } else {
        if (here === "summary" && step !== "summary") {
          msg.append(" ", h("button.link-button", {
            type: "button", on: { click: () => go(STEPS.findIndex((s) => s.id === step)) },
          }, `Go to ${STEPS.find((s) => s.id === step).title}`));
        }
        unplaced.push(msg);
      }
    }
    if (unplaced.length) general.append(h("div.error-box", unplaced));
    for (const [i, li] of [...stepper.children].entries()) {
      li.classList.toggle("has-problems",
        problems.some((p) => stepOf(p.field, state) === STEPS[i].id));
    }
    if (here === "summary") next.disabled = problems.length > 0;
  }

  function findField(field) {
    if (!field) return null;
    let name = field;
    while (name) {
      const el = body.querySelector(`[data-field="${CSS.escape(name)}"]`);
      if (el) return el;
      const cut = Math.max(name.lastIndexOf("."), name.lastIndexOf("["));
      if (cut <= 0) break;
      name = name.slice(0, cut);
    }
    return null;
  }

  function draw() {
    fill(stepper, ...STEPS.map((s, i) => h("li", {
      class: i === current ? "current" : i < current ? "done" : "",
      dataset: { step: s.id },
    }, h("button.link-button", { type: "button", on: { click: () => go(i) } },
      h("span.step-number", String(i + 1)), s.title))));
    const step = STEPS[current].id;
    fill(body, h("h2", STEPS[current].title), ...PAGES[step]());
    body.dataset.step = step;
    back.disabled = current === 0;
    next.disabled = false;
    next.textContent = step === "summary" ? (state.start ? "Create and start" : "Create") : "Next";
    showProblems();
    const first = body.querySelector("input:not([type=radio]):not([type=checkbox]), select");
    if (first && step !== "summary") first.focus({ preventScroll: true });
  }

  // -- the steps --------------------------------------------------------------------------

  function field(label, control, help) {
    return h("label.field", h("span.label", label), control, help ? h("small.help", help) : null);
  }

  function text(key, attrs = {}) {
    return h("input.input", {
      type: "text", value: state[key], autocomplete: "off", spellcheck: false, ...attrs,
      on: { input: (e) => set(key, e.target.value) },
    });
  }

  function radios(key, options, { redraw = true } = {}) {
    return h("div.choices", { role: "radiogroup" }, options.map(([value, title, help]) =>
      h("label.choice", { class: state[key] === value ? "selected" : "" },
        h("input", {
          type: "radio", name: key, value, checked: state[key] === value,
          on: { change: () => set(key, value, { redraw }) },
        }),
        h("span.choice-title", title), help ? h("small.help", help) : null)));
  }

  function checkbox(key, label, attrs = {}) {
    return h("label.check", h("input", {
      type: "checkbox", checked: !!state[key], ...attrs,
      on: { change: (e) => set(key, e.target.checked, { redraw: true }) },
    }), " ", label);
  }

  const PAGES = {
    source: () => [
      ...(hosts.length ? [whereField()] : []),
      field("Name", text("name", {
        id: "vm-name", name: "name", placeholder: "e.g. dev", required: true, "data-field": "name",
      }), "Letters, digits, '.', '_' or '-'; it names the VM's bundle too."),
      h("div.field", h("span.label", "Boot from"), radios("source", [
        ["tiny-linux", "Built-in tiny Linux", "A small test guest built from Debian packages; boots in seconds."],
        ["catalog", "From the catalog", "A ready-made cloud image (Ubuntu, Debian...), downloaded and checked."],
        ["url", "An image URL", "A qcow2 or raw disk image from the web, checked against its digest."],
        ["iso", "An ISO file", "Install an operating system from an installer image."],
        ["disk", "An existing disk image", "Boot a qcow2 or raw disk you already have."],
        ["kernel", "A kernel and initrd", "Direct Linux boot, no firmware."],
      ])),
      ...(state.source === "catalog" ? [catalogField()] : []),
      ...(state.source === "url" ? [
        field("Image URL", text("imageUrl", {
          id: "image-url", placeholder: "https://cloud.example.org/images/guest.qcow2", "data-field": "url",
        }), "https:// (plain http only from this machine). Downloaded once; later VMs share it."),
        field("Digest", text("imageDigest", {
          id: "image-digest", placeholder: "sha256:… or sha512:…", "data-field": "digest",
        }), "As the image's publisher gives it: what arrives is checked against it."),
      ] : []),
      ...(isImage(state) ? [firstBootFields()] : []),
      ...(state.source === "iso" ? [field("ISO file (path on this machine)", text("iso", {
        id: "iso-path", placeholder: "/home/me/Downloads/debian-12.iso", "data-field": "cdroms",
      }), "Read from where it is; the VM may use it because you named it here.")] : []),
      ...(state.source === "disk" ? [
        field("Disk image (path on this machine)", text("diskFile", {
          id: "disk-path", placeholder: "/srv/images/guest.qcow2", "data-field": "disks[0]",
        })),
        field("Format", h("select.input", {
          id: "disk-format", "data-field": "disks[0].format",
          on: { change: (e) => set("diskFormat", e.target.value) },
        }, ["qcow2", "raw"].map((f) => h("option", { value: f, selected: state.diskFormat === f }, f)))),
      ] : []),
      ...(state.source === "kernel" ? [
        field("Kernel", text("kernel", { id: "kernel-path", placeholder: "/boot/vmlinuz", "data-field": "boot.kernel" })),
        field("Initrd (optional)", text("initrd", { id: "initrd-path", placeholder: "/boot/initrd.img", "data-field": "boot.initrd" })),
        field("Kernel command line", text("cmdline", { id: "cmdline", "data-field": "boot.cmdline" })),
      ] : []),
    ],

    system: () => {
      const cpuMax = host.cpus || 256;
      const memMax = host.memory_mib;
      const memInput = h("input.input.narrow", {
        type: "number", id: "memory", min: 1, value: state.memory, "data-field": "memory",
        on: { input: (e) => set("memory", e.target.value) },
      });
      const unit = h("select.input.narrow", {
        id: "memory-unit", on: { change: (e) => set("memoryUnit", e.target.value) },
      }, ["MiB", "GiB"].map((u) => h("option", { value: u, selected: state.memoryUnit === u }, u)));
      return [
        h("div.field", { "data-field": "arch" }, h("span.label", "Architecture"),
          radios("arch", archInfo.map((a) => [a.arch, a.arch, describeArch(a, host.host_arch)]),
            { redraw: true })),
        field("CPUs", h("input.input.narrow", {
          type: "number", id: "cpus", min: 1, max: cpuMax, value: state.cpus, "data-field": "cpus",
          on: { input: (e) => set("cpus", e.target.value) },
        }), host.cpus ? `This machine has ${host.cpus} CPU${host.cpus === 1 ? "" : "s"}.` : null),
        h("label.field", h("span.label", "Memory"), h("div.row", memInput, unit),
          memMax ? h("small.help", `This machine has ${formatMiB(memMax)} of memory.`) : null),
      ];
    },

    storage: () => {
      const items = [];
      if (isImage(state)) {
        return [
          h("p.muted", `The VM's disk is an overlay on ${state.source === "catalog" ? state.catalogImage || "the image" : "the image"}: the image stays as it was downloaded (other VMs can share it) and the VM's changes go to its own file.`),
          field("Disk size (GiB)", h("input.input.narrow", {
            type: "number", id: "image-disk-size", min: 1, value: state.imageDiskSize, "data-field": "disk_size",
            on: { input: (e) => set("imageDiskSize", e.target.value) },
          }), "What the guest sees; the image's own size if that is larger. Cloud images grow their file system to it on first boot."),
        ];
      }
      if (state.source === "tiny-linux" || state.source === "kernel") {
        items.push(h("p.muted", "This VM boots without a disk. You can add one for its data."));
      } else if (state.source === "disk") {
        items.push(h("p.muted", `It boots from ${state.diskFile || "the disk image you chose"}. You can add a second, blank disk.`));
      } else {
        items.push(h("p.muted", "The installer needs a blank disk to install to."));
        if (!state.newDiskTouched) state.newDisk = true;
      }
      items.push(h("label.check", h("input", {
        type: "checkbox", id: "new-disk", checked: state.newDisk,
        on: { change: (e) => { state.newDiskTouched = true; set("newDisk", e.target.checked, { redraw: true }); } },
      }), " Create a new blank disk"));
      if (state.newDisk) {
        items.push(field("Size (GiB)", h("input.input.narrow", {
          type: "number", id: "disk-size", min: 1, value: state.diskSize, "data-field": "disks",
          on: { input: (e) => set("diskSize", e.target.value) },
        }), "A sparse qcow2 image: it only takes the space the guest writes."));
      }
      return items;
    },

    network: () => [
      h("div.field", { "data-field": "nics" }, h("span.label", "Network"), radios("network", [
        ["nat", "NAT", "The VM reaches the network through this machine; forward ports to reach it."],
        ["none", "None", "No network card."],
      ])),
      ...(state.network === "nat" ? [forwardsEditor()] : []),
    ],

    shares: () => [
      h("p.muted", "Folders of this machine that the guest can mount (VirtioFS or 9p) by their tag."),
      sharesEditor(),
    ],

    display: () => {
      const isLinuxBoot = state.source === "tiny-linux" || state.source === "kernel";
      const presets = RESOLUTIONS.includes(`${state.width}x${state.height}`)
        ? `${state.width}x${state.height}` : "custom";
      const items = [
        field("Display", h("select.input", {
          id: "display-device", "data-field": "display.device",
          on: { change: (e) => set("displayDevice", e.target.value, { redraw: true }) },
        }, [["virtio-gpu", "virtio-gpu (recommended)"], ["ramfb", "ramfb (simple framebuffer)"],
          ["none", "None (serial console only)"]].map(([v, t]) =>
          h("option", { value: v, selected: state.displayDevice === v }, t)))),
      ];
      if (state.displayDevice !== "none") {
        items.push(field("Resolution", h("select.input", {
          id: "resolution", "data-field": "display",
          on: {
            change: (e) => {
              if (e.target.value !== "custom") {
                const [w, hgt] = e.target.value.split("x");
                state.width = Number(w); state.height = Number(hgt);
              }
              state.resolution = e.target.value;
              set("resolution", e.target.value, { redraw: true });
            },
          },
        }, [...RESOLUTIONS, "custom"].map((r) => h("option", {
          value: r, selected: (state.resolution === "custom" ? "custom" : presets) === r,
        }, r === "custom" ? "Custom…" : r.replace("x", " × "))))));
        if (state.resolution === "custom" || presets === "custom") {
          items.push(h("div.row",
            field("Width", h("input.input.narrow", { type: "number", id: "width", value: state.width, "data-field": "display.width", on: { input: (e) => set("width", e.target.value) } })),
            field("Height", h("input.input.narrow", { type: "number", id: "height", value: state.height, "data-field": "display.height", on: { input: (e) => set("height", e.target.value) } }))));
        }
      }
      if (isLinuxBoot) {
        items.push(h("p.muted", "Firmware: none (the kernel is started directly)."));
      } else {
        items.push(h("div.field", { "data-field": "boot" }, h("span.label", "Firmware"), radios("firmware", [
          ["uefi", "UEFI", "Modern OSes; needed for secure boot and Windows 11."],
          ...(state.arch === "x86_64" ? [["bios", "BIOS", "Legacy PC firmware (x86_64 only)."]] : []),
        ])));
        if (state.firmware === "uefi") {
          items.push(checkbox("secureBoot", "Secure boot (the firmware runs only signed boot loaders)", { id: "secure-boot", "data-field": "boot.secure_boot" }));
        }
      }
      items.push(checkbox("tpm", "TPM 2.0 (Windows 11 needs it)", { id: "tpm", "data-field": "tpm" }));
      return items;
    },

    summary: () => {
      const c = buildConfig(state);
      const rows = [
        ["Where", state.where ? `host ${state.where}` : "this desk"],
        ["Name", c.name || "(none yet)"],
        ["Source", describeSource(state)],
        ["System", `${c.arch}, ${c.cpus} CPU${c.cpus === 1 ? "" : "s"}, ${c.memory}`],
        ...(isImage(state) ? [
          ["Disk", `${state.imageDiskSize} GiB, an overlay on the image`],
          ["First boot", describeFirstBoot(state)],
        ] : [["New disk", state.newDisk ? `${state.diskSize} GiB qcow2` : "none"]]),
        ["Network", c.nics.length ? `NAT${c.nics[0].forwards.length ? `, forwards ${c.nics[0].forwards.map((f) => `${f.protocol} ${f.host_address}:${f.host_port} → ${f.guest_port}`).join(", ")}` : ""}` : "none"],
        ["Shared folders", c.shares.length ? c.shares.map((s) => `${s.path} as ${s.tag}${s.read_only ? " (read-only)" : ""}`).join(", ") : "none"],
        ["Display", c.display.device === "none" ? "none" : `${c.display.device}, ${c.display.width} × ${c.display.height}`],
        ["Firmware", c.boot ? (c.boot.kind === "linux" ? "direct kernel boot" : `${c.boot.kind.toUpperCase()}${c.boot.secure_boot ? ", secure boot" : ""}`) : "direct kernel boot (tiny Linux)"],
        ["TPM", c.tpm ? "TPM 2.0" : "none"],
      ];
      return [
        h("dl.summary#wizard-summary", rows.map(([k, v]) => [h("dt", k), h("dd", v)])),
        h("details", h("summary", "The VM description (JSON)"),
          h("pre.code", JSON.stringify(c, null, 2))),
        isImage(state) ? h("details", h("summary", "The image and its settings (JSON)"),
          h("pre.code", JSON.stringify(buildImageRequest(state), null, 2))) : null,
        checkbox("start", "Start the VM once it is created", { id: "start-after" }),
        h("div#create-progress"),
      ];
    },
  };

  /** This desk, or a libvirt host: a VM for a host is made here, then uploaded to it. */
  function whereField() {
    const reachable = hosts.filter((x) => x.reachable);
    const silent = hosts.filter((x) => !x.reachable);
    return h("div.field#wizard-where", h("span.label", "Where"),
      radios("where", [
        ["", "This desk", "Run by VM-Desk on this machine."],
        ...reachable.map((x) => [x.name, `Host ${x.name}`,
          `${hostFacts(x)}. Made here with the same rules, then its files are uploaded to the host's storage pool.`]),
      ]),
      silent.map((x) => h("small.help.host-silent", `Host ${x.name} does not answer: ${x.error || "no reply"}`)));
  }

  // -- images -----------------------------------------------------------------------------

  /** The catalog's images for the chosen architecture, as choices (loaded once per arch). */
  function catalogField() {
    const list = h("div.image-list#catalog-list", { role: "radiogroup", "data-field": "image" });
    const archSelect = h("select.input.narrow", {
      id: "catalog-arch", "aria-label": "Architecture",
      on: { change: (e) => set("arch", e.target.value, { redraw: true }) },
    }, arches.map((a) => h("option", { value: a, selected: state.arch === a }, a)));
    const wanted = state.arch;
    const known = catalogs[wanted];
    if (known && !(known instanceof Promise)) {
      fillCatalog(list, known);
    } else {
      fill(list, h("p.loading", "Loading the catalog…"));
      loadCatalog(wanted).then((loaded) => {
        if (list.isConnected && state.arch === wanted) {
          fillCatalog(list, loaded);
          validateSoon(0);
        }
      });
    }
    return h("div.field", h("div.row", h("span.label", "Catalog images for"), archSelect),
      list, h("small.help", "Downloaded into VM-Desk's cache when the VM is made, and checked against the catalog's digest."));
  }

  function loadCatalog(arch) {
    if (!catalogs[arch]) {
      catalogs[arch] = get(`/api/images?arch=${encodeURIComponent(arch)}`)
        .then((reply) => ({ rows: reply.catalog || [] }))
        .catch((err) => ({ error: err }))
        .then((loaded) => { catalogs[arch] = loaded; return loaded; });
    }
    return Promise.resolve(catalogs[arch]);
  }

  function fillCatalog(list, loaded) {
    if (loaded.error) {
      fill(list, errorBox(loaded.error));
      return;
    }
    if (!loaded.rows.length) {
      fill(list, h("p.muted", `The catalog has no images for ${state.arch}.`));
      return;
    }
    fill(list, loaded.rows.map((row) => h("label.choice.image-choice", {
      class: state.catalogImage === row.name ? "selected" : "", dataset: { image: row.name },
    },
    h("input", {
      type: "radio", name: "catalogImage", value: row.name, checked: state.catalogImage === row.name,
      on: { change: () => {
        for (const el of list.querySelectorAll(".choice")) el.classList.toggle("selected", el.dataset.image === row.name);
        set("catalogImage", row.name);
      } },
    }),
    h("span.choice-title", h("span.image-name", row.name), row.kind ? h("span.image-kind", ` · ${row.kind}`) : null),
    h("span.image-description", row.description),
    h("span.image-facts",
      row.cached
        ? h("span.badge.state-running", `downloaded${row.size ? ` · ${formatBytes(row.size)}` : ""}`)
        : h("span.badge", `not downloaded${row.size ? ` · ${formatBytes(row.size)}` : ""}`),
      h("span.badge", row.cloud_init ? "cloud-init: yes" : "cloud-init: no")))));
  }

  /** The guest's first boot, through its cloud-init seed: who logs in, with which keys. */
  function firstBootFields() {
    return h("fieldset.first-boot#first-boot",
      h("legend", "First boot (cloud-init)"),
      h("div.first-boot-row",
        field("User name (optional)", text("user", { id: "image-user", placeholder: "e.g. alice", "data-field": "user" }),
          "Empty: your user name on this machine."),
        field("Time zone (optional)", text("timezone", { id: "image-timezone", placeholder: "e.g. Europe/Paris or UTC", "data-field": "timezone" }),
          "Empty: the image's own (usually UTC).")),
      field("SSH public keys (optional)", h("textarea.input#image-ssh-keys", {
        rows: 2, placeholder: "~/.ssh/id_ed25519.pub", spellcheck: false, "data-field": "ssh_keys",
        value: state.sshKeys, on: { input: (e) => set("sshKeys", e.target.value) },
      }), "Public key files on this machine, one path a line; their keys may log in as the user."));
  }

  function forwardsEditor() {
    const list = h("div.rows#forwards", { "data-field": "nics[0].forwards" });
    const redraw = () => draw();
    state.forwards.forEach((f, i) => {
      list.append(h("div.row.forward", { dataset: { field: `nics[0].forwards[${i}]` } },
        h("select.input.narrow", { "aria-label": "Protocol", on: { change: (e) => { f.protocol = e.target.value; validateSoon(); } } },
          ["tcp", "udp"].map((p) => h("option", { value: p, selected: f.protocol === p }, p))),
        h("input.input.narrow", { type: "text", "aria-label": "Host address", value: f.host_address, on: { input: (e) => { f.host_address = e.target.value; validateSoon(); } } }),
        h("input.input.narrow", { type: "number", placeholder: "host port", "aria-label": "Host port", value: f.host_port, "data-field": `nics[0].forwards[${i}].host_port`, on: { input: (e) => { f.host_port = e.target.value; validateSoon(); } } }),
        h("span", "→ guest"),
        h("input.input.narrow", { type: "number", placeholder: "guest port", "aria-label": "Guest port", value: f.guest_port, "data-field": `nics[0].forwards[${i}].guest_port`, on: { input: (e) => { f.guest_port = e.target.value; validateSoon(); } } }),
        h("button.btn.btn-small", { type: "button", on: { click: () => { state.forwards.splice(i, 1); redraw(); validateSoon(); } } }, "Remove")));
    });
    return h("div.field", h("span.label", "Port forwards"), list,
      h("button.btn.btn-small#add-forward", { type: "button", on: { click: () => {
        state.forwards.push({ protocol: "tcp", host_address: "127.0.0.1", host_port: "", guest_port: "" });
        redraw();
      } } }, "Add a port forward"));
  }

  function sharesEditor() {
    const list = h("div.rows#shares", { "data-field": "shares" });
    state.shares.forEach((s, i) => {
      list.append(h("div.row.share", { dataset: { field: `shares[${i}]` } },
        h("input.input", { type: "text", placeholder: "/path/on/this/machine", "aria-label": "Host folder", value: s.path, "data-field": `shares[${i}].path`, on: { input: (e) => { s.path = e.target.value; if (!s.tagTouched) { s.tag = tagFor(s.path); list.querySelectorAll("input[aria-label=Tag]")[i].value = s.tag; } validateSoon(); } } }),
        h("input.input.narrow", { type: "text", placeholder: "tag", "aria-label": "Tag", value: s.tag, "data-field": `shares[${i}].tag`, on: { input: (e) => { s.tag = e.target.value; s.tagTouched = true; validateSoon(); } } }),
        h("label.check", h("input", { type: "checkbox", checked: s.read_only, on: { change: (e) => { s.read_only = e.target.checked; validateSoon(); } } }), " read-only"),
        h("select.input.narrow", { "aria-label": "Mode", on: { change: (e) => { s.mode = e.target.value; validateSoon(); } } },
          [["auto", "auto"], ["virtiofs", "VirtioFS"], ["9p", "9p"]].map(([v, t]) => h("option", { value: v, selected: s.mode === v }, t))),
        h("button.btn.btn-small", { type: "button", on: { click: () => { state.shares.splice(i, 1); draw(); validateSoon(); } } }, "Remove")));
    });
    return h("div.field", list, h("button.btn.btn-small#add-share", { type: "button", on: { click: () => {
      state.shares.push({ path: "", tag: "", read_only: false, mode: "auto" });
      draw();
    } } }, "Add a shared folder"));
  }

  // -- creating ---------------------------------------------------------------------------

  async function create() {
    await validateNow();
    if (problems.length) return;
    const progress = body.querySelector("#create-progress");
    const steps = h("ol.progress-steps");
    fill(progress, steps);
    next.disabled = true;
    back.disabled = true;
    const config = buildConfig(state);
    const host = state.where;
    const name = host ? `${host}:${config.name}` : config.name; // how the API calls it
    const report = (title) => {
      const li = h("li.running", h("span.progress-title", title), h("progress", { max: 100 }),
        h("span.progress-percent"), h("span.progress-message"));
      steps.append(li);
      return {
        update(job) {
          if (typeof job.progress === "number") {
            li.querySelector("progress").value = job.progress;
            li.querySelector(".progress-percent").textContent = `${Math.floor(job.progress)}%`;
          }
          if (job.message) li.querySelector(".progress-message").textContent = job.message;
        },
        done() { li.className = "done"; li.querySelector("progress").value = 100; },
        fail() { li.className = "failed"; },
      };
    };
    let stage = null;
    try {
      const image = isImage(state) ? buildImageRequest(state) : null;
      stage = report((state.source === "tiny-linux"
        ? "Creating the VM (the tiny Linux image is built on first use)"
        : image ? `Creating the VM from ${state.source === "catalog" ? image.image : "the image"} (downloaded first unless it is cached)`
          : "Creating the VM") + (host ? `, then uploading it to host ${host}` : ""));
      // The server starts the VM itself at the end of the job, unless a disk comes first
      // (on a host the new disk is made with the VM: it can't be added there afterwards).
      const newDisk = state.newDisk && !image && !host;
      const startNow = state.start && !newDisk;
      const body = { config, start: startNow };
      if (state.source === "tiny-linux") body.image = "tiny-linux";
      if (image) Object.assign(body, image);
      if (host) body.host = host;
      if (host && state.newDisk && !image) body.settings = { disk_size: `${state.diskSize}GiB` };
      await followJob(await post("/api/vms", body), stage.update);
      stage.done();
      if (newDisk) {
        stage = report(`Adding a ${state.diskSize} GiB disk`);
        await followJob(await post(`${vmPath(name)}/disks`, { size: `${state.diskSize}GiB` }), stage.update);
        stage.done();
      }
      if (state.start && !startNow) {
        stage = report("Starting");
        await followJob(await post(`${vmPath(name)}/start`, {}), stage.update);
        stage.done();
      }
      stage = null;
      navigate(`/vms/${encodeURIComponent(name)}`);
    } catch (err) {
      if (stage) stage.fail();
      progress.append(errorBox(err));
      if (err.problems && err.problems.length) {
        problems = err.problems.map(placed);
        imageProblems = problems.filter((p) => IMAGE_FIELDS[p.field.split(/[.[]/)[0]]);
        showProblems();
      }
      next.disabled = false;
      back.disabled = false;
    }
  }

  draw();
  validateSoon(0);
  return () => clearTimeout(debounce);
}

function tagFor(path) {
  const base = path.replace(/\/+$/, "").split("/").pop() || "share";
  return base.replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 36);
}

function describeSource(s) {
  switch (s.source) {
    case "tiny-linux": return "built-in tiny Linux";
    case "catalog": return `catalog image ${s.catalogImage || "(none chosen)"} (${s.arch})`;
    case "url": {
      const digest = s.imageDigest.trim();
      return `image at ${s.imageUrl || "(no URL given)"}, checked against ${digest ? `${digest.slice(0, 19)}…` : "(no digest given)"}`;
    }
    case "iso": return `install from ${s.iso || "(no ISO chosen)"}`;
    case "disk": return `disk image ${s.diskFile || "(none chosen)"} (${s.diskFormat})`;
    case "kernel": return `kernel ${s.kernel || "(none)"}${s.initrd ? ` + ${s.initrd}` : ""}`;
    default: return s.source;
  }
}

function describeFirstBoot(s) {
  const keys = sshKeyPaths(s);
  return [
    `user ${s.user.trim() || "(your user name on this machine)"}`,
    keys.length ? `SSH keys from ${keys.join(", ")}` : "no SSH key",
    s.timezone.trim() ? `time zone ${s.timezone.trim()}` : null,
  ].filter(Boolean).join("; ");
}

function describeArch(info, hostArch) {
  if (info.available === false) return `not available here: ${info.reason || "no QEMU for it"}`;
  const own = info.arch === hostArch ? "this machine's own" : "emulated";
  return info.accelerator ? `${own}; runs with ${info.accelerator.toUpperCase()}` : own;
}
