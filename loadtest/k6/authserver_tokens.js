// The authserver's token service: a client_credentials token, then its
// introspection (RFC 7662) by the same confidential client.
import http from 'k6/http';
import { stack, verify, options as build, basic } from './lib.js';

export const options = build('authserver_tokens', { rate: 200, p95: 10, p99: 20 });

const service = stack.clients.service;
const params = { headers: { authorization: basic(service.client_id, service.client_secret) } };

export default function () {
  const issued = http.post(`${stack.issuer}/token`, { grant_type: 'client_credentials', scope: 'orders:read' }, params);
  if (!verify(issued, { 'token issued': (r) => r.status === 200 })) return;
  const res = http.post(`${stack.issuer}/introspect`, { token: issued.json('access_token') }, params);
  verify(res, {
    'introspected as active': (r) =>
      r.status === 200 && r.json('active') === true && r.json('client_id') === service.client_id,
  });
}
