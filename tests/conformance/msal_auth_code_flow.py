#!/usr/bin/env python3
"""MSAL Python's authorization code flow (PKCE) against agentid, completed by someone else.

Prints the flow from initiate_auth_code_flow() as one JSON line, reads the redirect's query
parameters as one JSON line on stdin, then prints acquire_token_by_auth_code_flow()'s result.

Env: AUTHORITY, CLIENT_ID, SCOPES (space-separated), REDIRECT_URI, REQUESTS_CA_BUNDLE.
"""

import json
import os
import sys

import msal

app = msal.PublicClientApplication(os.environ["CLIENT_ID"], authority=os.environ["AUTHORITY"], instance_discovery=False)
flow = app.initiate_auth_code_flow(os.environ["SCOPES"].split(), redirect_uri=os.environ["REDIRECT_URI"])
print(json.dumps(flow), flush=True)
auth_response = json.loads(sys.stdin.readline())
print(json.dumps(app.acquire_token_by_auth_code_flow(flow, auth_response)), flush=True)
