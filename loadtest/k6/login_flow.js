// The full browser login, each iteration a new browser (cookie jar): the
// gateway redirects to the authserver, the login form is posted (argon2id
// verifies the password: this is the costly step), consent is given when
// asked, the gateway's callback exchanges the code (PKCE) and the user
// lands on the page first asked for.
import http from 'k6/http';
import { stack, verify, options as build, signIn } from './lib.js';

export const options = build('login_flow', { rate: 5, p95: 300, p99: 500, vus: 4 });

export default function () {
  // Cookies are not per port: this clears the gateway's and the authserver's.
  http.cookieJar().clear(stack.browser_url);
  const res = signIn(`${stack.browser_url}?from=k6`);
  verify(res, {
    'signed in and back on the first page': (r) =>
      r.status === 200 && r.json('headers')['x-auth-subject'] !== undefined && r.url.endsWith('?from=k6'),
  });
}
