"""The official MCP Python SDK client with its OAuth provider (`OAuthClientProvider`,
unmodified) against an agentid gateway route with `mcpAuthentication`: it knows only the
gateway's URL, discovers everything from the 401, registers dynamically, and its redirect
handler is a browser without JavaScript (a cookie-keeping HTTP client that follows the
authorize URL and submits the sign-in and consent forms). Tokens and the registration are
persisted in STORAGE. After the first call the access token is treated as expired, and the
provider refreshes it silently before the next call; a second run (a new process) uses the
stored tokens without a browser. (This SDK release keeps the authorization server's metadata
in memory only, so a new process can refresh only after a 401 has rediscovered it, which
means a new authorization: the refresh is shown within one process.)

With CLIENT_METADATA_URL the provider is given that URL as its client ID metadata document
(`client_metadata_url`, the SDK's own option): where the authorization server says
`client_id_metadata_document_supported`, the client does not register and the URL is its
client_id (docs/sts.md §16.4); the document itself is served by the Rust test.

Environment: MCP_URL, STORAGE (a JSON file), USERNAME, PASSWORD, CA_FILE (the STS's CA),
TOOL (exposed tool to call), SECOND_RUN=1 (no browser allowed), CLIENT_METADATA_URL (optional).
Prints one JSON object for the Rust test to assert on.
"""

import asyncio
import hashlib
import json
import os
import re
import ssl
import sys
import time
from html import unescape
from urllib.parse import parse_qs, urljoin, urlparse

import httpx2
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:53682/callback"


class FileStorage(TokenStorage):
    def __init__(self, path):
        self.path = path

    def _load(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def _save(self, data):
        with open(self.path, "w") as f:
            json.dump(data, f)

    async def get_tokens(self):
        t = self._load().get("tokens")
        return OAuthToken.model_validate(t) if t else None

    async def set_tokens(self, tokens):
        d = self._load()
        d["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        self._save(d)

    async def get_client_info(self):
        c = self._load().get("client")
        return OAuthClientInformationFull.model_validate(c) if c else None

    async def set_client_info(self, client_info):
        d = self._load()
        d["client"] = client_info.model_dump(mode="json", exclude_none=True)
        self._save(d)


def hidden_fields(html):
    """The form's action and its input fields (name → value), as a browser reads them."""
    action = re.search(r'<form[^>]*action="([^"]*)"', html)
    fields = {}
    for m in re.finditer(r"<input[^>]*>", html):
        tag = m.group(0)
        if 'type="checkbox"' in tag:
            continue  # unchecked: a browser sends nothing
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name:
            fields[unescape(name.group(1))] = unescape(value.group(1)) if value else ""
    return (unescape(action.group(1)) if action else None), fields


class Browser:
    """Follows the authorize URL; signs in; accepts consent; stops at the redirect URI."""

    def __init__(self, verify):
        self.http = httpx2.AsyncClient(verify=verify, follow_redirects=False, timeout=30)
        self.result = None
        self.pages = []

    async def walk(self, url):
        r = await self.http.get(url)
        for _ in range(20):
            if r.status_code in (302, 303):
                url = urljoin(url, r.headers["location"])
                if url.startswith(REDIRECT_URI):
                    q = parse_qs(urlparse(url).query)
                    if "error" in q:
                        raise RuntimeError(f"authorization refused: {q}")
                    self.result = AuthorizationCodeResult(code=q["code"][0], state=q.get("state", [None])[0])
                    return
                r = await self.http.get(url)
                continue
            self.pages.append(r.text)
            action, fields = hidden_fields(r.text)
            if action is None:
                raise RuntimeError(f"no form at {url}: {r.status_code} {r.text[:800]}")
            if "password" in fields:
                fields["username"] = os.environ["USERNAME"]
                fields["password"] = os.environ["PASSWORD"]
            else:
                fields["action"] = "accept"
            origin = f"{urlparse(url).scheme}://{urlparse(url).netloc}"
            url = urljoin(url, action)
            r = await self.http.post(url, data=fields, headers={"origin": origin})
        raise RuntimeError("too many pages")


async def main():
    ctx = ssl.create_default_context(cafile=os.environ["CA_FILE"])
    second = os.environ.get("SECOND_RUN") == "1"
    browser = Browser(ctx)
    used = {"browser": False}

    async def redirect_handler(url):
        if second:
            raise RuntimeError("the second run must not need the browser")
        used["browser"] = True
        used["authorize_url"] = url
        await browser.walk(url)

    async def callback_handler():
        return browser.result

    provider = OAuthClientProvider(
        server_url=os.environ["MCP_URL"],
        client_metadata=OAuthClientMetadata(
            client_name="agentid conformance MCP client",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
        storage=FileStorage(os.environ["STORAGE"]),
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=os.environ.get("CLIENT_METADATA_URL") or None,
    )
    out = {}
    storage = os.environ["STORAGE"]

    def token_hash():
        with open(storage) as f:
            return hashlib.sha256(json.load(f)["tokens"]["access_token"].encode()).hexdigest()

    async with httpx2.AsyncClient(auth=provider, verify=ctx, timeout=30) as http:
        async with streamable_http_client(os.environ["MCP_URL"], http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                out["tools"] = sorted(t.name for t in tools.tools)
                result = await session.call_tool(os.environ["TOOL"], {})
                out["called"] = [c.text for c in result.content if getattr(c, "type", "") == "text"]
                if not second:
                    out["token_before_refresh"] = token_hash()
                    # The access token is now treated as expired: the provider must refresh it.
                    provider.context.token_expiry_time = time.time() - 1
                    result = await session.call_tool(os.environ["TOOL"], {})
                    out["called_after_refresh"] = [c.text for c in result.content if getattr(c, "type", "") == "text"]
    with open(storage) as f:
        stored = json.load(f)
    out["browser"] = used["browser"]
    out["authorize_url"] = used.get("authorize_url")
    out["client_id"] = stored["client"]["client_id"]
    out["token_sha256"] = token_hash()
    out["access_token"] = stored["tokens"]["access_token"]
    out["consent_page"] = next((p for p in browser.pages if "accept" in p), None)
    print(json.dumps(out))


try:
    asyncio.run(main())
except Exception as e:  # the Rust test shows this
    import traceback

    traceback.print_exc()
    sys.exit(1)
