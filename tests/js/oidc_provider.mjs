// A real OpenID Connect provider (panva/oidc-provider v9) for radcloud's SSO tests.
//
//   node oidc_provider.mjs [port]
//
// Listens on 127.0.0.1:<port> (0 = any free port) and prints one line
// `READY <issuer>` on stdout when it accepts connections.  Configuration from
// the environment:
//
//   OIDC_PORT             port when not given as argv[2] (default 0)
//   OIDC_CLIENTS          JSON list of confidential clients:
//                         [{"client_id": ..., "client_secret": ..., "redirect_uris": [...]}]
//                         (default: one client "radcloud" / "radcloud-secret" with
//                         OIDC_REDIRECT_URI as its only redirect URI)
//   OIDC_REDIRECT_URI     redirect URI of the default client
//   OIDC_PASSWORD         the password of every test account (default "correct horse")
//   OIDC_ID_TOKEN_CLAIMS  "1": put profile/email claims into the ID token as most
//                         hospital IdPs do; otherwise (the OIDC Core default for the
//                         code flow) they come only from the userinfo endpoint
//
// Accounts (user name -> claims) are in ACCOUNTS below; `sub` differs from the
// user name on purpose.  PKCE is required for every client, ID tokens are
// signed with an RS256 key generated at start.
//
// Sign-in without a browser: GET the authorization URL, follow redirects to
// /interaction/<uid> (an HTML page whose form posts to
// /interaction/<uid>/login with fields `login` and `password`), follow the
// redirects to the consent page and POST /interaction/<uid>/confirm; the next
// redirects end at the client's redirect URI.  /interaction/<uid>/abort
// answers the client with error=access_denied.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { Provider } from 'oidc-provider';

const ACCOUNTS = {
  'dr.wang': {
    sub: 'u-1001-7f3a', name: 'Wang Fang', given_name: 'Fang', family_name: 'Wang',
    email: 'dr.wang@hospital.example', email_verified: true,
  },
  'dr.li': {
    sub: 'u-1002-91bc', name: 'Li Wei', given_name: 'Wei', family_name: 'Li',
    email: 'dr.li@hospital.example', email_verified: true,
  },
  'dr.zhang': {
    sub: 'u-1003-c0de', name: 'Zhang Min', given_name: 'Min', family_name: 'Zhang',
    email: 'dr.zhang@hospital.example', email_verified: true,
  },
  'nurse.chen': {
    sub: 'u-1004-5e11', name: 'Chen Jing', given_name: 'Jing', family_name: 'Chen',
    email: 'nurse.chen@hospital.example', email_verified: true,
  },
  admin: {
    sub: 'u-1000-ad00', name: 'IdP administrator', email: 'it@hospital.example',
    email_verified: true,
  },
};
const BY_SUB = new Map(Object.entries(ACCOUNTS).map(([username, a]) => [a.sub, { username, ...a }]));
const PASSWORD = process.env.OIDC_PASSWORD || 'correct horse';

const port = Number(process.argv[2] ?? process.env.OIDC_PORT ?? 0);

function clientsFromEnv() {
  if (process.env.OIDC_CLIENTS) return JSON.parse(process.env.OIDC_CLIENTS);
  return [{
    client_id: 'radcloud',
    client_secret: 'radcloud-secret',
    redirect_uris: [process.env.OIDC_REDIRECT_URI || 'http://127.0.0.1/api/auth/oidc/callback'],
  }];
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `rs-${randomBytes(6).toString('hex')}`, use: 'sig', alg: 'RS256' };
}

async function findAccount(ctx, sub) {
  const account = BY_SUB.get(sub);
  if (!account) return undefined;
  return {
    accountId: sub,
    async claims() {
      const { username, sub: _sub, ...rest } = account;
      return { sub, preferred_username: username, ...rest };
    },
  };
}

const html = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(`<!doctype html><html><head><meta charset="utf-8"><title>${html(title)}</title></head>`
    + `<body><h1>${html(title)}</h1>${body}</body></html>`);
}

function loginForm(res, uid, error = '') {
  page(res, error ? 401 : 200, 'Hospital sign-in',
    (error ? `<p class="error">${html(error)}</p>` : '')
    + `<form method="post" action="/interaction/${html(uid)}/login">`
    + '<input name="login" autocomplete="username"><input name="password" type="password">'
    + '<button type="submit">Sign in</button></form>'
    + `<a href="/interaction/${html(uid)}/abort">Cancel</a>`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function main() {
  const clients = clientsFromEnv().map((c) => ({
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    ...c,
  }));
  // The issuer must be known before listening; bind first to learn a free port.
  const server = createServer();
  await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
  const issuer = `http://127.0.0.1:${server.address().port}`;

  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'given_name', 'family_name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    conformIdTokenClaims: process.env.OIDC_ID_TOKEN_CLAIMS !== '1',
    pkce: { required: () => true },
    findAccount,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!doctype html><title>error</title><pre>${html(JSON.stringify(out))}</pre>`;
    },
  });
  const oidc = provider.callback();

  async function interaction(req, res, uid, action) {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) {
      page(res, 400, 'Wrong interaction', '<p>this sign-in belongs to another interaction</p>');
      return;
    }
    const { prompt, params, session } = details;
    if (action === 'abort') {
      await provider.interactionFinished(req, res, {
        error: 'access_denied', error_description: 'the user cancelled the sign-in',
      }, { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'GET' && !action) {
      if (prompt.name === 'login') {
        loginForm(res, uid);
      } else if (prompt.name === 'consent') {
        page(res, 200, 'Allow access',
          `<p>${html(params.client_id)} asks for: ${html(params.scope)}</p>`
          + `<form method="post" action="/interaction/${html(uid)}/confirm">`
          + '<button type="submit">Allow</button></form>'
          + `<a href="/interaction/${html(uid)}/abort">Deny</a>`);
      } else {
        page(res, 501, 'Not implemented', `<p>prompt ${html(prompt.name)}</p>`);
      }
      return;
    }
    if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
      const form = await readForm(req);
      const account = ACCOUNTS[form.get('login') || ''];
      if (!account || form.get('password') !== PASSWORD) {
        loginForm(res, uid, 'wrong user name or password');
        return;
      }
      await provider.interactionFinished(req, res, { login: { accountId: account.sub } },
        { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = prompt.details;
      if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
      if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missingResourceScopes || {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } },
        { mergeWithLastSubmission: true });
      return;
    }
    page(res, 400, 'Unexpected step', `<p>${html(req.method)} ${html(action)} during ${html(prompt.name)}</p>`);
  }

  server.on('request', (req, res) => {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|confirm|abort))?\/?$/.exec(
      new URL(req.url, issuer).pathname,
    );
    if (!m) {
      oidc(req, res);
      return;
    }
    interaction(req, res, m[1], m[2]).catch((err) => {
      page(res, 400, 'Sign-in failed', `<p>${html(err.name)}: ${html(err.message)}</p>`);
    });
  });

  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdout.write(`READY ${issuer}\n`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
