// Shared by the k6 scenarios: the stack's addresses and demo accounts (the
// JSON `portcullis up --dev-credentials FILE` writes), options built from a
// few environment variables, and signing in through the real pages.
import http from 'k6/http';
import { check, fail } from 'k6';
import { parseHTML } from 'k6/html';
import encoding from 'k6/encoding';

if (!__ENV.PORTCULLIS_CREDENTIALS) {
  throw new Error('set PORTCULLIS_CREDENTIALS to the file `portcullis up --dev-credentials FILE` wrote');
}
export const stack = JSON.parse(open(__ENV.PORTCULLIS_CREDENTIALS));

for (const url of Object.values(stack.services)) {
  const host = String(url).replace(/^https?:\/\//, '').split(':')[0];
  if (!host.startsWith('127.')) {
    throw new Error(`load tests target loopback only, not ${url}`);
  }
}

// RATE iterations per second for DURATION (a k6 duration, e.g. 30s); the
// latency thresholds are multiplied by THRESHOLD_SCALE (the CI smoke run on
// a debug build uses a large one; the error-rate thresholds never change).
export function options(name, { rate, p95, p99, vus }) {
  const scale = Number(__ENV.THRESHOLD_SCALE || 1);
  const target = Number(__ENV.RATE || rate);
  return {
    scenarios: {
      [name]: {
        executor: 'constant-arrival-rate',
        rate: target,
        timeUnit: '1s',
        duration: __ENV.DURATION || '30s',
        preAllocatedVUs: Number(__ENV.VUS || vus || Math.max(4, Math.ceil(target / 100))),
        maxVUs: 4 * Number(__ENV.VUS || vus || Math.max(4, Math.ceil(target / 100))),
      },
    },
    thresholds: {
      http_req_failed: ['rate==0'],
      checks: ['rate==1'],
      dropped_iterations: [`count<=${Math.ceil(target * 0.01 * scale)}`],
      http_req_duration: [`p(95)<${p95 * scale}`, `p(99)<${p99 * scale}`],
    },
    summaryTrendStats: ['avg', 'med', 'p(95)', 'p(99)', 'max'],
  };
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

function hidden(res, name) {
  return parseHTML(res.body).find(`input[name=${name}]`).attr('value');
}

// Signs the demo user in the way a browser does: the gateway sends it to
// the authserver's login page, then consent when asked, then back through
// the gateway's callback to the page first asked for. Uses the VU's cookie
// jar; returns the final response.
export function signIn(page) {
  const login = http.get(page, { headers: { accept: 'text/html' } });
  if (!check(login, { 'login page': (r) => r.status === 200 && r.body.includes('action="/login"') })) {
    return login;
  }
  let res = http.post(`${stack.issuer}/login`, {
    request: hidden(login, 'request'),
    csrf: hidden(login, 'csrf'),
    username: stack.user.username,
    password: stack.user.password,
  });
  if (res.status === 200 && res.body.includes('action="/consent"')) {
    res = http.post(`${stack.issuer}/consent`, {
      request: hidden(res, 'request'),
      csrf: hidden(res, 'csrf'),
      decision: 'allow',
    });
  }
  return res;
}
