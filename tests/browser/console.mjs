// The agentid console in headless Chromium, as an administrator uses it (docs/console.md §8):
// sign in, create a blueprint and an agent, run the demo story (`agentid agent ask`), open the
// chain of the allowed tool call, disable the agent and watch the next call be refused.
//
// Env: BASE (STS base URL), CA_FILE, USERNAME, PASSWORD (the console administrator), SHOT_DIR,
// AGENTID_BIN and WORK_DIR (where `agentid up` runs), AGENT (the agent identity the story uses),
// DEMO_PASSWORD (the demo user's). Prints one JSON line of measurements; exits non-zero on failure.
// TLS as in devicelogin.mjs: the server key is verified against CA_FILE, then pinned.

import { X509Certificate, createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { chromium } from 'playwright-core';

const env = process.env;
for (const k of ['BASE', 'CA_FILE', 'USERNAME', 'PASSWORD', 'SHOT_DIR', 'AGENTID_BIN', 'WORK_DIR', 'AGENT', 'DEMO_PASSWORD']) {
  if (!env[k]) throw new Error(`${k} is required`);
}
const { BASE, SHOT_DIR, AGENT } = env;

function serverSpkiHash(base) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: u.hostname, port: Number(u.port || 443), ca: readFileSync(env.CA_FILE), rejectUnauthorized: true, servername: u.hostname === '127.0.0.1' ? undefined : u.hostname }, () => {
      const der = s.getPeerCertificate(false).raw;
      s.end();
      const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
      resolve(createHash('sha256').update(spki).digest('base64'));
    });
    s.on('error', reject);
  });
}

/// `agentid agent ask "who am I?"` in the `up` directory: true when the tool answered.
function ask() {
  const r = spawnSync(env.AGENTID_BIN, ['agent', 'ask', 'who am I?'], {
    cwd: env.WORK_DIR, encoding: 'utf8', timeout: 60000,
    env: { ...env, AGENTID_HOME: '', AGENTID_AGENT_PASSWORD: env.DEMO_PASSWORD },
  });
  return { ok: r.status === 0 && (r.stdout || '').includes('acting on behalf of'), out: `${r.stdout}\n${r.stderr}` };
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

mkdirSync(SHOT_DIR, { recursive: true });
const spki = await serverSpkiHash(BASE);
const profile = mkdtempSync(join(tmpdir(), 'agentid-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
});
const page = context.pages()[0] ?? await context.newPage();
const violations = [];
page.on('console', (m) => { if (/Content Security Policy|Refused to/.test(m.text())) violations.push(m.text()); });
const shot = async (name) => page.screenshot({ path: join(SHOT_DIR, `${name}.png`), fullPage: true });
const heading = async () => (await page.getByRole('heading', { level: 1 }).textContent()).trim();
const result = {};
try {
  // 1. Sign in through the STS's own authorization code flow.
  await page.goto(`${BASE}/console`);
  await page.getByLabel('Email or user name').fill(env.USERNAME);
  await page.getByLabel('Password').fill(env.PASSWORD);
  await shot('console-signin');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(/\/console$/);
  check(await heading() === 'Overview', `after sign-in: ${await heading()}`);
  await shot('console-home');

  // 2. Create a blueprint and an agent identity of it.
  await page.getByRole('link', { name: 'Create a blueprint' }).first().click();
  await page.getByLabel('Display name').fill('Chromium blueprint');
  await page.getByRole('button', { name: 'Create blueprint' }).click();
  await page.waitForURL(/\/console\/blueprints\/[0-9a-f-]{36}$/);
  check((await heading()).includes('Chromium blueprint'), `blueprint page: ${await heading()}`);
  await page.getByRole('link', { name: 'Create an agent identity' }).click();
  await page.getByLabel('Display name').fill('Chromium agent');
  await page.getByRole('button', { name: 'Create agent identity' }).click();
  await page.waitForURL(/\/console\/blueprints\/[0-9a-f-]{36}$/);
  check(await page.getByRole('rowheader', { name: 'Chromium agent' }).count() === 1, 'the new agent is listed');
  await shot('console-blueprint');

  // 3. The demo story: the agent calls the MCP tool through the gateway for the demo user.
  const first = ask();
  check(first.ok, `the demo story failed: ${first.out}`);

  // 4. The chain of the allowed tool call: every hop named.
  // The gateway ships its decisions in batches: poll the timeline with a deadline.
  const chainLink = page.getByRole('link', { name: 'Chain' }).first();
  const shippedBy = Date.now() + 15000;
  do {
    await page.goto(`${BASE}/console/audit?agent=${AGENT}&decision=allow`);
  } while (await chainLink.count() === 0 && Date.now() < shippedBy && await new Promise((r) => setTimeout(r, 200)) === undefined);
  await shot('console-timeline');
  check(await chainLink.count() === 1, 'the allowed gateway call is in the timeline with a chain link');
  await chainLink.click();
  await page.waitForURL(/\/console\/chains\//);
  const hops = page.locator('table').first().locator('tbody tr');
  const n = await hops.count();
  check(n >= 4, `the chain has ${n} hops`);
  for (let i = 0; i < n; i++) {
    const cells = hops.nth(i).locator('th, td');
    const kind = (await cells.nth(0).textContent()).trim();
    const who = (await cells.nth(1).textContent()).trim();
    check(kind && who, `hop ${i} is not named: '${kind}' '${who}'`);
  }
  const img = page.locator('figure img');
  check(await img.count() === 1 && await img.evaluate((i) => i.complete && i.naturalWidth > 0), 'the chain picture renders');
  result.hops = n;
  await shot('console-chain');

  // 5. The kill switch: disable the agent; the next gateway call is refused within 5 s.
  await page.goto(`${BASE}/console/agents/${AGENT}/disable`);
  await shot('console-disable-confirm');
  await page.getByRole('button', { name: 'Disable agent' }).click();
  await page.waitForLoadState('load');
  const t0 = Date.now();
  let refused = false;
  while (Date.now() - t0 < 5000) {
    if (!ask().ok) { refused = true; break; }
  }
  result.refusedAfterMs = Date.now() - t0;
  check(refused, 'the gateway still served the disabled agent after 5 s');
  const denied = page.locator('table tbody tr', { hasText: 'revoked' });
  const deniedBy = Date.now() + 15000;
  do {
    await page.goto(`${BASE}/console/audit?agent=${AGENT}&decision=deny`);
  } while (await denied.count() === 0 && Date.now() < deniedBy && await new Promise((r) => setTimeout(r, 200)) === undefined);
  check(await denied.count() >= 1, 'the refusal (revoked) is in the timeline');
  await shot('console-refused');
  check(violations.length === 0, `CSP violations: ${violations.join('; ')}`);
  console.log(JSON.stringify(result));
} catch (e) {
  await shot('failure').catch(() => {});
  console.error(String(e.stack || e));
  process.exitCode = 1;
} finally {
  await context.close();
}
