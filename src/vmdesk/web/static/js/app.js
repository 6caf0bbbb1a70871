// VM-Desk's web UI: one page, routed on location.pathname.
//   /                    the library            (library.js)
//   /new                 the creation wizard    (wizard.js)
//   /vms/NAME            one VM                 (vm.js)
//   /vms/NAME/console    its display and serial console (console.js)
// Each page's render(root, params) may return a cleanup function, called when the user
// navigates away (it closes websockets, timers and event subscriptions).

import { clear, fill, errorBox, h, link } from "./dom.js";

const ROUTES = [
  [/^\/$/, "library", () => import("./library.js")],
  [/^\/new\/?$/, "new", () => import("./wizard.js")],
  [/^\/vms\/([^/]+)\/console\/?$/, "console", () => import("./console.js")],
  [/^\/vms\/([^/]+)\/?$/, "vm", () => import("./vm.js")],
];

let cleanup = null;
let generation = 0;

async function render() {
  const root = document.getElementById("app");
  const path = location.pathname;
  const mine = ++generation;
  if (cleanup) {
    try { cleanup(); } catch (exc) { console.error(exc); }
    cleanup = null;
  }
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", !!route && a.dataset.nav === route[1]);
  }
  if (!route) {
    fill(root, h("section.page",
      h("h1", "Not found"), h("p", "There is no page here. ", link("/", {}, "Back to the library"))));
    document.title = "VM-Desk";
    return;
  }
  const [pattern, , load] = route;
  const params = pattern.exec(path).slice(1).map(decodeURIComponent);
  document.body.dataset.page = route[1];
  try {
    const page = await load();
    if (mine !== generation) return;
    clear(root);
    const done = await page.render(root, ...params);
    if (mine !== generation) {
      if (typeof done === "function") done();
      return;
    }
    cleanup = typeof done === "function" ? done : null;
  } catch (exc) {
    if (mine !== generation) return;
    console.error(exc);
    fill(root, h("section.page", errorBox(exc)));
  }
}

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  window.scrollTo(0, 0);
  render();
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

window.addEventListener("popstate", render);

// The access token is only needed once (the server keeps it in an HttpOnly cookie):
// drop it from the address bar and the history.
const here = new URL(location.href);
if (here.searchParams.has("token")) {
  here.searchParams.delete("token");
  history.replaceState(null, "", here.pathname + here.search + here.hash);
}

render();
