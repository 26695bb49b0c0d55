// MSAL Node's device-code flow against agentid. Prints the device code callback's payload as
// one JSON line (someone completes /devicelogin with it), then the token result as another.
//
// Env: BASE (STS base URL), TENANT, CLIENT_ID, SCOPES (space-separated), NODE_EXTRA_CA_CERTS (the STS CA).

import { PublicClientApplication } from '@azure/msal-node';

const { BASE, TENANT, CLIENT_ID, SCOPES } = process.env;
const host = new URL(BASE).host;
const pca = new PublicClientApplication({
  auth: { clientId: CLIENT_ID, authority: `${BASE}/${TENANT}`, knownAuthorities: [host] },
});
try {
  const result = await pca.acquireTokenByDeviceCode({
    scopes: SCOPES.split(' '),
    deviceCodeCallback: (r) => console.log(JSON.stringify({ userCode: r.userCode, verificationUri: r.verificationUri, message: r.message })),
  });
  console.log(JSON.stringify({ accessToken: result.accessToken, idTokenClaims: result.idTokenClaims, account: result.account?.username }));
} catch (e) {
  console.log(JSON.stringify({ error: e.errorCode ?? String(e), description: e.errorMessage ?? e.message }));
  process.exitCode = 1;
}
