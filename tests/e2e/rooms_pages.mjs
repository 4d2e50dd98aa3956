// Headless-Chromium room clients for the resumable-delivery fault test (tests/resume_faults.rs
// starts this script and checks what the pages saw, as it checks its native clients).
//
//   node tests/e2e/rooms_pages.mjs PKG_DIR ROOMS URL...
//
// PKG_DIR holds examples/rooms_page bound by wasm-bindgen (rooms_page.js and its wasm);
// ROOMS is a comma-separated list; one page per URL joins every room there. Prints `ready`
// once every page's first connection opened, then answers a command per stdin line:
//   positions  -> `P PAGE ROOM EPOCH OFFSET` per page and room with a position, then `END`
//   events     -> `E PAGE LINE` per line the page logged since the last `events`, then `END`
//   quit       -> closes the browser and exits
// Fails (exit 1, reason on stderr) if a page does not open or throws.

import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const [pkg, rooms, ...urls] = process.argv.slice(2);
if (!pkg || !rooms || urls.length === 0) {
  console.error("usage: rooms_pages.mjs PKG_DIR ROOMS URL...");
  process.exit(2);
}
const TIMEOUT = 30_000;
// As tests/e2e/chat.mjs: Debian's Chromium, as root, in a container.
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

const PAGE = `<!doctype html><meta charset="utf-8"><title>rooms probe</title><link rel="icon" href="data:,">
<script type="module">
import init, { Probe } from "./rooms_page.js";
await init();
const q = new URLSearchParams(location.search);
window.probe = new Probe(q.get("url"), q.get("rooms"));
</script>`;
const TYPES = { ".js": "text/javascript", ".wasm": "application/wasm" };

// The page and its module, from 127.0.0.1 on a free port.
const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  if (path === "/") {
    res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
    return;
  }
  const ext = path.slice(path.lastIndexOf("."));
  if (!TYPES[ext] || path.includes("..")) {
    res.writeHead(404).end();
    return;
  }
  try {
    const body = await readFile(join(pkg, path));
    res.writeHead(200, { "content-type": TYPES[ext] }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
async function die(why) {
  console.error(`rooms_pages: ${why}`);
  await browser.close().catch(() => {});
  process.exit(1);
}

const pages = [];
for (const [i, url] of urls.entries()) {
  const page = await browser.newPage();
  page.on("pageerror", (e) => die(`page ${i} threw: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && console.error(`page ${i}: ${m.text()}`));
  await page.goto(`${origin}/?url=${encodeURIComponent(url)}&rooms=${encodeURIComponent(rooms)}`);
  pages.push(page);
}
for (const [i, page] of pages.entries()) {
  try {
    await page.waitForFunction(() => window.probe && (window.probe.opened() || window.probe.error()), null, { timeout: TIMEOUT });
  } catch (e) {
    await die(`page ${i} did not open in ${TIMEOUT} ms: ${e.message}`);
  }
  const error = await page.evaluate(() => window.probe.error());
  if (error) await die(`page ${i} could not open ${urls[i]}: ${error}`);
}
console.log("ready");

const lines = (text) => text.split("\n").filter((l) => l !== "");
for await (const command of createInterface({ input: process.stdin })) {
  if (command === "positions" || command === "events") {
    const out = [];
    for (const [i, page] of pages.entries()) {
      if (command === "positions") {
        for (const l of lines(await page.evaluate(() => window.probe.positions()))) out.push(`P ${i} ${l}`);
      } else {
        for (const l of lines(await page.evaluate(() => window.probe.take_events()))) out.push(`E ${i} ${l}`);
      }
    }
    out.push("END");
    process.stdout.write(`${out.join("\n")}\n`);
  } else if (command === "quit") {
    break;
  } else {
    await die(`unknown command ${command}`);
  }
}
await browser.close();
server.close();
