// Copies the browser files VM-Desk's web UI needs from node_modules (installed by `npm ci`
// from package-lock.json) into ../static/vendor/, which the server serves as /static/vendor.
// static/vendor/ is generated: it is git-ignored and rebuilt by scripts/setup.sh.
//
//   novnc/core/**, novnc/vendor/pako/**   noVNC's ES modules (core imports ../vendor/pako)
//   xterm/xterm.mjs, xterm/xterm.css      xterm.js
//   xterm/addon-fit.mjs                   fits the terminal to its box
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const modules = join(here, "node_modules");
const vendor = join(here, "..", "static", "vendor");

// [from (under node_modules), to (under static/vendor)]
const FILES = [
  ["@novnc/novnc/core", "novnc/core"],
  ["@novnc/novnc/vendor/pako", "novnc/vendor/pako"],
  ["@novnc/novnc/LICENSE.txt", "novnc/LICENSE.txt"],
  ["@novnc/novnc/docs", "novnc/docs"],
  ["@xterm/xterm/lib/xterm.mjs", "xterm/xterm.mjs"],
  ["@xterm/xterm/css/xterm.css", "xterm/xterm.css"],
  ["@xterm/xterm/LICENSE", "xterm/LICENSE"],
  ["@xterm/addon-fit/lib/addon-fit.mjs", "xterm/addon-fit.mjs"],
  ["@xterm/addon-fit/LICENSE", "xterm/LICENSE.addon-fit"],
];

for (const [from] of FILES) {
  if (!existsSync(join(modules, from))) {
    console.error(`copy-vendor: ${from} is missing from node_modules; run \`npm ci\` first`);
    process.exit(1);
  }
}
rmSync(vendor, { recursive: true, force: true });
for (const [from, to] of FILES) {
  const dest = join(vendor, to);
  mkdirSync(dirname(dest), { recursive: true });
  // Source maps point at sources that are not shipped; leave them out.
  cpSync(join(modules, from), dest, { recursive: true, filter: (src) => !src.endsWith(".map") });
}
const versions = {};
for (const name of ["@novnc/novnc", "@xterm/xterm", "@xterm/addon-fit"]) {
  versions[name] = JSON.parse(readFileSync(join(modules, name, "package.json"), "utf8")).version;
}
writeFileSync(join(vendor, "versions.json"), JSON.stringify(versions, null, 2) + "\n");
console.log(`copy-vendor: ${Object.entries(versions).map(([n, v]) => `${n}@${v}`).join(", ")}`);
