// A pharmacy imported from the Django app (e2e/browser/system.sh makes it from the import
// tests' SQLite database): its admin logs in with the password they had in Django, and finds
// the medicines with their stock, and the past sales, marked imported, with the figures the
// app recorded.
import { check, on, shot, step } from './lib.mjs';

export async function imported(page, base) {
  on(page);
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
