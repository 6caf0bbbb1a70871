// Lifecycle buttons shared by the library cards and the VM page.
import { postAndWait, vmPath } from "./api.js";
import { errorToast, h } from "./dom.js";

// Which actions make sense in which state (the server checks again).
export const ACTIONS = {
  start: { label: "Start", when: ["stopped", "crashed", "suspended"], primary: true },
  stop: { label: "Stop", when: ["running", "paused", "starting", "unresponsive"] },
  pause: { label: "Pause", when: ["running"] },
  resume: { label: "Resume", when: ["paused"] },
  reboot: { label: "Reboot", when: ["running"] },
  suspend: { label: "Suspend", when: ["running", "paused"] },
  kill: { label: "Force stop", when: ["running", "paused", "starting", "stopping", "unresponsive"],
          danger: true },
};

export function actionLabel(action, status) {
  if (action === "start" && status === "suspended") return "Resume";
  return ACTIONS[action].label;
}

/** Run an action; resolves with the server's reply, or null after showing the error. */
export async function runAction(name, action, body = {}) {
  try {
    return await postAndWait(`${vmPath(name)}/${action}`, body);
  } catch (err) {
    errorToast(err);
    return null;
  }
}

/** Buttons for `actions` that apply in `status`; clicking one runs it. */
export function actionButtons(name, status, actions, { onDone = () => {} } = {}) {
  return actions.filter((a) => ACTIONS[a].when.includes(status)).map((action) => {
    const spec = ACTIONS[action];
    const cls = spec.primary ? ".btn.btn-primary" : spec.danger ? ".btn.btn-danger" : ".btn";
    const button = h(`button${cls}`, {
      type: "button", "data-action": action, title: `${actionLabel(action, status)} ${name}`,
    }, actionLabel(action, status));
    button.addEventListener("click", async (event) => {
      event.preventDefault();
      event.stopPropagation();
      if (action === "kill" && !confirm(`Pull the plug on ${name}? Unsaved work in the guest is lost.`)) return;
      button.disabled = true;
      button.classList.add("busy");
      const reply = await runAction(name, action);
      button.disabled = false;
      button.classList.remove("busy");
      if (reply !== null) onDone(action, reply);
    });
    return button;
  });
}
