// A pharmacy brought from the Django app: an operator uploads its SQLite file (e2e/browser/
// system.sh makes it as the import tests do) in the console's "Import a pharmacy", reads the
// dry run's report and imports it. Then its admin logs in with the password they had in
// Django, and finds the medicines with their stock, and the past sales, marked imported, with
// the figures the app recorded.
import { check, on, run, shot, step, NAVIGATION_MS } from './lib.mjs';

export async function imported(page, site, operator) {
  on(page);
  const schema = `sunrise_${run}`;
  const domain = `sunrise-${run}.localhost`;
  const base = `http://${domain}:${new URL(site).port}`;

  await step('an operator uploads a Django pharmacy and reads the dry run', async () => {
    await page.goto(`${site}/operator/login`);
    await page.getByLabel('Username').fill(operator.user);
    await page.getByLabel('Password').fill(operator.password);
    await page.getByLabel('Password').press('Enter');
    await page.waitForURL(`${site}/operator/tenants`);
    await page.getByRole('link', { name: 'Import a pharmacy' }).click();
    await page.getByLabel('Schema').fill(schema);
    await page.getByLabel('Domain').fill(domain);
    await page.getByLabel('SQLite file or dumpdata JSON').setInputFiles(operator.file);
    await page.getByRole('button', { name: 'Check the import' }).click();
    await page.getByRole('heading', { name: 'Import Sunrise Pharmacy?' }).waitFor({ timeout: NAVIGATION_MS });
    const rows = page.getByRole('table', { name: 'Rows read and written' });
    const invoices = await rows.locator('tr', { hasText: 'invoices' }).locator('td').allInnerTexts();
    check(invoices[0] === '5' && invoices[1] === '5', `5 invoices read and written (${invoices.join(' | ')})`);
    const problems = page.getByRole('table', { name: 'Problems found' });
    check((await problems.locator('tbody tr').count()) > 0, 'the anomalies of the source, listed');
    await shot(page, 'import-report');
  });

  await step('the operator confirms, and the pharmacy is there', async () => {
    await page.getByRole('button', { name: 'Import the pharmacy' }).click();
    await page.waitForURL(`${site}/operator/tenants/${schema}?notice=imported`, { timeout: NAVIGATION_MS });
    check(await page.getByText('The pharmacy was imported').isVisible(), 'the notice');
    check(await page.getByText(domain).first().isVisible(), 'its domain');
  });

  await step('an imported pharmacy: the admin logs in with the old Django password', async () => {
    await page.goto(`${base}/dashboard`);
    check(page.url().startsWith(`${base}/login?next=`), 'a page without a session goes to the login');
    await page.getByLabel('Username').fill('admin');
    await page.getByLabel('Password').fill('admin-old-pass-1');
    await page.getByLabel('Password').press('Enter');
    await page.waitForURL(`${base}/dashboard`);
    check(await page.getByText('Sunrise Pharmacy').first().isVisible(), "the company's name from Django");
  });

  await step('its medicines, with the stock of every batch brought', async () => {
    await page.goto(`${base}/medicines?q=Paracetamol`);
    const row = page.locator('tbody tr', { hasText: 'Paracetamol 500mg' });
    check((await row.count()) === 1, 'one medicine for the two batch rows of Django');
    const cells = await row.locator('td').allInnerTexts();
    check(cells.includes('150'), `100 + 50 units in stock (${cells.join(' | ')})`);
    await shot(page, 'imported-medicines');
  });

  await step('its past sales, marked imported, as Django recorded them', async () => {
    await page.goto(`${base}/invoices/4`);
    check(await page.getByRole('heading', { name: /Invoice 4/ }).isVisible(), 'invoice 4 kept its number');
    check(await page.locator('h1 .badge', { hasText: 'imported' }).isVisible(), 'marked imported');
    check((await page.locator('main').innerText()).includes('180.00'), 'the total Django recorded (180.00)');
    await shot(page, 'imported-invoice');
  });
}
