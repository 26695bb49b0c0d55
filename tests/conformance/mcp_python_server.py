"""An MCP server built with the official MCP Python SDK (unmodified), serving streamable HTTP at
http://127.0.0.1:PORT/mcp — one of the gateway's targets in crates/gateway/tests/conformance.rs.

Usage: mcp_python_server.py PORT
"""

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("python-tools", version="1.0")


@server.tool()
def py_echo(text: str) -> str:
    """Echo the text back."""
    return f"python says: {text}"


@server.tool()
def delete_everything() -> str:
    """A tool the gateway's policy must never let through."""
    return "everything deleted"


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), streamable_http_path="/mcp")
