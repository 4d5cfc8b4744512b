// The device authorization grant (RFC 8628) through a certified relying
// party's device functions (openid-client), with the person in headless
// Chromium entering the code at `verification_uri_complete`.
//
//   node device.mjs ISSUER CLIENT_ID USERNAME PASSWORD approve|deny|expire
//
// approve: the device polls faster than it was told (every second), so the
//   server answers slow_down, which openid-client obeys; the person checks
//   the code shown, signs in and allows; the poll ends with tokens. The
//   same code entered again is refused.
// deny: the person refuses on the consent page; the poll ends with
//   access_denied.
// expire: nobody comes; the poll, told to outlast the code, ends with
//   expired_token.
// Prints one JSON line; exits non-zero on anything unexpected.
import * as client from 'openid-client';
import { chromium } from 'playwright-core';

const [issuer, clientId, username, password, mode] = process.argv.slice(2);
const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
  execute: [client.allowInsecureRequests], // the dev server is plain HTTP on loopback
});
// What the token endpoint answered the device, poll by poll.
const answers = [];
config[client.customFetch] = async (url, options) => {
  const response = await fetch(url, options);
  if (new URL(url).pathname === '/token') {
    const body = await response.clone().json().catch(() => ({}));
    answers.push(body.error ?? 'tokens');
  }
  return response;
};

const started = await client.initiateDeviceAuthorization(config, {
  scope: 'openid profile offline_access',
});
const out = {
  user_code: started.user_code,
  verification_uri: started.verification_uri,
  verification_uri_complete: started.verification_uri_complete,
  interval: started.interval,
  expires_in: started.expires_in,
};
const poll = (response) => client.pollDeviceAuthorizationGrant(config, response, undefined, {
  signal: AbortSignal.timeout(60_000),
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const outcome = (polling) => polling.then(
  (tokens) => ({ tokens }),
  (error) => ({ error: error.error ?? String(error) }),
);

if (mode === 'expire') {
  const { error } = await outcome(poll(started));
  out.error = error;
  out.answers = answers;
  console.log(JSON.stringify(out));
  process.exit(0);
}

const polling = outcome(poll(mode === 'approve' ? { ...started, interval: 1 } : started));
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
  if (mode === 'approve') {
    // The person arrives after the device has polled too soon once.
    for (let i = 0; i < 100 && !answers.includes('slow_down'); i++) await sleep(100);
  }
  await page.goto(started.verification_uri_complete);
  out.shown_code = await page.inputValue('#user_code');
  await page.click('button[type=submit]');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  const choice = mode === 'approve' ? 'allow' : 'deny';
  await page.click(`button[value=${choice}]`);
  out.final_page = (await page.textContent('h1')).trim();
  const { tokens, error } = await polling;
  if (tokens) {
    const claims = tokens.claims();
    out.sub = claims.sub;
    out.preferred_username = claims.preferred_username;
    out.has_refresh_token = Boolean(tokens.refresh_token);
    out.scope = tokens.scope;
  }
  out.error = error;
  out.answers = answers;
  if (mode === 'approve') {
    // A user code works once.
    await page.goto(started.verification_uri);
    await page.fill('#user_code', started.user_code);
    await page.click('button[type=submit]');
    out.reused_code_page = (await page.textContent('.error')).trim();
  }
  out.csp_violations = violations;
  console.log(JSON.stringify(out));
} finally {
  await browser.close();
}
