// Knock's official browser client (@knocklabs/client, pinned in package-lock.json) in
// headless Chromium against real `hark serve` processes: the page connects its feed's
// socket, a workflow is triggered over HTTP, and the page shows the new item because the
// client received `new-message` and refetched.
//
// Environment:
//   HARK_BIN                     the server binary (required)
//   HARK_REALTIME_DATABASE_URL   PostgreSQL database: run two nodes, page on the second
//                                node, trigger on the first (default: one SQLite node)
//   HARK_CHROMIUM                the browser (default /usr/bin/chromium)

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

import * as esbuild from "esbuild";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const HARK_BIN = process.env.HARK_BIN;
const DATABASE_URL = process.env.HARK_REALTIME_DATABASE_URL || "";
const CHROMIUM = process.env.HARK_CHROMIUM || "/usr/bin/chromium";
const NODES = DATABASE_URL ? 2 : 1;
// Guards against hangs only; the test measures nothing.
const HANG_GUARD_MS = 60_000;

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "hark-realtime-"));
const storage = ["--data-dir", dataDir, ...(DATABASE_URL ? ["--database-url", DATABASE_URL] : [])];
const servers = [];
let browser;
let pageServer;

function cli(args, { json = true } = {}) {
  const out = execFileSync(HARK_BIN, [...args, ...(json ? ["--json"] : []), ...storage], {
    encoding: "utf8",
  });
  if (!json) return out;
  const lines = out.split("\n").filter((line) => line.trim());
  return JSON.parse(lines[lines.length - 1]);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

async function waitUntil(what, check) {
  const deadline = Date.now() + HANG_GUARD_MS;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function startNode(index) {
  const port = await freePort();
  const log = fs.openSync(path.join(dataDir, `node-${index}.log`), "w");
  const child = spawn(HARK_BIN, ["serve", "--listen", `127.0.0.1:${port}`, ...storage], {
    stdio: ["ignore", log, log],
  });
  servers.push(child);
  const base = `http://127.0.0.1:${port}`;
  await waitUntil(`node ${index} to be healthy`, async () => (await fetch(`${base}/healthz`)).ok);
  return base;
}

async function api(base, key, method, route, body) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  assert.ok(response.ok, `${method} ${route}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

// An RS256 user token, as a customer's backend would sign it.
function signUserToken(privateKeyPem, userId) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const now = Math.floor(Date.now() / 1000);
  const unsigned = `${encode({ alg: "RS256", typ: "JWT" })}.${encode({ sub: userId, iat: now, exp: now + 3600 })}`;
  const signature = crypto.sign("RSA-SHA256", Buffer.from(unsigned), privateKeyPem);
  return `${unsigned}.${signature.toString("base64url")}`;
}

async function servePage() {
  const bundle = await esbuild.build({
    entryPoints: [path.join(here, "page.js")],
    bundle: true,
    format: "iife",
    platform: "browser",
    write: false,
    logLevel: "error",
  });
  const html = `<!doctype html><meta charset="utf-8"><title>hark realtime</title><script>${bundle.outputFiles[0].text}</script>`;
  const server = http.createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    response.end(html);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

before(async () => {
  assert.ok(HARK_BIN, "set HARK_BIN to the hark binary");
  pageServer = await servePage();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
});

after(async () => {
  await browser?.close();
  pageServer?.close();
  for (const child of servers) child.kill("SIGKILL");
  if (!process.exitCode) fs.rmSync(dataDir, { recursive: true, force: true });
});

test(`the official client shows a new item pushed over the socket (${NODES} node(s))`, async () => {
  const nodes = [];
  for (let i = 0; i < NODES; i++) nodes.push(await startNode(i));
  const triggerNode = nodes[0];
  const socketNode = nodes[nodes.length - 1];

  const keys = cli(["keys", "create", "--environment", "development"]);
  const { service_token: serviceToken } = cli(["tokens", "create"]);
  // Enhanced security on: the page must present a user token signed with this key.
  const signing = cli(["signing-keys", "create", "--environment", "development"]);
  cli(["environments", "set-enhanced-security", "--environment", "development", "--enabled", "true"], {
    json: false,
  });

  const channels = await api(triggerNode, serviceToken, "GET", "/mgmt/v1/channels");
  const channelId = channels.entries.find((channel) => channel.key === "in-app-feed").id;
  await api(triggerNode, serviceToken, "PUT", "/mgmt/v1/workflows/realtime-demo?commit=true", {
    workflow: {
      name: "realtime-demo",
      steps: [
        {
          type: "channel",
          ref: "feed",
          channel_key: "in-app-feed",
          template: { markdown_body: "{{ data.text }}" },
        },
      ],
    },
  });

  const userId = `user-${crypto.randomUUID()}`;
  const trigger = (text) =>
    api(triggerNode, keys.secret_key, "POST", "/v1/workflows/realtime-demo/trigger", {
      recipients: [userId],
      data: { text },
    });

  // One item exists before the page loads; its first fetch shows it.
  await trigger("first item");
  await waitUntil("the first message", async () => {
    const feed = await api(triggerNode, keys.secret_key, "GET", `/v1/users/${userId}/feeds/${channelId}`);
    return feed.entries.length === 1;
  });

  const page = await browser.newPage();
  page.on("console", (message) => {
    if (message.type() === "error") console.error(`[page] ${message.text().slice(0, 200)}`);
  });
  await page.goto(`http://127.0.0.1:${pageServer.address().port}/`);
  await page.evaluate((options) => window.hark.start(options), {
    publicKey: keys.public_key,
    host: socketNode,
    userId,
    userToken: signUserToken(signing.private_key, userId),
    channelId,
  });
  const initial = await page.evaluate(() => window.hark.items());
  assert.equal(initial.length, 1);
  assert.match(JSON.stringify(initial[0].blocks), /first item/);

  await page.waitForFunction(() => window.hark.joined(), null, { timeout: HANG_GUARD_MS });

  const marker = `second item ${crypto.randomUUID()}`;
  await trigger(marker);
  await page.waitForFunction(
    (text) => window.hark.items().some((item) => JSON.stringify(item.blocks).includes(text)),
    marker,
    { timeout: HANG_GUARD_MS },
  );
  const items = await page.evaluate(() => window.hark.items());
  assert.equal(items.length, 2);
  assert.match(JSON.stringify(items[0].blocks), new RegExp(marker), "newest first");
  // The item came through the socket path (push, then refetch), not a reload.
  assert.ok((await page.evaluate(() => window.hark.realtimeEvents)) >= 1);
  const metadata = await page.evaluate(() => window.hark.metadata());
  assert.equal(metadata.unread_count, 2);
  await page.close();
});
