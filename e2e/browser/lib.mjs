// What every part of the browser flow shares: checks and named steps, screenshots numbered in
// the order they were taken, browser contexts whose every page is watched for server errors
// (5xx), script errors and failed requests, and the timeouts of a small, loaded machine.
import { mkdirSync } from 'node:fs';

export const artifacts = process.env.ARTIFACTS || 'target/browser-artifacts';
mkdirSync(artifacts, { recursive: true });

/// A short id in every name the flow creates, so it can run again against the same system.
export const run = Date.now().toString(36);

/// Generous upper bounds (2 shared cores): an action or a wait, a page load (a cold pharmacy's
/// first request wakes its worker), and a sign-up (control migrates a new schema).
export const ACTION_MS = 30000;
export const NAVIGATION_MS = 60000;
export const SIGNUP_MS = 120000;

export function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

const done = [];
export async function step(name, body) {
  const t = Date.now();
  await body();
  done.push(name);
  console.log(`ok - ${name} (${Date.now() - t} ms)`);
}
export const stepsDone = () => done.length;

let shots = 0;
export const shot = (page, name) =>
  page.screenshot({ path: `${artifacts}/${String(++shots).padStart(2, '0')}-${name}.png`, fullPage: true });

export const isoDay = (offset) => new Date(Date.now() + offset * 86400000).toISOString().slice(0, 10);

/// What went wrong on any page without failing a check at once: reported at the end.
export const problems = [];
/// The page the flow is on, for the failure's screenshot.
export let current = null;

function watch(page) {
  page.on('pageerror', (e) => problems.push(`script error on ${page.url()}: ${e.message}`));
  // Refused forms answer 4xx on purpose (Chromium logs those); a 5xx never.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console on ${page.url()}: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 500) problems.push(`${r.status()} from ${r.request().method()} ${r.url()}`);
  });
  // A search typed on replaces the one before it (aborted on purpose); anything else that
  // got no answer at all is a problem.
  page.on('requestfailed', (r) => {
    const why = r.failure()?.errorText || '';
    if (!why.includes('ERR_ABORTED')) problems.push(`no answer to ${r.method()} ${r.url()}: ${why}`);
  });
}

/// A new browser context (a person with their own cookies) and its first page.
export async function person(browser, options) {
  const context = await browser.newContext(options);
  context.setDefaultTimeout(ACTION_MS);
  context.setDefaultNavigationTimeout(NAVIGATION_MS);
  context.on('page', watch);
  const page = await context.newPage();
  current = page;
  return { context, page };
}

/// Makes `page` the one a failure is reported at.
export const on = (page) => {
  current = page;
  return page;
};

/// Whether the page is no wider than the screen (nothing to scroll sideways).
export async function fits(page, width) {
  const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
  check(scroll <= width, `${page.url()} fits ${width} px (${scroll} px wide)`);
}
