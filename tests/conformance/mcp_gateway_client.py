"""The official MCP Python SDK client (unmodified) through agentid's gateway: initialize,
list_tools, an allowed call_tool and a denied one.

Environment: MCP_URL (the gateway's /mcp), TOKEN (the agent's bearer), ALLOWED (exposed tool name
to call, with ALLOWED_ARGS as JSON), DENIED (exposed tool name the policy refuses).
Prints one JSON object for the Rust test to assert on.
"""

import asyncio
import json
import os

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def main():
    headers = {"Authorization": f"Bearer {os.environ['TOKEN']}"}
    out = {}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        async with streamable_http_client(os.environ["MCP_URL"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                out["server"] = init.server_info.name if hasattr(init, "server_info") else init.serverInfo.name
                tools = await session.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                result = await session.call_tool(os.environ["ALLOWED"], json.loads(os.environ.get("ALLOWED_ARGS", "{}")))
                out["allowed"] = [c.text for c in result.content if getattr(c, "type", "") == "text"]
                try:
                    await session.call_tool(os.environ["DENIED"], {})
                    out["denied"] = "no error"
                except MCPError as e:
                    out["denied"] = {"code": e.code, "message": e.message}
    print(json.dumps(out))


asyncio.run(main())
