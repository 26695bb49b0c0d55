#!/usr/bin/env python3
"""Get tokens through agentid's sidecar with Microsoft's unmodified Python client
(microsoft-agents-authentication-entra-auth-sidecar, pinned in requirements.txt).

Run by crates/sidecar/tests/python_client.rs with the conformance venv's python. The
client reads SIDECAR_URL (it refuses hosts that are not loopback or private). Other
environment: SERVICE (configured API name of an app-token API), AGENT_ID, AGENT_USER_UPN,
AGENT_USER_OID, TENANT_ID, SCOPE, FORBIDDEN_AGENT_ID.

Prints one JSON object: for each case either {"scheme", "token"} or
{"error": <exception class>, "message": <str>}. Exit status is non-zero only on an
unexpected exception (traceback on stderr).
"""

import asyncio
import json
import os

from microsoft_agents.authentication.entra_auth_sidecar import (
    SidecarAuth,
    SidecarHttpClient,
    SidecarRequestOptions,
)


async def case(coro):
    try:
        r = await coro
        if isinstance(r, str):
            return {"scheme": "Bearer", "token": r}
        if isinstance(r, tuple):
            return {"scheme": "Bearer", "token": r[0]}
        return {"scheme": r.scheme, "token": r.token}
    except Exception as e:  # the client's own exception types are the point here
        return {"error": type(e).__name__, "message": str(e)}


async def main():
    env = os.environ
    service = env["SERVICE"]
    agent = env["AGENT_ID"]
    tenant = env["TENANT_ID"]
    client = SidecarHttpClient(retry_count=0)
    out = {"healthy": await client.is_healthy()}
    out["blueprint"] = await case(
        client.get_authorization_header_unauthenticated(service)
    )
    out["autonomous"] = await case(
        client.get_authorization_header_unauthenticated(
            service, SidecarRequestOptions(agent_identity=agent)
        )
    )
    out["autonomous_with_overrides"] = await case(
        client.get_authorization_header_unauthenticated(
            service,
            SidecarRequestOptions(
                agent_identity=agent,
                request_app_token=True,
                scopes=[env["SCOPE"]],
                tenant=tenant,
                force_refresh=True,
            ),
        )
    )
    out["agent_user_upn"] = await case(
        client.get_authorization_header_unauthenticated(
            service,
            SidecarRequestOptions(agent_identity=agent, agent_username=env["AGENT_USER_UPN"]),
        )
    )
    out["agent_user_oid"] = await case(
        client.get_authorization_header_unauthenticated(
            service,
            SidecarRequestOptions(agent_identity=agent, agent_user_id=env["AGENT_USER_OID"]),
        )
    )
    out["forbidden_agent"] = await case(
        client.get_authorization_header_unauthenticated(
            service, SidecarRequestOptions(agent_identity=env["FORBIDDEN_AGENT_ID"])
        )
    )
    out["unknown_api"] = await case(
        client.get_authorization_header_unauthenticated("no-such-api")
    )
    await client.aclose()

    # The SDK's token provider, as an agent built on Microsoft 365 Agents SDK uses it.
    auth = SidecarAuth({"SERVICE_NAME": service, "SCOPES": [env["SCOPE"]], "RETRY_COUNT": 0})
    out["provider_healthy"] = await auth.is_healthy()
    out["provider_instance"] = await case(auth.get_agentic_instance_token(tenant, agent))
    out["provider_user"] = await case(
        auth.get_agentic_user_token(tenant, agent, env["AGENT_USER_OID"], [env["SCOPE"]])
    )
    await auth.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
