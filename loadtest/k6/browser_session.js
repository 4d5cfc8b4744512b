// Browser-session traffic through the gateway: the demo user signed in
// once (through the authserver's real pages), then page requests carrying
// the gateway's sealed session cookie.
import http from 'k6/http';
import { fail } from 'k6';
import { stack, verify, options as build, signIn } from './lib.js';

export const options = build('browser_session', { rate: 500, p95: 4, p99: 8 });

export function setup() {
  const res = signIn(stack.browser_url);
  if (res.status !== 200) fail(`sign-in: ${res.status} ${res.body}`);
  const cookies = http.cookieJar().cookiesForURL(stack.browser_url);
  const session = Object.entries(cookies)
    .filter(([name]) => name.includes('portcullis_session'))
    .map(([name, values]) => `${name}=${values[0]}`);
  if (session.length === 0) fail(`no session cookie after sign-in: ${JSON.stringify(Object.keys(cookies))}`);
  return { cookie: session.join('; ') };
}

export default function ({ cookie }) {
  const res = http.get(stack.browser_url, {
    headers: { cookie, accept: 'text/html' },
    redirects: 0,
  });
  verify(res, {
    'the signed-in user reaches the app': (r) =>
      r.status === 200 && r.json('headers')['x-auth-subject'] !== undefined,
  });
}
