// Browser test of the web console: a running `wechat-bridge demo`, driven in Debian's chromium
// through playwright-core (no browser download). Plays the whole loop by hand, as a person would.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const binary = process.env.WECHAT_BRIDGE_BIN ?? path.join(here, '..', 'target', 'debug', 'wechat-bridge');
const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const artifacts = path.join(here, 'artifacts');

let demo, browser, page, base;
// The agent side the demo runs: the console must work the same for each (CI runs both).
const platform = process.env.DEMO_PLATFORM || 'vonage';

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

before(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  demo = spawn(binary, ['demo', '--platform', platform, '--listen', `127.0.0.1:${port}`], { env: { ...process.env, RUST_LOG: 'warn' } });
  let out = '';
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`demo did not start:\n${out}`)), 60_000);
    demo.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Console:')) { clearTimeout(timer); resolve(); }
    });
    demo.on('exit', (code) => reject(new Error(`demo exited ${code}:\n${out}`)));
  });
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    // Root in CI; the machine has no network, so background fetches only produce errors.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.setDefaultTimeout(15_000);
});

after(async () => {
  await browser?.close();
  demo?.kill('SIGINT');
});

test('a message typed on the phone reaches the agent, the reply is delivered, a failed one is retried', async () => {
  await page.goto(`${base}/#demo`);
  await page.locator('#phone-input').waitFor();

  // The customer writes from the WeChat phone pane; the agent pane shows it.
  await page.fill('#phone-input', 'Hello from the browser');
  await page.click('#phone-send');
  await page.locator('#agent .bubble.inbound', { hasText: 'Hello from the browser' }).waitFor();

  // The agent answers; the reply gets its delivered tick and shows on the phone.
  await page.fill('#agent-input', 'Reply from the agent');
  await page.click('#agent-send');
  await page.locator('#agent .bubble.outbound[data-status="delivered"]', { hasText: 'Reply from the agent' }).waitFor();
  await page.locator('#phone .bubble', { hasText: 'Reply from the agent' }).waitFor();
  // The agent pane names the platform the bridge runs with, and the customer's conversation there.
  const side = { vonage: 'Vonage conversation', chatwoot: 'Chatwoot conversation', webhook: 'webhook events' }[platform];
  await page.locator('#agent-conv', { hasText: side }).waitFor();
  await page.locator('#page-demo', { hasText: `an agent on ${{ vonage: 'Vonage', chatwoot: 'Chatwoot', webhook: 'your app' }[platform]}` }).waitFor();

  // The demo's second customer had a reply fail (48-hour window). They write again, which
  // reopens the window, and the failed reply is retried from the Messages page.
  await page.fill('#phone-openid', 'o_demo_customer_0002');
  await page.fill('#phone-input', 'I am back');
  await page.click('#phone-send');
  await page.locator('#agent .bubble.inbound', { hasText: 'I am back' }).waitFor();
  await page.goto(`${base}/#messages`);
  const failedRow = page.locator('tr[data-status="failed"]').first();
  await failedRow.waitFor();
  const id = await failedRow.getAttribute('data-id');
  await failedRow.locator('button.retry').click();
  await page.locator(`tr[data-id="${id}"][data-status="delivered"]`).waitFor();

  // Conversations and health render too.
  await page.goto(`${base}/#conversations`);
  await page.locator('text=o_demo_customer_0001').first().waitFor();
  await page.goto(`${base}/#demo`);
  await page.locator('#agent .bubble.outbound[data-status="delivered"]').first().waitFor();
  mkdirSync(artifacts, { recursive: true });
  await page.screenshot({ path: path.join(artifacts, platform === 'vonage' ? 'console.png' : `console-${platform}.png`), fullPage: true });

  const health = await (await fetch(`${base}/api/health`)).json();
  assert.equal(health.messages.failed, 0, 'the retried reply is no longer failed');
});
