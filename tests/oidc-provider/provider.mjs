// Test-only OpenID Provider for Gatehouse's end-to-end tests: node-oidc-provider (an
// OpenID-Certified implementation) configured from a JSON file.
//
//   node provider.mjs CONFIG.json
//
// Prints exactly one line `READY <issuer>` on stdout once it listens; everything else goes
// to stderr. See docs/testing.md ("The independent OIDC provider") for the config format,
// the login/consent/logout interaction sequence and where each claim lands.
//
// NEVER use this outside tests: passwords are checked only for accounts that set one, keys
// are generated per run and the control endpoint (/__test/...) is unauthenticated.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const log = (...args) => console.error('[oidc-provider]', ...args);

const configPath = process.argv[2];
if (!configPath) {
  log('usage: node provider.mjs CONFIG.json');
  process.exit(2);
}
const config = JSON.parse(readFileSync(configPath, 'utf8'));
// `clockOffsetSeconds` runs the provider's clock off by that much (negative: in the past),
// so tests can get tokens that a relying party must find expired.
if (config.clockOffsetSeconds) {
  const realNow = Date.now;
  Date.now = () => realNow() + config.clockOffsetSeconds * 1000;
}
const host = config.host ?? '127.0.0.1';
const accounts = new Map(Object.entries(config.accounts ?? {}));
const backchannel = [];

