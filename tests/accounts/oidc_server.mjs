// A real OpenID Connect provider for the tests: oauth2-mock-server (signed tokens, discovery,
// JWKS, PKCE checked), with people the tests choose. Started by tests/accounts/idp.py.
//
//   node tests/accounts/oidc_server.mjs      prints its issuer URL on the first line of stdout
//
// People: POST /_people {"key": {"sub", "email", "name", "groups", ...claims}, ...} adds or
// replaces them (claims read at each token, so a test can change someone's groups between two
// logins); GET /_picture.png is a picture they can claim, and GET /_picture/fetches says how
// often anyone fetched it; POST /_people/default {"key": "..."} names who signs in when the authorization
// request has no login_hint (a browser clicking the button). The login_hint names the person.
import { OAuth2Server } from "oauth2-mock-server";

const people = {};
let defaultKey = null;
const codes = new Map(); // authorization code -> person key

function claimsOf(key) {
  const person = people[key];
  if (!person) return { sub: `unknown-${key}` };
  return { ...person };
}

function bearerKey(req) {
  // The access token is one of ours: its payload names the person it was issued for.
  const token = (req.headers.authorization ?? "").replace(/^Bearer /, "");
  try {
    return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).person;
  } catch {
    return undefined;
  }
}

const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
const service = server.service;

service.on("beforeAuthorizeRedirect", ({ url }, req) => {
  const key = req.query.login_hint || defaultKey;
  const code = url.searchParams.get("code");
  if (code && key) codes.set(code, key);
});

service.on("beforeTokenSigning", (token, req) => {
  const key = codes.get(req.body.code);
  if (key === undefined) return;
  // Both the ID token and the access token are signed here, once each per code.
  Object.assign(token.payload, claimsOf(key), { person: key });
});

service.on("beforeResponse", (_response, req) => {
  codes.delete(req.body.code); // one use per code, as a real provider does
});

service.on("beforeUserinfo", (response, req) => {
  const key = bearerKey(req);
  if (key !== undefined) response.body = claimsOf(key);
});

function reply(res, body) {
  res.statusCode = 200;
  res.setHeader("Content-Type", "application/json");
  res.end(JSON.stringify(body));
}

service.addRoute("POST", "/_people", (req, res) => {
  Object.assign(people, req.body ?? {});
  reply(res, { people: Object.keys(people) });
});

// A picture URL for the people's `picture` claim: counts fetches, which must stay at none.
let pictureFetches = 0;
service.addRoute("GET", "/_picture.png", (_req, res) => {
  pictureFetches += 1;
  res.statusCode = 404;
  res.end();
});
service.addRoute("GET", "/_picture/fetches", (_req, res) => reply(res, { fetches: pictureFetches }));

service.addRoute("POST", "/_people/default", (req, res) => {
  defaultKey = req.body?.key ?? null;
  reply(res, { default: defaultKey });
});

await server.start(0, "127.0.0.1");
// The package names the issuer "localhost", which may resolve to ::1 where nothing listens.
server.issuer.url = `http://127.0.0.1:${server.address().port}`;
process.stdout.write(`${server.issuer.url}\n`);

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, async () => {
    await server.stop();
    process.exit(0);
  });
}
