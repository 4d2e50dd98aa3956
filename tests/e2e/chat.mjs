// End-to-end test of the chat: two Chromium pages (the wasm client in www/) and the native
// terminal client (examples/chat_client) join one examples/chat_server; a message from each
// kind of client reaches all the others. Then the server is killed (by its PID) and started
// again on the same port: every client shows "reconnecting…", comes back by itself, and a
// line typed while the server was down is said once it is back. Page A is then reloaded
// and shows what was said while it was away (it keeps its positions in session storage).
// Saves a screenshot of page A to target/chat.png.
//
// Run by `./build.sh test`, which builds everything; this script starts (and restarts) the
// server itself:
//   CHAT_SERVER=target/release/examples/chat_server CHAT_CLIENT=target/release/examples/chat_client node tests/e2e/chat.mjs
// Ends with the line `e2e: N passed, N failed[, N skipped]`; exits non-zero on a failure.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CHAT_SERVER = process.env.CHAT_SERVER ?? join(ROOT, "target/release/examples/chat_server");
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

// The page says this while it reconnects (examples/chat/client.rs, RECONNECTING).
const RECONNECTING = /^reconnecting…/;

// ---- a tiny sequential runner: each step depends on the ones before it ----
const steps = [];
const step = (name, fn) => steps.push({ name, fn });

function fail(message) {
  throw new Error(message);
}

// ---- the chat server, a child process: started, killed by its PID, started again ----
class ChatServer {
  /** Starts examples/chat_server on `addr` (port 0: a free one); resolves once it listens. */
  async start(addr) {
    this.proc = spawn(CHAT_SERVER, [addr, join(ROOT, "www")], { stdio: ["ignore", "pipe", "inherit"] });
    this.exited = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve(signal ?? code)));
    this.proc.stdout.setEncoding("utf8");
    let out = "";
    const listening = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`chat_server did not start in ${TIMEOUT} ms: ${out}`)), TIMEOUT);
      this.proc.stdout.on("data", (chunk) => {
        out += chunk;
        const m = out.match(/^listening on (http:\/\/\S+)$/m);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      this.exited.then((code) => reject(new Error(`chat_server exited (${code}): ${out}`)));
    });
    this.url = `${listening}/`;
    this.addr = listening.replace(/^http:\/\//, "");
  }

  /** Kills the server process by its PID; resolves once it has exited. */
  async kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) process.kill(this.proc.pid, "SIGTERM");
    await this.exited;
  }
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

  /** Resolves with the first stdout line from line `from` on (seen so far or later) that matches `re`. */
  waitForLine(re, what, from = 0) {
    const seen = this.lines.slice(from).find((l) => re.test(l));
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

/** Waits until the page's message list has the line `text` (at index `from` or later). */
async function seesLine(page, text, from = 0) {
  await page
    .locator(`#messages li:nth-child(n+${from + 1})`, { hasText: new RegExp(`^${escape(text)}$`) })
    .first()
    .waitFor({ timeout: TIMEOUT });
}

/** Waits until the page's status line matches `re`. */
async function statusIs(page, re) {
  await page.locator("#status", { hasText: re }).waitFor({ timeout: TIMEOUT });
}

const messages = (page) => page.locator("#messages li").allTextContents();

// ---- the scenario ----
let browser, pageA, pageB, terminal, wsUrl;
const server = new ChatServer();
const ids = {};
const pageErrors = [];
// While the server is down, Chromium logs each refused reconnect attempt as an error.
let serverDown = false;

async function openPage(name) {
  const page = await browser.newPage({ viewport: { width: 800, height: 520 } });
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() !== "error") return;
    if (serverDown && /^WebSocket connection to '.*' failed/.test(m.text())) return;
    pageErrors.push(`${name} console: ${m.text()}`);
  });
  await page.goto(server.url);
  return page;
}

step("the chat server starts", async () => {
  await server.start("127.0.0.1:0");
  wsUrl = server.url.replace(/^http/, "ws").replace(/\/?$/, "/ws");
  console.log(`chat server: ${server.url} (pid ${server.proc.pid})`);
});

