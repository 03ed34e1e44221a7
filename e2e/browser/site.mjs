// The public site in the browser: the landing page, "Create your pharmacy" (a taken subdomain
// answered next to its field with the other fields kept, then a sign-up that lands on the new
// pharmacy's login on its own subdomain), "Find my pharmacy", and the same pages on a phone.
import { check, fits, NAVIGATION_MS, on, run, shot, SIGNUP_MS, step } from './lib.mjs';

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/// Signs a new pharmacy up on the public site at `site`; `taken` is a subdomain in use there.
/// Returns the new pharmacy: its name, subdomain, base URL and first admin.
export async function signUp(page, site, taken) {
  const pharmacy = {
    name: `Browser Pharmacy ${run}`,
    subdomain: `browser-${run}`,
    adminUser: 'owner',
    adminPassword: `pw-${run}-owner`,
  };
  const siteHost = new URL(site).host;

  await step('the public landing page', async () => {
    await page.goto(`${site}/`);
    check(await page.getByRole('heading', { name: 'Run your pharmacy from any browser' }).isVisible(), 'the landing heading');
    await shot(page, 'public-landing');
  });

  await step('Create your pharmacy: a taken subdomain is answered next to its field, the other fields kept', async () => {
    await page.getByRole('link', { name: 'Create your pharmacy' }).click();
    await page.waitForURL(`${site}/tenants/create-tenant/`);
    await page.getByLabel('Pharmacy name').fill(pharmacy.name);
    await page.getByLabel('Subdomain').fill(taken);
    await page.getByLabel("Administrator's username").fill(pharmacy.adminUser);
    await page.getByLabel("Administrator's password").fill(pharmacy.adminPassword);
    await page.getByRole('button', { name: 'Create your pharmacy' }).click();
    const message = page.locator('#e-subdomain');
    await message.waitFor({ timeout: SIGNUP_MS });
    check((await message.innerText()).includes('already taken'), `the message says the subdomain is taken: ${await message.innerText()}`);
    const subdomain = page.getByLabel('Subdomain');
    check((await subdomain.getAttribute('aria-describedby')) === 'e-subdomain', 'the message belongs to the subdomain field');
    check((await subdomain.inputValue()) === taken, 'the subdomain is kept');
    check((await page.getByLabel('Pharmacy name').inputValue()) === pharmacy.name, 'the name is kept');
    check((await page.getByLabel("Administrator's username").inputValue()) === pharmacy.adminUser, 'the username is kept');
    check((await page.getByLabel("Administrator's password").inputValue()) === '', 'the password is not sent back');
    check(new URL(page.url()).host === siteHost, 'still on the public site');
    await shot(page, 'signup-taken');
  });

  await step('the sign-up lands on the new pharmacy\'s login, on its own subdomain', async () => {
    await page.getByLabel('Subdomain').fill(pharmacy.subdomain);
    await page.getByLabel("Administrator's password").fill(pharmacy.adminPassword);
    await page.getByRole('button', { name: 'Create your pharmacy' }).click();
    // <subdomain>.<signup domain>, on the port the site was reached by.
    const port = new URL(site).port;
    const at = new RegExp(`^https?://${escape(pharmacy.subdomain)}\\.[^/:]+${port ? `:${port}` : ''}/login$`);
    await page.waitForURL(at, { timeout: SIGNUP_MS });
    pharmacy.base = new URL(page.url()).origin;
    if (new URL(site).hostname === 'localhost') {
      check(new URL(page.url()).hostname === `${pharmacy.subdomain}.localhost`, `a subdomain of localhost: ${page.url()}`);
    }
    // The browser reached the new pharmacy's own worker through the proxy: its page names it.
    check((await page.title()) === `Log in · ${pharmacy.name}`, `the new pharmacy's login page (title ${await page.title()})`);
    check(await page.getByRole('button', { name: 'Log in' }).isVisible(), 'the login form');
    await shot(page, 'login');
  });
  return pharmacy;
}

/// "Find my pharmacy" on the landing page finds the pharmacy by its subdomain and by its
/// exact name (any case), and its link leads to its login.
export async function findMyPharmacy(page, site, pharmacy) {
  await step('Find my pharmacy finds it, by subdomain and by name', async () => {
    await page.goto(`${site}/`);
    await page.getByLabel("Your pharmacy's name or subdomain").fill(pharmacy.subdomain);
    await page.getByRole('button', { name: 'Find my pharmacy' }).click();
    await page.waitForURL(`${site}/tenants/find/?q=${pharmacy.subdomain}`);
    const link = page.getByRole('link', { name: pharmacy.name });
    check((await link.getAttribute('href')) === `${pharmacy.base}/login`, `the link to ${pharmacy.base}/login`);
    await shot(page, 'find-my-pharmacy');

    const search = page.getByLabel("Your pharmacy's exact name or subdomain");
    await search.fill(`no-such-${run}`);
    await page.getByRole('button', { name: 'Find', exact: true }).click();
    await page.getByText('No pharmacy has that name or subdomain.').waitFor();
    await search.fill(pharmacy.name.toLowerCase());
    await page.getByRole('button', { name: 'Find', exact: true }).click();
    await page.waitForURL(/\/tenants\/find\/\?q=browser\+pharmacy/);
    await page.getByRole('link', { name: pharmacy.name }).click();
    await page.waitForURL(`${pharmacy.base}/login`, { timeout: NAVIGATION_MS });
    check((await page.title()) === `Log in · ${pharmacy.name}`, 'the link leads to its login');
  });
}

/// The public pages and the new pharmacy's login on a 360 px phone.
export async function publicOnPhone(page, site, pharmacy) {
  on(page);
  await step('the public site and the login on a 360 px phone', async () => {
    await page.goto(`${site}/`);
    await fits(page, 360);
    await shot(page, 'phone-public-landing');
    await page.getByRole('link', { name: 'Create your pharmacy' }).click();
    await page.waitForURL(`${site}/tenants/create-tenant/`);
    await fits(page, 360);
    await shot(page, 'phone-signup');
    await page.goto(`${pharmacy.base}/login`);
    await fits(page, 360);
    await shot(page, 'phone-login');
  });
}
