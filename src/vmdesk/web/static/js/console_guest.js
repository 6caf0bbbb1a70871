// The console's clipboard and display size, through the guest's SPICE agent (spice-vdagent
// in its desktop session), by way of /api/vms/NAME/clipboard and /display.
//
// Browsers let a page read or write their clipboard only on the user's gestures: "Paste to
// guest" reads it (or a paste event's own data, which needs no permission), "Copy from
// guest" writes it; when the guest copies something, a notice offers the copy rather than
// writing it silently. While the agent is not connected, the controls say so and stay off.
import { ApiError, get, post, put, vmPath } from "./api.js";
import { h } from "./dom.js";

const TEXT = "text/plain;charset=utf-8";
const MAX_OFFER = 32 << 20; // what the server takes (web/models.py MAX_DATA)
const FOLLOW_DELAY = 300; // ms after the last resize before the guest is asked
const MIN = [640, 480];
const MAX = [3840, 2160];
const WATCH_WAIT = { connected: 25, other: 3 }; // s: soon told of an agent that comes

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

function fromBase64(data) {
  return Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
}

const what = (types) => (types.some((t) => t.startsWith("text/")) ? "text"
  : types.some((t) => t.startsWith("image/")) ? "an image" : "something");

/** The box's size as the guest's display: even numbers, within what guests take. */
export function followSize(width, height) {
  const even = (v, lo, hi) => Math.min(hi, Math.max(lo, Math.floor(v / 2) * 2));
  return [even(width, MIN[0], MAX[0]), even(height, MIN[1], MAX[1])];
}

/**
 * The controls for one console page. ``screen`` is noVNC's box; ``onFollow`` is called
 * when whether the guest follows the box changes (the page then rescales).
 */
