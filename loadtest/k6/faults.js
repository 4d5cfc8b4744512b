// The load `loadtest faults` keeps on the stack while it breaks things:
// - `allowed`: the bearer workload through the gateway (JWT, a decision
//   for every request, the upstream), expected 200;
// - `refused`: requests the edge must refuse whatever is broken: no token
//   (401), a token naming a key nobody published (401), and a valid token
//   on a path every policy forbids (403, only the sidecar can say so);
//   any 2xx here is the gateway failing open;
// - `tokens`: client_credentials at the authserver, expected 200.
// The runner reads each request's status and time from k6's CSV output, so
// there are no thresholds: a fault is meant to cause errors. The checks say
// what is expected when nothing is broken (CI's smoke run holds them).
import http from 'k6/http';
import encoding from 'k6/encoding';
import { stack, serviceToken, basic, verify } from './lib.js';

const duration = __ENV.DURATION || '60s';
const rate = Number(__ENV.RATE || 200);

function scenario(exec, perSecond, vus) {
  return {
    executor: 'constant-arrival-rate',
    exec,
    rate: perSecond,
    timeUnit: '1s',
    duration,
    preAllocatedVUs: vus,
    // A slow upstream holds a VU for the gateway's read timeout (1 s), a
    // stopped database one for the authserver's pool wait: room for that,
    // as an iteration without a free VU is not sent at all.
    maxVUs: Math.max(100, 2 * perSecond),
  };
}

export const options = {
  scenarios: {
    allowed: scenario('allowed', rate, Math.max(8, rate / 20)),
    refused: scenario('refused', 30, 4),
    tokens: scenario('tokens', 10, 4),
  },
  summaryTrendStats: ['med', 'p(99)', 'max'],
};

// The header of `token` with `kid` changed: a key the issuer never published.
function unknownKey(token) {
  const [header, payload, signature] = token.split('.');
  const parsed = JSON.parse(encoding.b64decode(header, 'rawurl', 's'));
  parsed.kid = `${parsed.kid}-unpublished`;
  return [encoding.b64encode(JSON.stringify(parsed), 'rawurl'), payload, signature].join('.');
}

export function setup() {
  const token = serviceToken('orders:read');
  return { token, forged: unknownKey(token) };
}

export function allowed({ token }) {
  const res = http.get(stack.protected_url, {
    headers: { authorization: `Bearer ${token}` },
    tags: { name: 'allowed' },
    responseType: 'none',
  });
  verify(res, { allowed: (r) => r.status === 200 });
}

const gateway = stack.services.gateway;

export function refused({ token, forged }) {
  const asks = [
    [`${gateway}/api/orders`, {}, 'no token'],
    [`${gateway}/api/orders`, { authorization: `Bearer ${forged}` }, 'unpublished key'],
    [`${gateway}/api/forbidden-everywhere`, { authorization: `Bearer ${token}` }, 'forbidden path'],
  ];
  const [url, headers, name] = asks[Math.floor(Math.random() * asks.length)];
  const res = http.get(url, { headers, tags: { name }, responseType: 'none' });
  verify(res, { [`refused: ${name}`]: (r) => r.status === (name === 'forbidden path' ? 403 : 401) });
}

export function tokens() {
  const service = stack.clients.service;
  const res = http.post(
    `${stack.issuer}/token`,
    { grant_type: 'client_credentials', scope: 'orders:read' },
    {
      headers: { authorization: basic(service.client_id, service.client_secret) },
      tags: { name: 'token' },
      responseType: 'none',
    },
  );
  verify(res, { token: (r) => r.status === 200 });
}
