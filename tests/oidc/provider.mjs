// A real OpenID provider for the SSO tests: panva's oidc-provider (certified), configured from
// the environment by the test that starts it. Its built-in development log-in form takes any
// login name; ACCOUNTS says which email (and whether verified) each name has.
//
//   PORT=… ISSUER=http://127.0.0.1:… CLIENT_ID=… CLIENT_SECRET=… REDIRECT_URI=…
//   ACCOUNTS='{"ada": {"email": "ada@analytical.example", "email_verified": true}}'
//   node provider.mjs
import Provider from "oidc-provider";

const env = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`provider.mjs: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const accounts = JSON.parse(env("ACCOUNTS"));

const provider = new Provider(env("ISSUER"), {
  clients: [
    {
      client_id: env("CLIENT_ID"),
      client_secret: env("CLIENT_SECRET"),
      redirect_uris: [env("REDIRECT_URI")],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  claims: { openid: ["sub"], email: ["email", "email_verified"] },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: account.email, email_verified: account.email_verified };
      },
    };
  },
});
provider.proxy = false;
const server = provider.listen(Number(env("PORT")), "127.0.0.1", () => {
  console.log(`oidc-provider listening on ${env("ISSUER")}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
