#!/usr/bin/env python3
"""Get a token with azure.identity.WorkloadIdentityCredential from the agentid STS.

Run by the Rust conformance test with the venv's python. The credential is
built with NO arguments, exactly as workloads on AKS do: it reads
AZURE_AUTHORITY_HOST, AZURE_TENANT_ID, AZURE_CLIENT_ID and
AZURE_FEDERATED_TOKEN_FILE from the environment (set by the caller, together
with REQUESTS_CA_BUNDLE for our test CA). SCOPE (default
https://graph.microsoft.com/.default) is the scope asked for.

Prints one JSON object on stdout:
    {"token": "<access token>", "expires_on": <unix seconds>}
or, when the STS refused (azure.core ClientAuthenticationError), exit 0 with
    {"error": "ClientAuthenticationError", "error_description": "<message>",
     "status_code": <http status or null>}
Any other Python exception: traceback on stderr and a non-zero exit.

Findings from the pinned azure-identity 1.27.0 source (azure/identity/...):

* WorkloadIdentityCredential (_credentials/workload_identity.py) subclasses
  ClientAssertionCredential (_credentials/client_assertion.py), which talks to
  the STS through azure.identity._internal.AadClient, NOT through MSAL's
  ClientApplication. MSAL is only used for its TokenCache class. So there is
  no instance discovery and no OIDC/tenant discovery at all, and
  disable_instance_discovery is neither needed nor used by this credential
  (only the MSAL-based credentials, e.g. ClientSecretCredential,
  CertificateCredential, UsernamePasswordCredential, OnBehalfOfCredential,
  take it). No extra kwarg is passed here.
* The token URL is built by string joining
  (_internal/aad_client_base.py, AadClientBase._get_token_url):
      "{AZURE_AUTHORITY_HOST rstrip '/'}/{AZURE_TENANT_ID}/oauth2/v2.0/token"
  A port in AZURE_AUTHORITY_HOST is kept; a scheme-less value gets "https://"
  prepended and a non-https scheme is rejected (_internal/utils.py,
  normalize_authority). This credential does not validate the characters of
  the tenant id or scope (only the MSAL-based and CLI credentials do).
* The request (AadClientBase._get_jwt_assertion_request) is a form POST with
  exactly: client_assertion=<file content as read, NOT stripped: a trailing
  newline in the token file reaches the STS>,
  client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer,
  client_id, grant_type=client_credentials, scope=<scopes joined by " ">
  (and "claims" only when CAE/claims are requested). No client_info, no
  fmi_path. The token file is re-read at most every 600 s
  (TokenFileMixin._get_service_account_token).
* The response must hold "access_token" and "expires_in" or "expires_on"
  (integer or integer string), else ClientAuthenticationError("Unexpected
  response ..."); any "error" key raises ClientAuthenticationError. When
  expires_in >= 7200 and no refresh_in is given, refresh_in = expires_in // 2.
* TLS goes through azure-core's RequestsTransport with env settings on, so
  REQUESTS_CA_BUNDLE is honoured.
"""

import json
import os
import sys
import traceback


def main():
    scope = os.environ.get("SCOPE") or "https://graph.microsoft.com/.default"
    try:
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import WorkloadIdentityCredential

        credential = WorkloadIdentityCredential()
        try:
            token = credential.get_token(scope)
            out = {"token": token.token, "expires_on": token.expires_on}
        except ClientAuthenticationError as e:
            response = getattr(e, "response", None)
            out = {
                "error": type(e).__name__,
                "error_description": e.message,
                "status_code": getattr(response, "status_code", None),
            }
        finally:
            credential.close()
    except Exception:  # noqa: BLE001 - reported, then a non-zero exit
        traceback.print_exc(file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
