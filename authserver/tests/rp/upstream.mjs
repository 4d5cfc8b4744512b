// An upstream OpenID provider nobody here wrote: oidc-provider (OpenID
// Certified), for the federation tests.
//
//   node upstream.mjs CLIENT_ID CLIENT_SECRET REDIRECT_URI
//
// Listens on 127.0.0.1 (an ephemeral port) and prints
// {"message": "listening", "issuer": URL}. Its development login page takes
// any password; the accounts it knows are below (any other login is a user
// with no claims but `sub`). Claims go into the ID token.
import http from 'node:http';
import Provider from 'oidc-provider';

const [clientId, clientSecret, redirectUri] = process.argv.slice(2);
const accounts = {
  // A new person: verified address, in an upstream group the map names.
  ursula: { email: 'ursula@example.com', email_verified: true, name: 'Ursula Upstream', groups: ['idp-staff', 'idp-other'] },
  // Claims the demo user's address, unverified: must never be linked by it.
  mallory: { email: 'demo@example.com', email_verified: false, name: 'Mallory' },
  // An address outside the allowed domains.
  outsider: { email: 'outsider@elsewhere.test', email_verified: true },
  // As Google sends them: a Workspace account of example.com (`hd`), and a
  // consumer account whose verified address is at example.com (no `hd`).
  wanda: { email: 'wanda@example.com', email_verified: true, hd: 'example.com' },
  carl: { email: 'carl@example.com', email_verified: true },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified', 'hd'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  findAccount: (ctx, id) => ({
    accountId: id,
    claims: () => ({ sub: id, amr: ['pwd'], ...(accounts[id] || {}) }),
  }),
});
server.on('request', provider.callback());
console.log(JSON.stringify({ message: 'listening', issuer }));
