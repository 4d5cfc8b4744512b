// A certified relying party (openid-client) signs the demo user in through
// the authserver's real login and consent pages, in headless Chromium.
//
//   node login.mjs ISSUER CREDENTIALS_JSON [TOTP_SECRET]
//
// With TOTP_SECRET the user has an authenticator app: when the second-
// factor page appears, the adapter gives the next step's code (from pyotp;
// the current step was spent enrolling it).
// Prints one JSON line with what the RP verified; exits non-zero on any
// failure. The redirect to the client's callback is intercepted in the
// browser, so nothing needs to listen there.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const [issuer, credsPath, totpSecret] = process.argv.slice(2);
const nextCode = (secret) => execFileSync('python3', ['-c',
  'import sys, time, pyotp; print(pyotp.TOTP(sys.argv[1]).at(int(time.time()) + 30))', secret],
{ encoding: 'utf8' }).trim();
const creds = JSON.parse(fs.readFileSync(credsPath, 'utf8'));
const web = creds.clients.web;
const redirectUri = web.redirect_uris[0];

const config = await client.discovery(new URL(issuer), web.client_id, web.client_secret, undefined, {
  execute: [client.allowInsecureRequests], // the dev server is plain HTTP on loopback
});
const verifier = client.randomPKCECodeVerifier();
const state = client.randomState();
const nonce = client.randomNonce();
const authorizationUrl = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri,
  scope: 'openid profile groups offline_access',
  code_challenge: await client.calculatePKCECodeChallenge(verifier),
  code_challenge_method: 'S256',
  state,
  nonce,
});

// Playwright gives the browser a fresh temporary profile of its own.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  const violations = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) violations.push(m.text()); });
  let callback;
  await page.route((url) => url.href.startsWith(redirectUri), (route) => {
    callback = route.request().url();
    return route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback reached' });
  });
  await page.goto(authorizationUrl.href);
  await page.fill('#username', creds.user.username);
  await page.fill('#password', creds.user.password);
  await page.click('button[type=submit]');
  // Consent is asked once per client and scopes, then remembered: wait for
  // either the consent page or the redirect to the client.
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const allow = page.locator('button[value=allow]');
  const code = page.locator('form[action="/login/factor"] #code');
  let consented = false;
  let secondFactor = false;
  for (let i = 0; i < 200 && !callback; i++) {
    if (totpSecret && !secondFactor && (await code.count()) > 0) {
      await code.fill(nextCode(totpSecret));
      await page.click('form[action="/login/factor"] button[type=submit]');
      secondFactor = true;
    }
    if (!consented && (await allow.count()) > 0) {
      await allow.click();
      consented = true;
    }
    await sleep(50);
  }
  if (!callback) throw new Error(`no redirect to the client; page: ${await page.content()}`);

  const tokens = await client.authorizationCodeGrant(config, new URL(callback), {
    pkceCodeVerifier: verifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  });
  const claims = tokens.claims();
  const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  // RFC 7662 / 7009 through the same client: it holds the refresh token,
  // so it may look at that; the access token is for the resource servers.
  const accessSeen = await client.tokenIntrospection(config, refreshed.access_token);
  const before = await client.tokenIntrospection(config, refreshed.refresh_token);
  await client.tokenRevocation(config, refreshed.refresh_token);
  const after = await client.tokenIntrospection(config, refreshed.refresh_token);
  console.log(JSON.stringify({
    sub: claims.sub,
    preferred_username: claims.preferred_username,
    groups: claims.groups,
    amr: claims.amr,
    acr: claims.acr,
    second_factor: secondFactor,
    userinfo_sub: userinfo.sub,
    refreshed: Boolean(refreshed.access_token && refreshed.refresh_token !== tokens.refresh_token),
    consent_page: consented,
    introspected_active: before.active,
    access_token_seen_by_the_client: accessSeen,
    active_after_revocation: after.active,
    csp_violations: violations,
  }));
} finally {
  await browser.close();
}
