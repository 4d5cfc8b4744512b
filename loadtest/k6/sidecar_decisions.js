// Sidecar decisions over its HTTP API (`/v1/check`), as a proxy asks them:
// the request and verified claims in, allow or deny out. A mix of allowed
// and denied requests; each answer must be the expected one.
import http from 'k6/http';
import { stack, verify, options as build } from './lib.js';

export const options = build('sidecar_decisions', { rate: 2000, p95: 3, p99: 5 });

const cases = [
  { method: 'GET', path: '/api/orders', claims: { sub: 'alice', groups: ['staff'] }, allow: true },
  { method: 'POST', path: '/api/orders', claims: { sub: 'alice', groups: ['staff'] }, allow: false },
  { method: 'GET', path: '/api/orders/o-1', claims: { client_id: 'svc', scope: 'orders:read' }, allow: true },
  { method: 'DELETE', path: '/api/orders/o-1', claims: { client_id: 'svc', scope: 'orders:read' }, allow: false },
  { method: 'GET', path: '/public/welcome', allow: true },
  { method: 'GET', path: '/admin/users', claims: { sub: 'alice', groups: ['staff'] }, allow: false },
].map((c) => ({ ...c, body: JSON.stringify({ method: c.method, path: c.path, claims: c.claims }) }));

const url = `${stack.services.sidecar}/v1/check`;
const params = { headers: { 'content-type': 'application/json' } };

export default function () {
  const c = cases[(__ITER + __VU) % cases.length];
  const res = http.post(url, c.body, params);
  verify(res, {
    'the expected decision': (r) => r.status === 200 && (r.json('decision') === 'Allow') === c.allow,
  });
}
