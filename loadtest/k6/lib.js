// Shared by the k6 scenarios: the stack's addresses and demo accounts (the
// JSON `portcullis up --dev-credentials FILE` writes), options built from a
// few environment variables, and signing in through the real pages.
import http from 'k6/http';
import { check, fail } from 'k6';
import { parseHTML } from 'k6/html';
import encoding from 'k6/encoding';
import crypto from 'k6/crypto';

// An absolute path: k6 resolves a relative one against this script.
if (!__ENV.PORTCULLIS_CREDENTIALS) {
  throw new Error('set PORTCULLIS_CREDENTIALS to the absolute path of the file `portcullis up --dev-credentials FILE` wrote');
}
export const stack = JSON.parse(open(__ENV.PORTCULLIS_CREDENTIALS));

// Load goes to loopback only: every URL the scenarios use.
for (const url of [...Object.values(stack.services), stack.issuer, stack.protected_url, stack.browser_url]) {
  const host = String(url).replace(/^[a-z]+:\/\//, '').split(/[:/]/)[0];
  if (!/^127(\.\d{1,3}){3}$/.test(host)) {
    throw new Error(`load tests target 127.0.0.0/8 only, not ${url}`);
  }
}

// k6 durations as seconds: "30s", "2m", "1m30s".
function seconds(duration) {
  let total = 0;
  for (const [, n, unit] of duration.matchAll(/(\d+)(ms|s|m|h)/g)) {
    total += Number(n) * { ms: 0.001, s: 1, m: 60, h: 3600 }[unit];
  }
  return total;
}

// RATE iterations per second for DURATION; the latency thresholds (of this
// scenario's requests, not setup's) are multiplied by THRESHOLD_SCALE (the
// CI smoke run on a debug build uses a large one). No failed request, every
// check passing and at most 1% of iterations dropped hold at any scale.
export function options(name, { rate, p95, p99, vus }) {
  const scale = Number(__ENV.THRESHOLD_SCALE || 1);
  const target = Number(__ENV.RATE || rate);
  const duration = __ENV.DURATION || '30s';
  const preallocated = Number(__ENV.VUS || vus || Math.max(4, Math.ceil(target / 100)));
  return {
    scenarios: {
      [name]: {
        executor: 'constant-arrival-rate',
        rate: target,
        timeUnit: '1s',
        duration,
        preAllocatedVUs: preallocated,
        maxVUs: 4 * preallocated,
      },
    },
    thresholds: {
      http_req_failed: ['rate==0'],
      checks: ['rate==1'],
      dropped_iterations: [`count<=${Math.floor(target * seconds(duration) * 0.01)}`],
      [`http_req_duration{scenario:${name}}`]: [`p(95)<${p95 * scale}`, `p(99)<${p99 * scale}`],
    },
    summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  };
}

// `check`, and when a check fails, one line on stderr naming the request
// and its status (or k6's transport error), so a run's report can say what
// failed; at most ten lines per VU. A predicate that throws (say, a JSON
// field of a body that is not JSON) fails its check instead of aborting
// the iteration.
let failuresLogged = 0;
export function verify(res, predicates) {
  const failed = [];
  const checks = {};
  for (const [name, predicate] of Object.entries(predicates)) {
    checks[name] = (r) => {
      let ok = false;
      try {
        ok = Boolean(predicate(r));
      } catch (_) {
        ok = false;
      }
      if (!ok) failed.push(name);
      return ok;
    };
  }
  const ok = check(res, checks);
  if (!ok && failuresLogged < 10) {
    failuresLogged += 1;
    const why = res.error ? `${res.error_code} ${res.error}` : String(res.body || '').slice(0, 200);
    console.error(`FAILED ${res.request.method} ${res.url} -> ${res.status} [${failed.join('; ')}] ${why}`);
  }
  return ok;
}

// k6 durations as seconds, for scenarios that size themselves by them.
export function durationSeconds() {
  return seconds(__ENV.DURATION || '30s');
}

// The admin API's bearer header.
export function adminHeaders() {
  return { authorization: `Bearer ${stack.admin_token}`, 'content-type': 'application/json' };
}

// RFC 4648 base32 (no padding) to bytes.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const bytes = [];
  let bits = 0;
  let value = 0;
  for (const c of text.replace(/=+$/, '').toUpperCase()) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return new Uint8Array(bytes).buffer;
}

// The RFC 6238 code (HMAC-SHA1, six digits) of the base32 `secret` for
// time step `step` (30 s steps since the epoch).
export function totp(secret, step) {
  const counter = new Uint8Array(8);
  let n = step;
  for (let i = 7; i >= 0; i--) {
    counter[i] = n % 256;
    n = Math.floor(n / 256);
  }
  const mac = crypto.hmac('sha1', base32(secret), counter.buffer, 'hex');
  const offset = parseInt(mac.slice(-1), 16);
  const word = parseInt(mac.slice(offset * 2, offset * 2 + 8), 16) & 0x7fffffff;
  return String(word % 1000000).padStart(6, '0');
}

export function timeStep() {
  return Math.floor(Date.now() / 30000);
}

// A client_credentials token of the demo service client.
export function serviceToken(scope) {
  const service = stack.clients.service;
  const res = http.post(
    `${stack.issuer}/token`,
    { grant_type: 'client_credentials', scope },
    { headers: { authorization: basic(service.client_id, service.client_secret) } },
  );
  if (res.status !== 200) fail(`client_credentials: ${res.status} ${res.body}`);
  return res.json('access_token');
}

export function basic(id, secret) {
  return `Basic ${encoding.b64encode(`${id}:${secret}`)}`;
}

export function hidden(res, name) {
  return parseHTML(res.body).find(`input[name=${name}]`).attr('value');
}

// Signs the demo user in the way a browser does: the gateway sends it to
// the authserver's login page, then consent when asked, then back through
// the gateway's callback to the page first asked for. Uses the VU's cookie
// jar; returns the final response.
// `user` (default: the demo user) may carry `secondFactor(res)`, which
// answers the second-factor page and returns the response after it.
export function signIn(page, user = stack.user) {
  const login = http.get(page, { headers: { accept: 'text/html' } });
  if (!verify(login, { 'login page': (r) => r.status === 200 && r.body.includes('action="/login"') })) {
    return login;
  }
  let res = http.post(`${stack.issuer}/login`, {
    request: hidden(login, 'request'),
    csrf: hidden(login, 'csrf'),
    username: user.username,
    password: user.password,
  });
  if (user.secondFactor) {
    res = user.secondFactor(res);
  }
  if (res.status === 200 && res.body.includes('action="/consent"')) {
    res = http.post(`${stack.issuer}/consent`, {
      request: hidden(res, 'request'),
      csrf: hidden(res, 'csrf'),
      decision: 'allow',
    });
  }
  return res;
}
