// A relying party's back-channel logout endpoint (OpenID Connect
// Back-Channel Logout 1.0 §2.6), verifying each logout token with jose
// against the issuer's JWKS, independently of the server under test.
//
//   node backchannel.mjs ISSUER CLIENT_ID FAILURES
//
// Listens on 127.0.0.1 (an ephemeral port, printed first as
// {"message": "listening", "port": PORT}); answers the first FAILURES deliveries 503 (to see
// retries), then verifies: signature (JWKS), iss, aud, iat/exp, typ
// `logout+jwt`, the back-channel event, sid and/or sub, no nonce, a jti not
// seen before. Prints one JSON line per delivery: the claims, or the reason
// it was refused (answered 400).
import http from 'node:http';
import * as jose from 'jose';

const [issuer, clientId, failuresArg] = process.argv.slice(2);
let failures = Number(failuresArg || 0);
const jwks = jose.createRemoteJWKSet(new URL(`${issuer}/jwks`));
const EVENT = 'http://schemas.openid.net/event/backchannel-logout';
const seenJti = new Set();

async function verify(token) {
  const { payload, protectedHeader } = await jose.jwtVerify(token, jwks, {
    issuer,
    audience: clientId,
    typ: 'logout+jwt',
    maxTokenAge: '5 minutes',
    requiredClaims: ['iat', 'exp', 'jti', 'events'],
  });
  if (typeof payload.events?.[EVENT] !== 'object') throw new Error('no back-channel logout event');
  if (!payload.sid && !payload.sub) throw new Error('neither sid nor sub');
  if ('nonce' in payload) throw new Error('a logout token must not carry a nonce');
  if (seenJti.has(payload.jti)) throw new Error('jti replayed');
  seenJti.add(payload.jti);
  return { ...payload, typ: protectedHeader.typ };
}

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', async () => {
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    if (failures > 0) {
      failures -= 1;
      console.log(JSON.stringify({ refused_on_purpose: true }));
      res.writeHead(503).end();
      return;
    }
    const token = new URLSearchParams(body).get('logout_token');
    try {
      const claims = await verify(token);
      console.log(JSON.stringify({ verified: claims }));
      res.writeHead(200, { 'cache-control': 'no-store' }).end();
    } catch (e) {
      console.log(JSON.stringify({ refused: String(e.message || e) }));
      res.writeHead(400, { 'cache-control': 'no-store' }).end();
    }
  });
});
server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ message: 'listening', port: server.address().port }));
});
