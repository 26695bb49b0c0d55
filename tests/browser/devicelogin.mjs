// Completes agentid's /devicelogin flow in headless Chromium, the way a person does: types the
// code, signs in, accepts consent if asked, and saves a screenshot of every page.
//
// Env: BASE (STS base URL), CA_FILE (the STS's CA), USER_CODE, USERNAME, PASSWORD, SHOT_DIR.
// Exits non-zero on failure. TLS: the server certificate is verified against CA_FILE first; then
// Chromium trusts exactly that server key (SPKI pin), nothing else is relaxed.

import { X509Certificate, createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { chromium } from 'playwright-core';

const { BASE, CA_FILE, USER_CODE, USERNAME, PASSWORD, SHOT_DIR } = process.env;
for (const [k, v] of Object.entries({ BASE, CA_FILE, USER_CODE, USERNAME, PASSWORD, SHOT_DIR })) {
  if (!v) throw new Error(`${k} is required`);
}

function serverSpkiHash(base) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    // Verified against the STS's CA before it is pinned: a wrong server fails here.
    const s = tls.connect({ host: u.hostname, port: Number(u.port || 443), ca: readFileSync(CA_FILE), rejectUnauthorized: true, servername: u.hostname === '127.0.0.1' ? undefined : u.hostname }, () => {
      const der = s.getPeerCertificate(false).raw;
      s.end();
      const spki = new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
      resolve(createHash('sha256').update(spki).digest('base64'));
    });
    s.on('error', reject);
  });
}

mkdirSync(SHOT_DIR, { recursive: true });
const spki = await serverSpkiHash(BASE);
const profile = mkdtempSync(join(tmpdir(), 'agentid-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--ignore-certificate-errors-spki-list=${spki}`],
});
const page = context.pages()[0] ?? await context.newPage();
const shot = async (name) => page.screenshot({ path: join(SHOT_DIR, `${name}.png`), fullPage: true });
try {
  await page.goto(`${BASE}/devicelogin`);
  await page.getByLabel('Code').fill(USER_CODE);
  await shot('1-enter-code');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Password').waitFor();
  await page.getByLabel('Email or user name').fill(USERNAME);
  await page.getByLabel('Password').fill(PASSWORD);
  await shot('2-sign-in');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForLoadState('load');
  if (await page.getByRole('button', { name: 'Accept' }).count()) {
    await shot('3-consent');
    await page.getByRole('button', { name: 'Accept' }).click();
    await page.waitForLoadState('load');
  }
  await page.getByRole('heading', { name: "You're signed in" }).waitFor({ timeout: 10000 });
  await shot('4-done');
  console.log(JSON.stringify({ done: true, url: page.url() }));
} catch (e) {
  await shot('failure').catch(() => {});
  const alerts = await page.getByRole('alert').allInnerTexts().catch(() => []);
  const said = alerts.length ? `\nthe page says: ${alerts.map((a) => JSON.stringify(a.trim())).join('; ')}` : '';
  console.error(`devicelogin failed on ${page.url()}: ${e.message}${said}\n${await page.content().catch(() => '')}`);
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
