#!/usr/bin/env python3
"""An agent acting on behalf of a user, with unmodified MSAL Python against `agentid up`.

    REQUESTS_CA_BUNDLE=.agentid/ca.pem python examples/msal_agent_obo.py

1. Alice signs in (resource-owner password grant, for scripts) and gets Tc for the blueprint API.
2. The blueprint exchanges its secret for T1 (fmi_path = the agent).
3. The agent, with T1 as its client assertion, gets an on-behalf-of token for Microsoft Graph.
"""

import base64
import json
import os
from urllib.parse import urlparse

import msal
import requests

AUTHORITY = os.environ.get("AGENTID_AUTHORITY", "https://127.0.0.1:8443/contoso.test")
BLUEPRINT = "85075aa5-1d73-42de-812a-95348218e4b2"
BLUEPRINT_SECRET = "demo-blueprint-secret-change-me"
AGENT = "f3897825-fd03-45f5-90eb-fdbf26135650"
GRAPH_CLI = "14d82eec-204b-4c2f-b7e8-296a70dab67e"


class KeepPortSession(requests.Session):
    """MSAL's user-realm lookup before a password grant drops the authority's port (MSAL
    issue #259); this puts it back. Not needed for any other flow, nor on port 443."""

    def request(self, method, url, *args, **kwargs):
        a, u = urlparse(AUTHORITY), urlparse(url)
        if u.hostname == a.hostname and u.port is None and u.path.startswith("/common/userrealm/"):
            url = u._replace(netloc=a.netloc).geturl()
        return super().request(method, url, *args, **kwargs)


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def check(result):
    if "access_token" not in result:
        raise SystemExit("%s: %s" % (result.get("error"), result.get("error_description")))
    return result["access_token"]


user_app = msal.PublicClientApplication(GRAPH_CLI, authority=AUTHORITY, instance_discovery=False, http_client=KeepPortSession())
tc = check(user_app.acquire_token_by_username_password(
    "alice@contoso.test", "correct-horse-battery", scopes=["api://%s/access_as_user" % BLUEPRINT]))

blueprint = msal.ConfidentialClientApplication(BLUEPRINT, client_credential=BLUEPRINT_SECRET, authority=AUTHORITY, instance_discovery=False)
agent = msal.ConfidentialClientApplication(AGENT, authority=AUTHORITY, instance_discovery=False, client_credential={
    "client_assertion": lambda: check(blueprint.acquire_token_for_client(
        ["api://AzureADTokenExchange/.default"], fmi_path=AGENT)),
})
obo = check(agent.acquire_token_on_behalf_of(user_assertion=tc, scopes=["https://graph.microsoft.com/.default"]))

c = claims(obo)
print(json.dumps({k: c[k] for k in ("aud", "appid", "upn", "scp", "idtyp", "xms_act_fct", "xms_sub_fct", "xms_par_app_azp")}, indent=2))
print("\nagentid token decode explains it:  agentid token decode", obo[:24] + "…")
