// The browser flow (Debian's Chromium, driven by playwright-core), in one of two modes:
//   - SITE_URL (the public site, e.g. http://localhost:8080): the landing page, "Create your
//     pharmacy" with a taken subdomain (TAKEN_SUBDOMAIN, default acme) and then a new one,
//     which lands on the new pharmacy's login on its own subdomain; there, the pharmacy's flow
//     as the admin just created (pharmacy.mjs); then "Find my pharmacy" finds it.
//     With IMPORT_FILE (a Django pharmacy's SQLite file, as the import tests make it),
//     OPERATOR_USER and OPERATOR_PASSWORD: an operator imports it in the console, then its
//     admin logs in with the old Django password and finds what was brought (imported.mjs).
//   - BASE_URL (one pharmacy, e.g. http://acme.localhost:8080) with ADMIN_USER and
//     ADMIN_PASSWORD (an admin of it): the pharmacy's flow alone.
// Every page of every browser context is watched: a 5xx answer, a script error or a request
// without an answer fails the flow. Screenshots of the main screens go to $ARTIFACTS (default
// target/browser-artifacts), and a failure's screenshot too. CHROMIUM: its path (default
// /usr/bin/chromium). Every name it creates carries a run id, so it can run again against the
// same system.
import { chromium } from 'playwright-core';

import { artifacts, current, person, problems, stepsDone } from './lib.mjs';
import { pharmacy } from './pharmacy.mjs';
import { imported } from './imported.mjs';
import { findMyPharmacy, publicOnPhone, signUp } from './site.mjs';

const trim = (url) => (url || '').replace(/\/$/, '');
const site = trim(process.env.SITE_URL);
const base = trim(process.env.BASE_URL);
if (!site === !base || (base && !process.env.ADMIN_PASSWORD)) {
  console.error('flow.mjs: set SITE_URL, or BASE_URL and ADMIN_PASSWORD (and ADMIN_USER)');
  process.exit(2);
}

const started = Date.now();
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const { page } = await person(browser, { viewport: { width: 1280, height: 900 } });
  if (site) {
    const created = await signUp(page, site, process.env.TAKEN_SUBDOMAIN || 'acme');
    await pharmacy(browser, page, { ...created, onLogin: true });
    await findMyPharmacy(page, site, created);
    const { context: phone, page: p } = await person(browser, {
      viewport: { width: 360, height: 740 },
      isMobile: true,
      hasTouch: true,
    });
    await publicOnPhone(p, site, created);
    await phone.close();
    if (process.env.IMPORT_FILE) {
      const { context, page: q } = await person(browser, { viewport: { width: 1280, height: 900 } });
      await imported(q, site, {
        file: process.env.IMPORT_FILE,
        user: process.env.OPERATOR_USER,
        password: process.env.OPERATOR_PASSWORD,
      });
      await context.close();
    }
  } else {
    await pharmacy(browser, page, {
      base,
      adminUser: process.env.ADMIN_USER || 'admin',
      adminPassword: process.env.ADMIN_PASSWORD,
      onLogin: false,
    });
  }
  if (problems.length > 0) throw new Error(`problems on the pages:\n  ${problems.join('\n  ')}`);
  console.log(`browser flow passed in ${Date.now() - started} ms: ${stepsDone()} steps; screenshots in ${artifacts}`);
} catch (e) {
  console.error(`browser flow FAILED: ${e.message}`);
  if (problems.length > 0 && !e.message.startsWith('problems')) console.error(`also:\n  ${problems.join('\n  ')}`);
  if (current && !current.isClosed()) {
    console.error(`at ${current.url()}`);
    await current.screenshot({ path: `${artifacts}/failure.png`, fullPage: true }).catch(() => {});
  }
  process.exitCode = 1;
} finally {
  await browser.close();
}
