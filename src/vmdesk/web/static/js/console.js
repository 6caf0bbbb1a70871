// The console: the VM's display through noVNC and its serial console through xterm.js,
// each over a same-origin websocket that the server bridges to the VM's own sockets.
import RFB from "/static/vendor/novnc/core/rfb.js";
import { Terminal } from "/static/vendor/xterm/xterm.mjs";
import { FitAddon } from "/static/vendor/xterm/addon-fit.mjs";
import { get, vmPath, wsURL } from "./api.js";
import { guestControls } from "./console_guest.js";
import { badge, clear, fill, errorBox, h, link } from "./dom.js";
import { subscribe } from "./events.js";

let cssLoaded = false;

function loadXtermCss() {
  if (cssLoaded) return;
  cssLoaded = true;
  document.head.append(h("link", { rel: "stylesheet", href: "/static/vendor/xterm/xterm.css" }));
}

export async function render(root, name) {
  document.title = `${name} console — VM-Desk`;
  loadXtermCss();
  let detail;
  try {
    detail = await get(vmPath(name));
  } catch (err) {
    root.append(h("section.page", errorBox(err), h("p", link("/", {}, "Back to the library"))));
    return undefined;
  }
  const wsName = encodeURIComponent(name);
  // Where the engine shows the screen (see /api/vms/{name}: engine.display): over VNC
  // here, or, on the vz engine, only in a native macOS window that VM-Desk opens itself.
  const screenKind = detail.engine && detail.engine.display
    ? detail.engine.display.kind
    : (detail.config.display && detail.config.display.device !== "none"
      && detail.config.display.vnc !== false ? "vnc" : "none");
  const hasDisplay = screenKind === "vnc";

  const statusBadge = h("span#console-status", badge(detail.status));
  const vncState = h("span.conn#vnc-state", { dataset: { state: "idle" } }, "display: not connected");
  const resolution = h("span.resolution#vnc-resolution", "");
  const screen = h("div.vnc-screen#vnc-screen", { tabindex: "-1" });
  const serialState = h("span.conn#serial-state", { dataset: { state: "idle" } }, "serial: not connected");
  const termBox = h("div.serial-term#serial-term");
  const scaleBox = h("input#vnc-scale", { type: "checkbox", checked: true });
  const vncButtons = h("div.toolbar",
    vncState, resolution, h("div.spacer"),
    h("label.check", scaleBox, " fit to window"),
    h("button.btn.btn-small#send-cad", { type: "button", on: { click: () => rfb && rfb.sendCtrlAltDel() } }, "Ctrl+Alt+Del"),
    h("button.btn.btn-small#vnc-reconnect", { type: "button", on: { click: () => connectVNC() } }, "Reconnect"));
  // the clipboard and the display's size, through the guest's SPICE agent
  const guest = hasDisplay ? guestControls({ name, detail, screen, onFollow: () => applyScale() }) : null;
  root.append(h("section.page.console-page", { dataset: { vm: name } },
    h("div.page-head",
      h("div", h("div.crumbs", link("/", {}, "Library"), " / ",
        link(`/vms/${wsName}`, {}, name), " / "),
      h("h1", "Console ", statusBadge)),
      h("div.spacer"),
      link(`/vms/${wsName}`, { class: "btn" }, "VM settings")),
    hasDisplay ? h("section.panel.display-panel", h("h2", "Display"), vncButtons, guest.toolbar,
      guest.notice, screen)
      : screenKind === "window" ? h("section.panel#native-window",
        h("h2", "Display"),
        h("p", "This VM runs on the vz engine (Apple Virtualization.framework), which shows "
          + "its screen only in a native macOS window, not in the browser. Open it on the Mac "
          + "that runs the VM: ", h("code#native-window-command", detail.engine.display.command)),
        h("p.muted", "The serial console below works here."))
      : h("section.panel", h("h2", "Display"), h("p.muted", "This VM has no display; use its serial console.")),
    h("section.panel.serial-panel",
      h("div.panel-head", h("h2", "Serial console"), h("div.spacer"), serialState,
        h("button.btn.btn-small#serial-reconnect", { type: "button", on: { click: () => connectSerial() } }, "Reconnect")),
      termBox)));

  // -- display (noVNC) --------------------------------------------------------------------

  let rfb = null;
  let sizeWatch = null;
  let closed = false;

  function setConn(el, state, textValue) {
    el.dataset.state = state;
    el.textContent = textValue;
  }

  // noVNC logs an error when told to disconnect while it is already disconnecting or
  // disconnected (the VM stopped under it), and has no public getter for its state.
  function endRFB(client) {
    if (["connecting", "connected"].includes(client._rfbConnectionState)) client.disconnect();
  }

  function connectVNC() {
    if (!hasDisplay || closed) return;
    if (rfb) {
      const old = rfb;
      rfb = null;
      endRFB(old);
    }
    clear(screen);
    setConn(vncState, "connecting", "display: connecting…");
    const client = new RFB(screen, wsURL(`/ws/vms/${wsName}/vnc`), { shared: true });
    rfb = client;
    window.vmdeskRFB = client; // for diagnostics in the browser's console
    client.scaleViewport = scaleBox.checked;
    client.resizeSession = false; // the guest's SPICE agent resizes it (console_guest.js)
    client.focusOnClick = true;
    client.background = "#111";
    client.addEventListener("connect", () => {
      if (rfb !== client) return;
      setConn(vncState, "connected", "display: connected");
      watchSize();
      client.focus();
    });
    client.addEventListener("disconnect", (e) => {
      if (rfb !== client) return;
      setConn(vncState, "disconnected",
        e.detail && e.detail.clean ? "display: disconnected" : "display: connection lost");
      resolution.textContent = "";
    });
    client.addEventListener("securityfailure", (e) => {
      setConn(vncState, "failed", `display: refused (${e.detail.reason || "security failure"})`);
    });
    client.addEventListener("desktopname", (e) => {
      screen.title = e.detail.name;
    });
  }

  // Shown 1:1 once the guest follows the window at its size; until then, as the user chose.
  function applyScale() {
    if (!rfb) return;
    const canvas = screen.querySelector("canvas");
    rfb.scaleViewport = scaleBox.checked && !(canvas && guest && guest.fits(canvas.width, canvas.height));
  }

  // noVNC has no resize event: watch its canvas, whose size is the guest's framebuffer.
  function watchSize() {
    if (sizeWatch) sizeWatch.disconnect();
    const canvas = screen.querySelector("canvas");
    if (!canvas) return;
    const show = () => {
      if (canvas.width > 0 && canvas.height > 0) {
        resolution.textContent = `${canvas.width} × ${canvas.height}`;
        resolution.dataset.width = canvas.width;
        resolution.dataset.height = canvas.height;
        applyScale();
      }
    };
    show();
    sizeWatch = new MutationObserver(show);
    sizeWatch.observe(canvas, { attributes: true, attributeFilter: ["width", "height"] });
  }

  scaleBox.addEventListener("change", applyScale);

  // -- serial console (xterm.js) ----------------------------------------------------------

  const term = new Terminal({
    convertEol: false, cursorBlink: true, scrollback: 5000, fontSize: 14,
    lineHeight: 1.2,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
    theme: { background: "#101418" },
  });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(termBox);
  window.vmdeskTerm = term; // for diagnostics in the browser's console
  const fitSoon = () => { try { fit.fit(); } catch { /* not laid out yet */ } };
  fitSoon();
  const resizeObserver = new ResizeObserver(fitSoon);
  resizeObserver.observe(termBox);
  const encoder = new TextEncoder();
  let serial = null;

  function connectSerial() {
    if (closed) return;
    if (serial) {
      const old = serial;
      serial = null;
      old.close();
    }
    setConn(serialState, "connecting", "serial: connecting…");
    const ws = new WebSocket(wsURL(`/ws/vms/${wsName}/serial`));
    ws.binaryType = "arraybuffer";
    serial = ws;
    ws.addEventListener("open", () => {
      if (serial !== ws) return;
      setConn(serialState, "connected", "serial: connected");
    });
    ws.addEventListener("message", (msg) => {
      if (serial !== ws) return;
      term.write(typeof msg.data === "string" ? msg.data : new Uint8Array(msg.data));
    });
    ws.addEventListener("close", (e) => {
      if (serial !== ws) return;
      setConn(serialState, "disconnected",
        `serial: disconnected${e.reason ? ` (${e.reason})` : ""}`);
    });
  }
  // xterm.js answers the guest's cursor position queries (ESC [6n, which busybox's shell
  // sends after each prompt) by itself. With several viewers only the one in use answers;
  // otherwise the guest would read the surplus answers as typed text.
  const cursorReport = /^\x1b\[\d+;\d+R$/;
  const typing = term.onData((data) => {
    if (cursorReport.test(data) && !termBox.contains(document.activeElement)) return;
    if (serial && serial.readyState === WebSocket.OPEN) serial.send(encoder.encode(data));
  });
  const binaryTyping = term.onBinary((data) => {
    if (serial && serial.readyState === WebSocket.OPEN) {
      serial.send(Uint8Array.from(data, (c) => c.charCodeAt(0)));
    }
  });

  // -- follow the VM's state --------------------------------------------------------------

  const running = (status) => ["running", "paused", "starting", "stopping", "unresponsive"].includes(status);
  function onStatus(status) {
    fill(statusBadge, badge(status));
    if (guest) guest.setStatus(status);
    if (running(status)) {
      if (!rfb || vncState.dataset.state !== "connected") {
        if (status !== "starting") connectVNC();
      }
      if (!serial || serial.readyState > WebSocket.OPEN) connectSerial();
    }
  }
  const unsubscribe = subscribe((event) => {
    if (event.vm === name && event.status) onStatus(event.status);
  });

  if (running(detail.status)) {
    connectVNC();
    connectSerial();
  } else {
    setConn(vncState, "idle", "display: the VM is not running");
    setConn(serialState, "idle", "serial: the VM is not running");
  }
  termBox.addEventListener("click", () => term.focus());

  return () => {
    closed = true;
    unsubscribe();
    if (guest) guest.close();
    if (sizeWatch) sizeWatch.disconnect();
    resizeObserver.disconnect();
    typing.dispose();
    binaryTyping.dispose();
    if (rfb) endRFB(rfb);
    if (serial) serial.close();
    term.dispose();
    delete window.vmdeskRFB;
    delete window.vmdeskTerm;
  };
}
