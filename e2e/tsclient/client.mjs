// TypeScript MCP SDK client for mcpgw's e2e suite (issue 8 scenario 3),
// run with the machine's Node and driven by e2e/tsclient_test.go.
//
// Usage: node client.mjs <route URL> <redirect URI>
//
// It talks JSON lines with the Go test: when the SDK wants the user to
// authorize it prints {"step":"authorize","url":...} and reads back
// {"code":...,"state":...} (the Go test plays the browser: login and
// consent over HTTP). At the end it prints {"step":"done",...} with what it
// observed. Its own gateway tokens are never printed; the Authorization the
// upstream echoed back (the credential mcpgw injected, a test value) is, so
// the Go test can compare it with what it expects.
import readline from 'node:readline';
import { randomUUID } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { auth, UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';

const [serverUrl, redirectUrl] = process.argv.slice(2);
if (!serverUrl || !redirectUrl) {
  console.error('usage: node client.mjs <route URL> <redirect URI>');
  process.exit(2);
}

const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
async function ask(obj) {
  say(obj);
  const { value, done } = await lines.next();
  if (done) throw new Error('the Go test closed stdin');
  return JSON.parse(value);
}

// An in-memory OAuthClientProvider: dynamic client registration, PKCE,
// and the authorization step handed to the Go test.
class Provider {
  authorizeCalls = 0;
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return {
      redirect_uris: [redirectUrl],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      scope: 'mcp:access',
      client_name: 'TypeScript SDK e2e client',
    };
  }
  state() { this.sentState = randomUUID(); return this.sentState; }
  clientInformation() { return this.client; }
  saveClientInformation(c) { this.client = c; }
  tokens() { return this.saved; }
  saveTokens(t) { this.saved = t; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
  async redirectToAuthorization(url) {
    this.authorizeCalls++;
    const r = await ask({ step: 'authorize', url: url.toString() });
    if (r.state !== this.sentState) throw new Error('state mismatch in the authorization response');
    this.code = r.code;
  }
}

// Headers the gateway must strip before the upstream (DESIGN §6 step 8).
const planted = { 'X-Client-Unknown': 'ts-client-unknown-header', 'Cookie': 'ts=client-cookie' };

const provider = new Provider();
const newTransport = () => new StreamableHTTPClientTransport(new URL(serverUrl), {
  authProvider: provider, requestInit: { headers: planted },
});
const client = new Client({ name: 'e2e-ts-client', version: '1.0.0' });
try {
  await client.connect(newTransport());
} catch (err) {
  if (!(err instanceof UnauthorizedError)) throw err;
  const t = newTransport();
  await t.finishAuth(provider.code);
  await client.connect(t);
}
const tools = await client.listTools();
const echo = await client.callTool({ name: 'echo_headers', arguments: {} });
const echoed = JSON.parse(echo.content[0].text);
const first = provider.tokens();

// Refresh: with a refresh token in hand, auth() rotates it at the token
// endpoint without another authorization.
const result = await auth(provider, { serverUrl });
const second = provider.tokens();
const afterRefresh = await client.callTool({ name: 'echo_headers', arguments: {} });
await client.close();

// What the upstream saw is reported for the Go test to compare with the
// credential it expects mcpgw to inject (a test double's value, never a
// gateway token).
const own = [first.access_token, second.access_token];
const upstreamAuth = (echoed.authorization || []).join(',');
const upstreamAuthAfter = afterRefresh.isError ? '' : (JSON.parse(afterRefresh.content[0].text).authorization || []).join(',');
say({
  step: 'done',
  tools: tools.tools.map((t) => t.name).sort(),
  upstreamHeaders: Object.keys(echoed).sort(),
  upstreamAuthorization: upstreamAuth,
  upstreamAuthorizationAfterRefresh: upstreamAuthAfter,
  ownTokenReachedUpstream: own.some((tok) => upstreamAuth.includes(tok) || upstreamAuthAfter.includes(tok)),
  refreshResult: result,
  refreshed: first.access_token !== second.access_token && first.refresh_token !== second.refresh_token,
  callAfterRefresh: !afterRefresh.isError,
  authorizeCalls: provider.authorizeCalls,
  clientId: provider.client?.client_id ?? '',
});
process.exit(0);
