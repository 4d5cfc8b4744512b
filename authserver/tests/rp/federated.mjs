// A relying party (openid-client) signs in at the authserver, and the
// person chooses an upstream provider there (oidc-provider, upstream.mjs),
// all in headless Chromium.
//
//   node federated.mjs ISSUER CREDENTIALS_JSON PROVIDER UPSTREAM_LOGIN MODE
//
// MODE: `signin` (the upstream sign-in alone), `link` (the authserver asks
// for a local account to link: the demo user signs in with its password),
// `link-elsewhere` (that page opened in another browser, where the demo
// user signs in),
// `tamper-state` (the callback's `state` is changed on its way back),
// `tamper-nonce` (the `nonce` sent to the provider is changed, so the ID
// token carries another one). Prints one JSON line: the RP's ID token
// claims, or the authserver's page where it stopped.
import fs from 'node:fs';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const [issuer, credsPath, provider, upstreamLogin, mode] = process.argv.slice(2);
const creds = JSON.parse(fs.readFileSync(credsPath, 'utf8'));
const web = creds.clients.web;
const redirectUri = web.redirect_uris[0];
const config = await client.discovery(new URL(issuer), web.client_id, web.client_secret, undefined, {
  execute: [client.allowInsecureRequests],
});
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile groups',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
  prompt: 'login',
});

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const out = {};
try {
  const page = await browser.newPage();
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  let callback;
  await page.route((url) => url.href.startsWith(redirectUri), (route) => {
    callback = route.request().url();
    return route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback reached' });
  });
  const ourCallback = `${issuer}/login/federated/${provider}/callback`;
  // Playwright does not route a redirect's target: the request whose
  // answer leads there is fetched here, its redirects followed, and the
  // browser sent to a changed target instead.
  const ours = new URL(issuer).origin;
  if (mode === 'tamper-state') {
    // The provider's consent form (its last page before coming back).
    await page.route((url) => url.origin !== ours && url.pathname.startsWith('/interaction/'), async (route) => {
      if (!route.request().postData()?.includes('prompt=consent')) return route.continue();
      const response = await route.fetch({ maxRedirects: 0 });
      let location = new URL(response.headers().location, route.request().url());
      for (let hop = 0; hop < 5 && !location.href.startsWith(ourCallback); hop++) {
        const next = await page.request.get(location.href, { maxRedirects: 0 });
        location = new URL(next.headers().location, location);
      }
      location.searchParams.set('state', `${location.searchParams.get('state')}x`);
      out.tampered = location.href;
      await route.fulfill({ status: 302, headers: { location: location.href } });
    });
  }
  if (mode === 'tamper-nonce') {
    // Our redirect to the provider, fetched and its target changed.
    const forged = 'not-the-nonce-the-authserver-chose';
    await page.route((url) => url.pathname === `/login/federated/${provider}`, async (route) => {
      const response = await route.fetch({ maxRedirects: 0 });
      const location = new URL(response.headers().location);
      location.searchParams.set('nonce', forged);
      out.tampered = location.href;
      await route.fulfill({ response, headers: { ...response.headers(), location: location.href } });
    });
  }
  await page.goto(authorizationUrl.href);
  await page.click(`#federated-${provider}`);
  // The upstream provider's own pages: any password, then its consent.
  await page.fill('input[name=login]', upstreamLogin);
  await page.fill('input[name=password]', 'anything');
  await page.click('button[type=submit]');
  await page.click('button:has-text("Continue")');
  await page.waitForURL((url) => url.origin === ours || url.href.startsWith(redirectUri));
  await page.waitForLoadState();
  if (mode === 'link-elsewhere') {
    // Someone else's browser is sent to the page that asks for a local
    // account to link (the attacker's pending link): signing in there
    // must not link the attacker's upstream account to it.
    const other = await browser.newContext();
    const victim = await other.newPage();
    await victim.goto(page.url());
    await victim.fill('#username', creds.user.username);
    await victim.fill('#password', creds.user.password);
    await victim.click('form[action="/login"] button[type=submit]');
    await victim.waitForLoadState();
    out.page_title = (await victim.textContent('h1'))?.trim();
    out.page_text = (await victim.textContent('main'))?.trim();
    console.log(JSON.stringify(out));
    process.exit(0);
  }
  if (mode === 'link') {
    out.notice = (await page.textContent('.notice'))?.trim();
    await page.fill('#username', creds.user.username);
    await page.fill('#password', creds.user.password);
    await page.click('form[action="/login"] button[type=submit]');
    await page.waitForLoadState();
  }
  const allow = page.locator('button[value=allow]');
  for (let i = 0; i < 100 && !callback; i++) {
    if ((await allow.count()) > 0) await allow.click();
    else await new Promise((r) => setTimeout(r, 50));
  }
  if (callback) {
    const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
      pkceCodeVerifier: verifier,
      expectedState: state,
      expectedNonce: nonce,
      idTokenExpected: true,
    });
    Object.assign(out, tokens.claims());
  } else {
    out.page_title = (await page.textContent('h1'))?.trim();
    out.page_text = (await page.textContent('main'))?.trim();
  }
  out.csp_violations = violations;
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
