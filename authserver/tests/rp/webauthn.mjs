// Passkeys end to end in headless Chromium with a virtual authenticator
// (DevTools protocol WebAuthn.*): registration on the account page, the
// second factor after a password, passwordless sign-in, a cloned key's
// counter regression refused, a removed key refused.
//
//   node webauthn.mjs BASE_URL USERNAME PASSWORD AUTHORIZE_PATH
//
// BASE_URL is http://localhost:PORT (an IP address cannot be a WebAuthn
// RP id). Prints one JSON line of what happened; the Rust test judges it.
import { chromium } from 'playwright-core';

const [base, username, password, authorizePath] = process.argv.slice(2);
const callbackPrefix = 'http://127.0.0.1:8000/_auth/callback';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const out = { csp_violations: [], steps: [] };
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) out.csp_violations.push(m.text()); });
  let callback = null;
  await page.route((url) => url.href.startsWith(callbackPrefix), (route) => {
    callback = route.request().url();
    return route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback reached' });
  });
  const cdp = await context.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const authenticator = async () => (await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'internal', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  })).authenticatorId;
  let auth = await authenticator();

  // Waits until the client's callback is reached (allowing consent once).
  const codeAfter = async () => {
    const allow = page.locator('button[value=allow]');
    for (let i = 0; i < 200 && !callback; i++) {
      if ((await allow.count()) > 0) await allow.click();
      await sleep(50);
    }
    const reached = callback;
    callback = null;
    if (!reached) throw new Error(`no redirect to the client; page: ${await page.content()}`);
    // Let the navigation to the callback finish before the next one.
    await page.waitForURL((url) => url.href.startsWith(callbackPrefix));
    return new URL(reached).searchParams.get('code');
  };
  const text = async (selector) => (await page.locator(selector).textContent()) || '';
  const credentialOf = async (id) => (await cdp.send('WebAuthn.getCredentials', { authenticatorId: id })).credentials[0];

  // The login page's passkey sign-in: conditional mediation (the
  // authenticator answers the autofill request by itself) or, if nothing
  // happened within a second, the button. Returns the code, or the
  // refusal shown.
  const passwordless = async () => {
    await page.goto(`${base}${authorizePath}&prompt=login`);
    let clicked = false;
    for (let i = 0; i < 200 && !callback; i++) {
      if (await page.locator('p.error').count() > 0) return { refused: await text('p.error'), clicked };
      if (i === 20 && !clicked && await page.locator('#webauthn-discover-start').count() > 0) {
        clicked = true;
        await page.click('#webauthn-discover-start').catch(() => {});
      }
      await sleep(50);
    }
    return { code: await codeAfter(), clicked };
  };

  // 1. Sign in with the password on the account page and add a passkey.
  await page.goto(`${base}/account`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('form[action="/login"] button[type=submit]');
  await page.waitForSelector('#passkey-label');
  await page.fill('#passkey-label', 'laptop');
  await page.click('form[action="/account/passkey"] button[type=submit]');
  await page.click('#webauthn-register-start');
  await page.waitForSelector('#recovery-codes');
  out.recovery_codes = await page.locator('#recovery-codes li').count();
  await page.click('#continue');
  await page.waitForSelector('#factors');
  out.factors_listed = await text('#factors');

  // 2. A new sign-in: the password, then the passkey as the second factor.
  // The key is out of the authenticator meanwhile, or the login page's
  // conditional request would sign in without the password.
  await context.clearCookies();
  const key = await credentialOf(auth);
  await cdp.send('WebAuthn.removeCredential', { authenticatorId: auth, credentialId: key.credentialId });
  await page.goto(`${base}${authorizePath}`);
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('form[action="/login"] button[type=submit]');
  await page.waitForSelector('#webauthn-authenticate-start');
  await cdp.send('WebAuthn.addCredential', { authenticatorId: auth, credential: key });
  await page.click('#webauthn-authenticate-start');
  out.second_factor_code = await codeAfter();

  // 3. Passwordless, no password.
  await context.clearCookies();
  const signedIn = await passwordless();
  out.passwordless_code = signedIn.code;
  out.passwordless_by_button = signedIn.clicked;

  // 4. A clone of the key with a counter behind the server's is refused.
  const original = await credentialOf(auth);
  out.sign_count = original.signCount;
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: auth });
  auth = await authenticator();
  await cdp.send('WebAuthn.addCredential', { authenticatorId: auth, credential: { ...original, signCount: 0 } });
  out.clone_refused = (await passwordless()).refused;
  // Out of the browser, or the refusal page's own conditional request
  // would try the clone again.
  await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: auth });

  // 5. The key removed on the account page no longer signs in, even with
  // a counter that moves on. This time by the button: the key appears in
  // the authenticator only after the page's conditional request began.
  await page.goto(`${base}/account`);
  await page.click('#factors form[action="/account/remove"] button');
  await page.waitForSelector('p.notice');
  out.removed_notice = await text('p.notice');
  auth = await authenticator();
  await page.goto(`${base}${authorizePath}&prompt=login`);
  await sleep(500);
  await cdp.send('WebAuthn.addCredential', {
    authenticatorId: auth, credential: { ...original, signCount: original.signCount + 100 },
  });
  await page.click('#webauthn-discover-start');
  await page.waitForSelector('p.error');
  out.removed_refused = await text('p.error');
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