step("the native terminal client joins", async () => {
  terminal = new TerminalClient(wsUrl);
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

step("page A shows the conversation so far in order", async () => {
  const lines = await messages(pageA);
  const want = [
    `${ids.a} joined`,
    `${ids.b} joined`,
    `${ids.a} says, 'Hello from page A!'`,
    `${ids.terminal} says, 'Hello from the terminal ✓'`,
  ];
  if (JSON.stringify(lines) !== JSON.stringify(want)) {
    fail(`page A's messages:\n  ${lines.join("\n  ")}\nwanted:\n  ${want.join("\n  ")}`);
  }
});

// Where each client's output stood before the restart: later checks look after it (the
// restarted server numbers its sockets from 1 again, so old lines could match new ids).
const mark = {};

step("the chat server is killed: both pages and the terminal client show reconnecting…", async () => {
  mark.a = (await messages(pageA)).length;
  mark.b = (await messages(pageB)).length;
  mark.terminal = terminal.lines.length;
  serverDown = true;
  await server.kill();
  await statusIs(pageA, RECONNECTING);
  await statusIs(pageB, RECONNECTING);
  await terminal.waitForLine(/^\* reconnecting…/, "'* reconnecting…'", mark.terminal);
});

step("a line typed in page A while the server is down is kept (the input clears)", async () => {
  await pageA.locator("#text").fill("Said while the server was down");
  await pageA.locator("#text").press("Enter");
  if ((await pageA.locator("#text").inputValue()) !== "") fail("page A could not send while reconnecting");
  await statusIs(pageA, RECONNECTING);
});

step("the server starts again on the same port: every client reconnects by itself; page A's kept line is said once", async () => {
  await server.start(server.addr);
  console.log(`chat server restarted: ${server.url} (pid ${server.proc.pid})`);
  ids.a = await joinedId(pageA);
  ids.b = await joinedId(pageB);
  const line = await terminal.waitForLine(/^\* connected as unisock:\d+$/, "'* connected as ...'", mark.terminal);
  ids.terminal = line.replace("* connected as ", "");
  serverDown = false;
  if (new Set([ids.a, ids.b, ids.terminal]).size !== 3) fail(`ids are not distinct: ${JSON.stringify(ids)}`);
  // Page A said it once it was back in the room (the others may have come back after it,
  // and a room does not replay what was said before one joined).
  const said = `${ids.a} says, 'Said while the server was down'`;
  await seesLine(pageA, said, mark.a);
  const once = (await messages(pageA)).slice(mark.a).filter((l) => l === said).length;
  if (once !== 1) fail(`page A saw its kept line ${once} times`);
  // The restarted server lost the chat's history (resumable rooms, one process): each
  // page says so instead of staying silent about what it may have missed.
  await seesLine(pageA, "* the server restarted: earlier messages may be missing", mark.a);
  await seesLine(pageB, "* the server restarted: earlier messages may be missing", mark.b);
});

step("after the restart, a message from the terminal client reaches both pages", async () => {
  terminal.say("Back again ✓");
  const line = `${ids.terminal} says, 'Back again ✓'`;
  await seesLine(pageA, line, mark.a);
  await seesLine(pageB, line, mark.b);
  await terminal.waitForLine(new RegExp(`^${escape(line)}$`), undefined, mark.terminal);
});

step("page A, reloaded, goes on where it was: a line said while it was away shows once", async () => {
  // Leaving, the page keeps its rooms' positions in the tab's session storage.
  await pageA.goto("about:blank");
  await seesLine(pageB, `${ids.a} left`, mark.b);
  terminal.say("Said while page A was away");
  const line = `${ids.terminal} says, 'Said while page A was away'`;
  await seesLine(pageB, line, mark.b);
  await pageA.goto(server.url);
  ids.a = await joinedId(pageA);
  // The reloaded page's list starts empty: the line can only have come by resuming (a
  // fresh join gets what is said after it).
  await seesLine(pageA, line);
  const once = (await messages(pageA)).filter((l) => l === line).length;
  if (once !== 1) fail(`page A saw the line ${once} times`);
  mark.a = 0;
});

step("page B leaves (its tab closes), and page A sees it leave", async () => {
  await pageB.close();
  await seesLine(pageA, `${ids.b} left`, mark.a);
});

step("the terminal client leaves with /quit and exits 0; page A sees it leave", async () => {
  terminal.say("/quit");
  await seesLine(pageA, `${ids.terminal} left`, mark.a);
  await terminal.waitForLine(/^\* disconnected \(Clean close - 1000: bye\)$/, undefined, mark.terminal);
  const code = await terminal.exited;
  if (code !== 0) fail(`chat_client exited with ${code}`);
});

step("no errors in the pages; screenshot saved", async () => {
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
  if (server.proc) await server.kill();
}
console.log(`e2e: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed ? 1 : 0);