// Listen first: with port 0 the issuer (which must carry the real port) is known only then.
const server = http.createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(config.port ?? 0, host, resolve);
});
const { port } = server.address();
// `issuer` may be given when the listen address is not what browsers use (compose.yaml:
// listening on 0.0.0.0 in a container, reached as http://localhost:5556).
const issuer = config.issuer ?? `http://${host}:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });

const clients = (config.clients ?? []).map((c) => ({
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  ...c,
}));

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
  // sub = the login key; claims filtered by oidc-provider according to scope/claims request.
  async findAccount(_ctx, sub) {
    if (!accounts.has(sub)) return undefined; // unknown login: the login prompt comes back
    return {
      accountId: sub,
      async claims() {
        const { password: _password, ...claims } = accounts.get(sub) ?? {};
        return { ...claims, sub };
      },
    };
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    claimsParameter: { enabled: true },
    userinfo: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
  },
  pkce: { required: () => true }, // only S256 exists in v9
  // A refresh token on every code exchange for clients allowed the grant, without
  // offline_access (so it still ends with the OP session: expiresWithSession).
  async issueRefreshToken(_ctx, client) {
    return client.grantTypeAllowed('refresh_token');
  },
  ...(config.rotateRefreshToken === undefined
    ? {}
    : { rotateRefreshToken: () => Boolean(config.rotateRefreshToken) }),
  ttl: {
    ...(config.ttl?.AccessToken ? { AccessToken: config.ttl.AccessToken } : {}),
    ...(config.ttl?.IdToken ? { IdToken: config.ttl.IdToken } : {}),
    ...(config.ttl?.RefreshToken ? { RefreshToken: config.ttl.RefreshToken } : {}),
    ...(config.ttl?.Session ? { Session: config.ttl.Session } : {}),
  },
  // oidc-provider refuses outgoing requests (back-channel logout) to special-use addresses
  // such as 127.0.0.0/8 (SSRF protection); the RPs under test live exactly there.
  fetch(url, options) {
    const { dispatcher: _ssrfGuard, ...rest } = options;
    return fetch(url, rest);
  },
  async renderError(ctx, out, error) {
    log('error page:', JSON.stringify(out), error?.message ?? '');
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html><head><title>oops! something went wrong</title></head><body>${Object.entries(out)
      .map(([k, v]) => `<pre><strong>${k}</strong>: ${String(v).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`)}</pre>`)
      .join('')}</body></html>`;
  },
});

provider.on('server_error', (_ctx, err) => log('server_error', err));
provider.on('grant.error', (_ctx, err) => log('grant.error', err.message, err.error_description ?? ''));
provider.on('authorization.error', (_ctx, err) => log('authorization.error', err.message, err.error_description ?? ''));
provider.on('end_session.error', (_ctx, err) => log('end_session.error', err.message, err.error_description ?? ''));
provider.on('backchannel.success', (_ctx, client, accountId, sid) => {
  backchannel.push({ client_id: client.clientId, sub: accountId, sid, ok: true });
});
provider.on('backchannel.error', (_ctx, err, client, accountId, sid) => {
  log('backchannel.error', client.clientId, err.message);
  backchannel.push({ client_id: client.clientId, sub: accountId, sid, ok: false, error: err.message });
});

const callback = provider.callback();

function send(res, status, body) {
  if (body === undefined) {
    res.writeHead(status).end();
  } else {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }
}

// Test-only control endpoints, answered before oidc-provider sees the request.
async function control(req, res, path) {
  const account = path.match(/^\/__test\/accounts\/([^/]+)$/);
  if (account) {
    const login = decodeURIComponent(account[1]);
    if (req.method === 'GET') {
      return accounts.has(login) ? send(res, 200, accounts.get(login)) : send(res, 404);
    }
    if (req.method === 'DELETE') {
      accounts.delete(login);
      return send(res, 204);
    }
    if (req.method === 'POST' || req.method === 'PUT') {
      const chunks = [];
      for await (const chunk of req) chunks.push(chunk);
      let claims;
      try {
        claims = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
      } catch (err) {
        return send(res, 400, { error: `invalid JSON: ${err.message}` });
      }
      if (claims === null || typeof claims !== 'object' || Array.isArray(claims)) {
        return send(res, 400, { error: 'body must be a JSON object' });
      }
      // POST merges (top-level keys replace; a null value removes the claim), PUT replaces.
      const next = req.method === 'PUT' ? {} : { ...(accounts.get(login) ?? {}) };
      for (const [k, v] of Object.entries(claims)) {
        if (v === null) delete next[k];
        else next[k] = v;
      }
      accounts.set(login, next);
      return send(res, 204);
    }
    return send(res, 405);
  }
  if (path === '/__test/backchannel' && req.method === 'GET') {
    return send(res, 200, backchannel);
  }
  return send(res, 404);
}

// devInteractions accepts any login and password, and oidc-provider answers a login it
// cannot find (findAccount → undefined) with a 500. So the login form's POST is checked
// here first: an unknown login, or a wrong password for an account that has a "password",
// goes back to the login form (303 to the same interaction URL), like a real IdP would.
async function checkLogin(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const raw = Buffer.concat(chunks).toString('utf8');
  const form = new URLSearchParams(raw);
  if (form.get('prompt') === 'login') {
    const account = accounts.get(form.get('login') ?? '');
    const password = account?.password;
    if (!account || (password !== undefined && password !== form.get('password'))) {
      log(`login refused for ${JSON.stringify(form.get('login'))}`);
      res.writeHead(303, { location: req.url, 'cache-control': 'no-store' }).end();
      return;
    }
  }
  req.body = raw; // oidc-provider parses an already-read body from req.body
  callback(req, res);
}

server.on('request', (req, res) => {
  const path = new URL(req.url, issuer).pathname;
  if (path.startsWith('/__test/')) {
    control(req, res, path).catch((err) => {
      log('control endpoint', err);
      if (!res.headersSent) send(res, 500);
    });
    return;
  }
  if (req.method === 'POST' && /^\/interaction\/[^/]+$/.test(path)) {
    checkLogin(req, res).catch((err) => {
      log('login check', err);
      if (!res.headersSent) send(res, 500);
    });
    return;
  }
  callback(req, res);
});

const stop = (signal) => {
  log(`${signal}, exiting`);
  server.close();
  server.closeAllConnections?.();
  process.exit(0);
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

process.stdout.write(`READY ${issuer}\n`);