export function guestControls({ name, detail, screen, onFollow = () => {} }) {
  const base = vmPath(name);
  const clipFeature = (detail.features || []).find((f) => f.name === "clipboard");
  const clipboardOn = !!detail.config.clipboard && (!clipFeature || clipFeature.available);
  // connected, waiting or none; unknown until a status that names it (a supervisor too
  // busy to answer in time gives none)
  let agent = (detail.runtime && detail.runtime.agents && detail.runtime.agents.spice_agent) || "unknown";
  let status = detail.status;
  let closed = false;
  let sent = ""; // the display size last asked for ("WxH")
  let timer = null;

  const state = h("span.conn#clipboard-state", { dataset: { state: "idle" } });
  const pasteButton = h("button.btn.btn-small#clipboard-paste", {
    type: "button", on: { click: pasteFromBrowser },
    title: "Send this computer's clipboard to the guest (or press Ctrl+V on this page, outside the screen)",
  }, "Paste to guest");
  const copyButton = h("button.btn.btn-small#clipboard-copy", {
    type: "button", on: { click: copyToBrowser }, title: "Put the guest's clipboard on this computer's",
  }, "Copy from guest");
  const followBox = h("input#display-follow", { type: "checkbox", checked: true });
  const followLabel = h("label.check#display-follow-label", followBox, " guest display follows the window");
  const followState = h("span.conn#display-follow-state", { dataset: { state: "idle" } });
  const note = h("span.muted.clip-note#clipboard-note", "");
  const notice = h("div.clip-notice#clipboard-notice", { hidden: true, role: "status" });
  const toolbar = h("div.toolbar.guest-toolbar",
    state, pasteButton, copyButton, note, h("div.spacer"), followState, followLabel);

  const running = () => ["running", "paused", "starting", "stopping", "unresponsive"].includes(status);
  const ready = () => clipboardOn && running() && agent === "connected";
  const following = () => followBox.checked && running() && agent === "connected";

  function drawState() {
    const [kind, text] = !running() ? ["idle", "clipboard: the VM is not running"]
      : clipFeature && !clipFeature.available ? ["idle", `clipboard: unavailable (${clipFeature.reason})`]
        : !clipboardOn ? ["idle", `clipboard: sharing is off for this VM (vmdesk edit ${name} --clipboard)`]
        : agent === "connected" ? ["connected", "clipboard: SPICE agent connected"]
          : agent === "waiting" ? ["waiting", "clipboard: waiting for the guest's SPICE agent (spice-vdagent in its desktop)"]
            : agent === "none" ? ["idle", "clipboard: this VM has no SPICE agent channel"]
              : ["idle", "clipboard: asking the VM about its SPICE agent…"];
    state.dataset.state = kind;
    state.dataset.agent = agent;
    state.textContent = text;
    pasteButton.disabled = copyButton.disabled = !ready();
    followBox.disabled = !(running() && agent === "connected");
    followLabel.title = followBox.disabled
      ? "needs the guest's SPICE agent, which resizes its desktop" : "";
    if (!ready()) notice.hidden = true;
  }

  function say(text) {
    note.textContent = text;
  }

  // -- this computer's clipboard to the guest ---------------------------------------------

  async function offer(type, bytes) {
    if (!ready()) {
      say("not sent: the guest's SPICE agent is not connected");
      return;
    }
    if (bytes.length > MAX_OFFER) {
      say(`not sent: more than ${MAX_OFFER >> 20} MiB`);
      return;
    }
    try {
      const sent = await put(`${base}/clipboard`, { type, data: toBase64(bytes) });
      say(sent.delivered ? `sent ${type === TEXT ? "text" : "an image"} to the guest: paste it there`
        : "sent: the guest gets it once its agent is back");
      note.dataset.sent = String(Date.now());
    } catch (err) {
      say(`not sent: ${err.message}`);
    }
  }

  async function readBrowser() {
    const clip = navigator.clipboard;
    if (clip && clip.read) {
      const items = await clip.read();
      for (const want of ["text/plain", "image/png"]) {
        const item = items.find((i) => i.types.includes(want));
        if (item) {
          const blob = await item.getType(want);
          return [want === "text/plain" ? TEXT : want, new Uint8Array(await blob.arrayBuffer())];
        }
      }
      return null;
    }
    if (clip && clip.readText) {
      const text = await clip.readText();
      return text ? [TEXT, new TextEncoder().encode(text)] : null;
    }
    throw new Error("this browser gives pages no clipboard here");
  }

  async function pasteFromBrowser() {
    let found;
    try {
      found = await readBrowser();
    } catch (err) {
      say(`the browser did not let this page read its clipboard (${err.message}): press Ctrl+V on this page instead`);
      return;
    }
    if (!found) say("this computer's clipboard holds no text or PNG image");
    else await offer(...found);
  }

  // A paste outside the screen and the serial console (noVNC sends Ctrl+V on the screen to
  // the guest as keys) carries its own data: no permission needed.
  function onPaste(event) {
    if (!event.clipboardData || event.target.closest?.(".serial-panel, input, textarea, [contenteditable]")) return;
    const text = event.clipboardData.getData("text/plain");
    const image = [...event.clipboardData.files].find((f) => f.type === "image/png");
    if (!text && !image) return;
    event.preventDefault();
    if (text) offer(TEXT, new TextEncoder().encode(text));
    else image.arrayBuffer().then((data) => offer("image/png", new Uint8Array(data)));
  }
  document.addEventListener("paste", onPaste);

  // -- the guest's clipboard to this computer ---------------------------------------------

  async function copyToBrowser() {
    let got;
    try {
      got = await get(`${base}/clipboard`);
    } catch (err) {
      say(`could not read the guest's clipboard: ${err.message}`);
      return;
    }
    if (got.data === null) {
      say("the guest's clipboard is empty");
      return;
    }
    const bytes = fromBase64(got.data);
    try {
      if (got.type.startsWith("text/")) {
        await navigator.clipboard.writeText(new TextDecoder().decode(bytes));
      } else if (got.type === "image/png" && window.ClipboardItem) {
        const blob = new Blob([bytes], { type: "image/png" });
        await navigator.clipboard.write([new ClipboardItem({ "image/png": blob })]);
      } else {
        say(`the guest's clipboard holds ${got.type}, which this browser cannot take`);
        return;
      }
    } catch (err) {
      say(`the browser did not let this page write its clipboard (${err.message})`);
      return;
    }
    notice.hidden = true;
    say(`copied ${got.type.startsWith("text/") ? "text" : "an image"} from the guest`);
    note.dataset.copied = String(Date.now());
  }

  function guestCopied(types) {
    notice.replaceChildren(`The guest copied ${what(types)}. `,
      h("button.btn.btn-small#clipboard-take", { type: "button", on: { click: copyToBrowser } },
        "Copy to this computer"));
    notice.hidden = false;
  }

  // -- following the guest's clipboard and its agent (a long poll) ------------------------

  let generation = -1;
  let watchable = clipboardOn; // false once the server says this run has no clipboard
  let watching = null; // the poll's AbortController while it runs

  async function watch() {
    if (watching || closed || !running()) return;
    const abort = new AbortController();
    watching = abort;
    while (!closed && running()) {
      try {
        await (watchable ? watchOnce(abort.signal) : pollAgent(abort.signal));
      } catch (err) {
        if (closed || (err instanceof ApiError && err.status === 404)) break;
        const kind = err instanceof ApiError && err.body && err.body.kind;
        if (kind === "Unsupported") watchable = false; // the agent's state alone, then
        else await sleep(kind === "NotRunning" ? 2000 : 5000); // it may be restarting
      }
    }
    if (watching === abort) watching = null;
  }

  async function watchOnce(signal) {
    const wait = agent === "connected" ? WATCH_WAIT.connected : WATCH_WAIT.other;
    const reply = await get(`${base}/clipboard/watch?seen=${generation}&wait=${wait}`, { signal });
    const changed = generation >= 0 && reply.generation !== generation;
    generation = reply.generation;
    setAgent(reply.agents.spice_agent || agent);
    if (reply.owner !== "guest" || !reply.types.length) notice.hidden = true;
    else if (changed && ready()) guestCopied(reply.types);
  }

  // Without the clipboard, whether the agent is there (for the display) from the VM's facts.
  async function pollAgent(signal) {
    const vm = await get(base, { signal });
    setAgent((vm.runtime && vm.runtime.agents && vm.runtime.agents.spice_agent) || agent);
    await sleep(5000);
  }

  function setAgent(next) {
    if (next === agent) return;
    agent = next;
    drawState();
    sent = ""; // a guest agent that came back starts from the size its VM was given
    onFollow();
    followSoon();
  }

  // -- the display follows the box ---------------------------------------------------------

  function followSoon() {
    clearTimeout(timer);
    timer = setTimeout(follow, FOLLOW_DELAY);
  }

  async function follow() {
    if (!following() || !screen.clientWidth) {
      followState.dataset.state = "idle";
      followState.textContent = "";
      return;
    }
    const [width, height] = followSize(screen.clientWidth, screen.clientHeight);
    const key = `${width}x${height}`;
    if (key === sent) return;
    sent = key;
    onFollow(); // scaled again until the guest's framebuffer is the new size
    try {
      await post(`${base}/display`, { width, height });
      Object.assign(followState.dataset, { state: "connected", width, height });
      followState.textContent = `display: asked for ${width} × ${height}`;
    } catch (err) {
      sent = "";
      followState.dataset.state = "failed";
      followState.textContent = `display: ${err.message}`;
    }
  }

  const resizes = new ResizeObserver(followSoon);
  resizes.observe(screen);
  followBox.addEventListener("change", () => {
    sent = "";
    onFollow();
    followSoon();
  });

  drawState();
  watch();

  return {
    toolbar, notice,
    /** The guest follows the box and its framebuffer is the size asked for, or the mode
     * nearest below it (X's CVT modes go in steps of 8 pixels: 1198 gives 1192), and
     * within the box (not a box under the smallest size asked for). */
    fits(width, height) {
      const [w, h] = sent.split("x").map(Number);
      const asked = width <= w && width > w - 8 && height <= h && height > h - 8;
      return following() && asked && width <= screen.clientWidth && height <= screen.clientHeight;
    },
    setStatus(next) {
      status = next;
      if (!running()) {
        agent = "waiting"; // until the next run's agent says otherwise
        generation = -1; // the next run counts from 0 again
      }
      drawState();
      if (running()) {
        watch();
        followSoon();
      }
    },
    close() {
      closed = true;
      if (watching) watching.abort();
      clearTimeout(timer);
      resizes.disconnect();
      document.removeEventListener("paste", onPaste);
    },
  };
}
