#!/usr/bin/env python3
"""MSAL Python's device-code flow against agentid, completed by someone else in a browser.

Prints two JSON lines on stdout: first the flow from initiate_device_flow() (so the caller can
enter its user_code on /devicelogin), then the result of acquire_token_by_device_flow(), and
finally the result of a silent refresh with the refresh token it got.

Env: AUTHORITY, CLIENT_ID, SCOPES (space-separated), REQUESTS_CA_BUNDLE.
"""

import json
import os
import sys

import msal

app = msal.PublicClientApplication(os.environ["CLIENT_ID"], authority=os.environ["AUTHORITY"], instance_discovery=False)
scopes = os.environ["SCOPES"].split()
flow = app.initiate_device_flow(scopes=scopes)
print(json.dumps(flow), flush=True)
if "user_code" not in flow:
    sys.exit(0)
result = app.acquire_token_by_device_flow(flow)
print(json.dumps(result), flush=True)
if "refresh_token" in result:
    print(json.dumps(app.acquire_token_by_refresh_token(result["refresh_token"], scopes=scopes)), flush=True)
