// Headless Chromium signs in to an app behind the gateway's session mode:
// the gateway redirects to the authserver's real pages, the browser logs
// in and consents, and lands back on the page it asked for.
//
//   node session.mjs GATEWAY_BASE USERNAME PASSWORD
//
// Prints one JSON line with what it saw; exits non-zero on any failure.
// playwright-core comes from the browser-test package scripts/install-deps.sh
// installs (authserver/tests/rp).
import { createRequire } from 'node:module';

const require = createRequire(new URL('../../../authserver/tests/rp/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, username, password] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  const wanted = `${base}/app/page?x=1`;
  await page.goto(wanted);
  const loginUrl = page.url();
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  const allow = page.locator('button[value=allow]');
  for (let i = 0; i < 200 && !page.url().startsWith(wanted); i++) {
    if ((await allow.count()) > 0) await allow.click();
    await new Promise((r) => setTimeout(r, 50));
  }
  const landed = page.url();
  const seen = JSON.parse(await page.locator('body').innerText());
  const cookies = (await context.cookies(base)).map((c) => ({ name: c.name, httpOnly: c.httpOnly, sameSite: c.sameSite }));
  await page.goto(`${base}/_auth/userinfo`);
  const userinfo = JSON.parse(await page.locator('body').innerText());
  // Another site cannot sign the user out: its auto-submitted form is
  // refused, and the session goes on.
  await context.route('http://elsewhere.test/**', (route) => route.fulfill({
    contentType: 'text/html',
    body: `<form id="f" method="post" action="${base}/_auth/logout"><input name="csrf" value="x"></form>`
      + '<script>document.getElementById("f").submit()</script>',
  }));
  await page.goto('http://elsewhere.test/');
  await page.waitForURL(`${base}/_auth/logout`);
  const crossSite = await page.locator('body').innerText();
  await page.goto(`${base}/_auth/userinfo`);
  const afterCrossSite = JSON.parse(await page.locator('body').innerText()).sub ?? null;
  // The confirmation page's button signs out.
  await page.goto(`${base}/_auth/logout`);
  await Promise.all([page.waitForURL((url) => !url.pathname.startsWith('/_auth/logout')), page.click('button[type=submit]')]);
  await page.goto(wanted);
  const afterLogout = page.url();
  console.log(JSON.stringify({
    login_url: loginUrl,
    landed,
    subject: seen.headers['x-auth-subject'] ?? null,
    upstream_cookie: seen.headers.cookie ?? null,
    cookies,
    userinfo,
    cross_site_logout: crossSite,
    after_cross_site_logout: afterCrossSite,
    after_logout: afterLogout,
  }));
} finally {
  await browser.close();
}
