// One EventSource on /api/events shared by every page that wants VM state changes.
// Each message is {"vm": NAME, "status": STATUS, "event": KIND}. Subscribers also hear
// {"reconnected": true} after the stream came back, so they can reload what they missed.

const listeners = new Set();
let source = null;
let everOpened = false;

function open() {
  source = new EventSource("/api/events", { withCredentials: true });
  source.addEventListener("open", () => {
    if (everOpened) dispatch({ reconnected: true });
    everOpened = true;
    document.documentElement.dataset.events = "open";
  });
  source.addEventListener("error", () => {
    document.documentElement.dataset.events = "closed";
  });
  source.addEventListener("message", (msg) => {
    let data;
    try { data = JSON.parse(msg.data); } catch { return; }
    dispatch(data);
  });
}

function dispatch(data) {
  for (const fn of [...listeners]) {
    try { fn(data); } catch (exc) { console.error(exc); }
  }
}

/** Listen to VM events; returns the function that stops listening. */
export function subscribe(fn) {
  listeners.add(fn);
  if (!source) open();
  return () => {
    listeners.delete(fn);
    if (!listeners.size && source) {
      source.close();
      source = null;
      everOpened = false;
      delete document.documentElement.dataset.events;
    }
  };
}
