// The full browser login with a second factor: password, then an
// authenticator app's code (RFC 6238, computed here), consent when asked,
// and back through the gateway to the page first asked for.
//
// Each sign-in uses its own user, so no code is refused as a replay (a
// step is accepted once per authenticator): setup creates them through the
// admin API and enrols an app for each on the account page. Besides k6's
// request latencies it reports, per sign-in, the whole time
// (`sign_in_ms`), the password step alone (`password_step_ms`: argon2id
// dominates it) and the rest (`sign_in_after_password_ms`), the seed's
// authentication SLO being about the latter.
import http from 'k6/http';
import exec from 'k6/execution';
import { Trend } from 'k6/metrics';
import {
  adminHeaders, durationSeconds, hidden, options as build, signIn, stack, timeStep, totp, verify,
} from './lib.js';

const RATE = Number(__ENV.RATE || 2);
const USERS = Number(__ENV.MFA_USERS || Math.ceil(RATE * durationSeconds() * 1.1) + 2);

export const options = {
  ...build('login_mfa', { rate: RATE, p95: 300, p99: 500, vus: 4 }),
  // Two password hashes per user (creation and enrolment).
  setupTimeout: '600s',
};

const whole = new Trend('sign_in_ms', true);
const passwordStep = new Trend('password_step_ms', true);
const afterPassword = new Trend('sign_in_after_password_ms', true);

// A user with an enrolled app: its key and the step its confirming code
// spent.
function enrolledUser(i, run) {
  const user = { username: `k6-mfa-${run}-${i}`, password: `k6 load test ${run} ${i}` };
  const created = http.post(`${stack.issuer}/admin/v1/users`, JSON.stringify(user), { headers: adminHeaders() });
  if (created.status !== 201) throw new Error(`creating ${user.username}: ${created.status} ${created.body}`);
  http.cookieJar().clear(stack.issuer);
  const login = http.get(`${stack.issuer}/account`);
  const account = http.post(`${stack.issuer}/login`, {
    request: hidden(login, 'request'),
    csrf: hidden(login, 'csrf'),
    username: user.username,
    password: user.password,
  });
  const enrol = http.post(`${stack.issuer}/account/totp`, { csrf: hidden(account, 'csrf'), label: 'k6' });
  const secret = /id="secret">([A-Z2-7]+)</.exec(enrol.body);
  if (!secret) throw new Error(`no key on the enrolment page: ${enrol.status} ${enrol.body.slice(0, 300)}`);
  const step = timeStep();
  const done = http.post(`${stack.issuer}/account/totp-confirm`, {
    csrf: hidden(enrol, 'csrf'),
    enrolment: hidden(enrol, 'enrolment'),
    code: totp(secret[1], step),
  });
  if (done.status !== 200) throw new Error(`confirming ${user.username}'s app: ${done.status}`);
  return { ...user, secret: secret[1], spent: step };
}

export function setup() {
  const run = Date.now().toString(36);
  const users = [];
  for (let i = 0; i < USERS; i++) users.push(enrolledUser(i, run));
  return { users };
}

export default function (data) {
  const user = data.users[exec.scenario.iterationInTest % data.users.length];
  http.cookieJar().clear(stack.browser_url);
  http.cookieJar().clear(stack.issuer);
  const started = Date.now();
  let passwordTook = 0;
  const res = signIn(`${stack.browser_url}?from=k6-mfa`, {
    ...user,
    secondFactor(afterPasswordPage) {
      passwordTook = afterPasswordPage.timings.duration;
      if (!verify(afterPasswordPage, { 'asked for the app': (r) => r.status === 200 && r.body.includes('name="method" value="totp"') })) {
        return afterPasswordPage;
      }
      // Enrolment spent its step; the window's next step is still good.
      const step = Math.max(timeStep(), user.spent + 1);
      return http.post(`${stack.issuer}/login/factor`, {
        csrf: hidden(afterPasswordPage, 'csrf'),
        method: 'totp',
        code: totp(user.secret, step),
      });
    },
  });
  const ok = verify(res, {
    'signed in with the second factor and back on the first page': (r) =>
      r.status === 200 && r.json('headers')['x-auth-subject'] !== undefined && r.url.endsWith('?from=k6-mfa'),
  });
  if (ok) {
    const took = Date.now() - started;
    whole.add(took);
    passwordStep.add(passwordTook);
    afterPassword.add(took - passwordTook);
  }
}
