// End-to-end test of the chat: two Chromium pages (the wasm client in www/) and the native
// terminal client (examples/chat_client) join one examples/chat_server; a message from each
// kind of client reaches all the others. Saves a screenshot of page A to target/chat.png.
//
// Run by `./build.sh test`, which builds everything and starts the server:
//   CHAT_URL=http://127.0.0.1:PORT/ CHAT_CLIENT=target/release/examples/chat_client node tests/e2e/chat.mjs
// Ends with the line `e2e: N passed, N failed[, N skipped]`; exits non-zero on a failure.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHAT_URL = process.env.CHAT_URL;
const CHAT_CLIENT = process.env.CHAT_CLIENT ?? join(ROOT, "target/release/examples/chat_client");
const SCREENSHOT = join(ROOT, "target", "chat.png");
const TIMEOUT = 15_000;
// Debian's Chromium, as root, in a container: no sandbox, no GPU, nothing phoning home.
// Playwright gives every launch a fresh temporary user-data-dir (and adds --headless).
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--disable-dev-shm-usage",
];

if (!CHAT_URL) {
  console.error("CHAT_URL is not set: run the e2e test through ./build.sh test");
  process.exit(2);
}
const WS_URL = CHAT_URL.replace(/^http/, "ws").replace(/\/?$/, "/ws");

// ---- a tiny sequential runner: each step depends on the ones before it ----
const steps = [];
const step = (name, fn) => steps.push({ name, fn });

function fail(message) {
  throw new Error(message);
}

// ---- the native terminal client, driven through its stdin and stdout ----
class TerminalClient {
  constructor(url) {
    this.lines = [];
    this.waiters = [];
    this.proc = spawn(CHAT_CLIENT, ["--url", url], { stdio: ["pipe", "pipe", "inherit"] });
    this.exited = new Promise((resolve) => this.proc.on("exit", (code) => resolve(code)));
    let partial = "";
    this.proc.stdout.setEncoding("utf8");
    this.proc.stdout.on("data", (chunk) => {
      partial += chunk;
      const parts = partial.split("\n");
      partial = parts.pop();
      for (const line of parts) {
        this.lines.push(line);
        this.waiters = this.waiters.filter((w) => !w(line));
      }
    });
  }

  /** Resolves with the first stdout line (seen so far or later) that matches `re`. */
  waitForLine(re, what) {
    const seen = this.lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`terminal client: no line ${what ?? re} in ${TIMEOUT} ms; got:\n${this.lines.join("\n")}`)),
        TIMEOUT,
      );
      this.waiters.push((line) => {
        if (!re.test(line)) return false;
        clearTimeout(timer);
        resolve(line);
        return true;
      });
    });
  }

  say(text) {
    this.proc.stdin.write(`${text}\n`);
  }

  kill() {
    if (this.proc.exitCode === null) this.proc.kill();
  }
}

// ---- helpers for the pages ----
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** Waits until the page's status line says it is connected, and returns its id. */
async function joinedId(page) {
  const status = page.locator("#status", { hasText: /^connected as unisock:\d+$/ });
  await status.waitFor({ timeout: TIMEOUT });
  return (await status.textContent()).replace("connected as ", "");
}

/** Waits until the page's message list has exactly the line `text`. */
async function seesLine(page, text) {
  await page
    .locator("#messages li", { hasText: new RegExp(`^${escape(text)}$`) })
    .waitFor({ timeout: TIMEOUT });
}

// ---- the scenario ----
let browser, pageA, pageB, terminal;
const ids = {};
const pageErrors = [];

async function openPage(name) {
  const page = await browser.newPage({ viewport: { width: 800, height: 520 } });
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => m.type() === "error" && pageErrors.push(`${name} console: ${m.text()}`));
  await page.goto(CHAT_URL);
  return page;
}

step("the native terminal client joins", async () => {
  terminal = new TerminalClient(WS_URL);
  const line = await terminal.waitForLine(/^\* connected as unisock:\d+$/, "'* connected as ...'");
  ids.terminal = line.replace("* connected as ", "");
});

step("page A loads the wasm client and joins", async () => {
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS });
  pageA = await openPage("A");
  ids.a = await joinedId(pageA);
  await seesLine(pageA, `${ids.a} joined`);
  await terminal.waitForLine(new RegExp(`^${escape(ids.a)} joined$`));
});

step("page B joins, and page A sees it join", async () => {
  pageB = await openPage("B");
  ids.b = await joinedId(pageB);
  if (new Set([ids.a, ids.b, ids.terminal]).size !== 3) fail(`ids are not distinct: ${JSON.stringify(ids)}`);
  await seesLine(pageA, `${ids.b} joined`);
});

step("a message typed in page A reaches page A, page B and the terminal client", async () => {
  await pageA.locator("#text").fill("Hello from page A!");
  await pageA.locator("#text").press("Enter");
  const line = `${ids.a} says, 'Hello from page A!'`;
  await seesLine(pageA, line);
  await seesLine(pageB, line);
  await terminal.waitForLine(new RegExp(`^${escape(line)}$`));
  if ((await pageA.locator("#text").inputValue()) !== "") fail("page A's input was not cleared after sending");
});

step("a message from the terminal client reaches both pages", async () => {
  terminal.say("Hello from the terminal ✓");
  const line = `${ids.terminal} says, 'Hello from the terminal ✓'`;
  await seesLine(pageA, line);
  await seesLine(pageB, line);
  await terminal.waitForLine(new RegExp(`^${escape(line)}$`));
});

step("page B leaves (its tab closes), and page A sees it leave", async () => {
  await pageB.close();
  await seesLine(pageA, `${ids.b} left`);
});

step("the terminal client leaves with /quit and exits 0; page A sees it leave", async () => {
  terminal.say("/quit");
  await seesLine(pageA, `${ids.terminal} left`);
  await terminal.waitForLine(/^\* disconnected \(Clean close - 1000: bye\)$/);
  const code = await terminal.exited;
  if (code !== 0) fail(`chat_client exited with ${code}`);
});

step("page A shows the whole conversation in order; screenshot saved", async () => {
  const lines = await pageA.locator("#messages li").allTextContents();
  const want = [
    `${ids.a} joined`,
    `${ids.b} joined`,
    `${ids.a} says, 'Hello from page A!'`,
    `${ids.terminal} says, 'Hello from the terminal ✓'`,
    `${ids.b} left`,
    `${ids.terminal} left`,
  ];
  if (JSON.stringify(lines) !== JSON.stringify(want)) {
    fail(`page A's messages:\n  ${lines.join("\n  ")}\nwanted:\n  ${want.join("\n  ")}`);
  }
  if (pageErrors.length) fail(`errors in the pages:\n${pageErrors.join("\n")}`);
  mkdirSync(dirname(SCREENSHOT), { recursive: true });
  await pageA.screenshot({ path: SCREENSHOT });
  console.log(`screenshot: ${SCREENSHOT}`);
});

let passed = 0;
let failed = 0;
let skipped = 0;
try {
  for (const { name, fn } of steps) {
    if (failed) {
      skipped++;
      console.log(`skip - ${name}`);
      continue;
    }
    try {
      await fn();
      passed++;
      console.log(`ok - ${name}`);
    } catch (e) {
      failed++;
      console.log(`not ok - ${name}\n  ${String(e.stack ?? e).replace(/\n/g, "\n  ")}`);
    }
  }
} finally {
  terminal?.kill();
  await browser?.close();
}
console.log(`e2e: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed ? 1 : 0);
