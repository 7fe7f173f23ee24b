// The Management API through the official `@knocklabs/mgmt` client (pinned in
// package.json), against a real `hark serve` started here. The store is SQLite unless
// HARK_CONFORMANCE_DATABASE_URL is set.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import net from "node:net";
import KnockMgmt from "@knocklabs/mgmt";

const root = resolve(import.meta.dirname, "../../..");
const hark = process.env.HARK_BIN ?? join(root, "target/debug/hark");
const dataDir = mkdtempSync(join(tmpdir(), "hark-mgmt-"));
const storeArgs = ["--data-dir", dataDir];
if (process.env.HARK_CONFORMANCE_DATABASE_URL) {
  storeArgs.push("--database-url", process.env.HARK_CONFORMANCE_DATABASE_URL);
}

let server;
let client;

async function freePort() {
  return new Promise((ok, fail) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on("error", fail);
  });
}

before(async () => {
  const port = await freePort();
  server = spawn(hark, ["serve", "--listen", `127.0.0.1:${port}`, ...storeArgs], {
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, HARK_LOG: "warn" },
  });
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    try {
      if ((await fetch(`${base}/healthz`)).ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error("hark serve did not become healthy");
    await new Promise((r) => setTimeout(r, 100));
  }
  const out = execFileSync(hark, ["tokens", "create", "--json", ...storeArgs]).toString();
  const { service_token } = JSON.parse(out);
  client = new KnockMgmt({ serviceToken: service_token, baseURL: `${base}/mgmt`, maxRetries: 0 });
});

after(() => server?.kill("SIGTERM"));

const feedStep = (markdown) => ({
  type: "channel",
  ref: "feed",
  channel_key: "in-app-feed",
  template: { markdown_body: markdown },
});

test("channels list includes the default in-app feed", async () => {
  const keys = [];
  for await (const channel of client.channels.list()) keys.push([channel.key, channel.type]);
  assert.deepEqual(keys, [["in-app-feed", "in_app_feed"]]);
  const one = await client.channels.retrieve("in-app-feed");
  assert.equal(one.type, "in_app_feed");
  await assert.rejects(client.channels.retrieve("no-such-channel"), (err) => err.status === 404);
});

test("workflows: upsert with commit, retrieve, list, validate, activate", async () => {
  const key = `mgmt-${Date.now()}`;
  const upserted = await client.workflows.upsert(key, {
    environment: "development",
    commit: true,
    workflow: { name: "Mgmt client", steps: [feedStep("Hello **{{ recipient.name }}**")] },
  });
  assert.equal(upserted.workflow.key, key);
  assert.equal(upserted.workflow.environment, "development");
  assert.equal(upserted.workflow.steps[0].channel_type, "in_app_feed");

  const fetched = await client.workflows.retrieve(key, { environment: "development" });
  assert.equal(fetched.name, "Mgmt client");
  assert.equal(fetched.steps[0].template.markdown_body, "Hello **{{ recipient.name }}**");

  const listed = [];
  for await (const w of client.workflows.list({ environment: "development" })) listed.push(w.key);
  assert.ok(listed.includes(key), `${key} in ${listed}`);

  const valid = await client.workflows.validate(key, {
    environment: "development",
    workflow: { name: "Still valid", steps: [feedStep("Hi")] },
  });
  assert.equal(valid.workflow.name, "Still valid");

  await assert.rejects(
    client.workflows.validate(key, {
      environment: "development",
      workflow: { name: "Broken", steps: [{ type: "channel", ref: "x", channel_key: "nope", template: {} }] },
    }),
    (err) => err.status === 422 && /channel_key/.test(JSON.stringify(err.error)),
  );

  const off = await client.workflows.activate(key, { environment: "development", status: false });
  assert.equal(off.workflow.active, false);
  const on = await client.workflows.activate(key, { environment: "development", status: true });
  assert.equal(on.workflow.active, true);
});

test("a wrong service token is refused", async () => {
  const bad = new KnockMgmt({ serviceToken: "nope", baseURL: client.baseURL, maxRetries: 0 });
  await assert.rejects(bad.workflows.retrieve("x", { environment: "development" }), (err) => err.status === 401);
});

test("email layouts: upsert, retrieve, list page by page, refuse a layout without content", async () => {
  const keys = [`layout-a-${Date.now()}`, `layout-b-${Date.now()}`];
  for (const key of keys) {
    const upserted = await client.emailLayouts.upsert(key, {
      environment: "development",
      commit: true,
      email_layout: {
        name: `Layout ${key}`,
        html_layout: "<html><body>{{ content }}</body></html>",
        text_layout: "{{ content }}",
        footer_links: [{ text: "Unsubscribe", url: "https://example.com/u" }],
      },
    });
    assert.equal(upserted.email_layout.key, key);
    assert.equal(upserted.email_layout.environment, "development");
  }
  const fetched = await client.emailLayouts.retrieve(keys[0], { environment: "development" });
  assert.equal(fetched.html_layout, "<html><body>{{ content }}</body></html>");
  assert.deepEqual(fetched.footer_links, [{ text: "Unsubscribe", url: "https://example.com/u" }]);

  const listed = [];
  for await (const layout of client.emailLayouts.list({ environment: "development", limit: 1 })) {
    listed.push(layout.key);
  }
  assert.deepEqual(listed.filter((k) => keys.includes(k)), keys);

  await assert.rejects(
    client.emailLayouts.upsert("no-content", {
      environment: "development",
      email_layout: { name: "No content", html_layout: "<html></html>", text_layout: "" },
    }),
    (err) => err.status === 422 && /html_layout/.test(JSON.stringify(err.error)),
  );
  await assert.rejects(
    client.emailLayouts.retrieve("no-content", { environment: "development" }),
    (err) => err.status === 404,
  );
});
