#!/usr/bin/env python3
"""Drive unmodified MSAL Python against the agentid STS and print the results.

Run by the Rust conformance test with the python of the venv made by
scripts/conformance-venv.sh. It reads its configuration from environment
variables (see tests/conformance/README.md), runs the flows named in FLOWS
(comma-separated; flows they depend on are run first and reported too) and
prints ONE JSON object on stdout:

    {"<flow name>": <the dict MSAL returned, success or error>, ...}

Nothing is dropped from MSAL's dicts (access_token, refresh_token, id_token,
id_token_claims, error, error_description, error_codes, ...). Keys starting
with "_" are added by this script, never by MSAL (MSAL strips its own "_" keys
before returning).

Exit status: 0 when every flow ran to completion, even if the STS answered
with an OAuth error (the Rust side asserts on the dicts); non-zero on any
Python exception (traceback on stderr, partial results still on stdout).

Notes on MSAL 1.39.0 behaviour that matter for the STS (read from its source):

* ClientApplication(authority=AUTHORITY, instance_discovery=False) makes no
  instance-discovery call; at construction it GETs
  "{AUTHORITY}/v2.0/.well-known/openid-configuration" (port kept) and needs
  "authorization_endpoint" and "token_endpoint" in it; the tenant MSAL uses
  afterwards is the first path segment of token_endpoint.
* acquire_token_by_username_password() first GETs
  "https://{authority host}/common/userrealm/{username}?api-version=1.0"
  (msal/authority.py, Authority.user_realm_discovery) and that URL is built
  from the host name only: the authority's port is DROPPED (known MSAL issue
  AzureAD/microsoft-authentication-library-for-python#259). A 404 makes MSAL
  skip the call for that host from then on and go on with ROPC; any JSON whose
  "account_type" is not "Federated" also goes on with ROPC
  (grant_type=password). Any other HTTP error, or a refused connection, raises.
  USERREALM_MODE picks what this script does about the lost port:
    port_fix (default): our http_client puts the AUTHORITY's port back into
                        that one URL, so the STS's own userrealm endpoint is
                        exercised;
    skip:               pre-mark the host as having no user realm discovery
                        (MSAL's own 404 memo), so no userrealm request is made;
    raw:                leave MSAL alone (it connects to port 443).
  Passing http_client= is a documented MSAL constructor parameter; the
  library itself is not modified.
"""

import json
import logging
import os
import sys
import traceback
from urllib.parse import urlparse

import msal
import msal.authority
import requests

TOKEN_EXCHANGE_SCOPE = "api://AzureADTokenExchange/.default"
CLEARTEXT_SECRETS = ("password", "client_secret")


def env(name, default=None):
    value = os.environ.get(name)
    if value is None or value == "":
        if default is not None:
            return default
        raise KeyError("environment variable %s is required for the requested flows" % name)
    return value


class FlowError(Exception):
    """A prerequisite of a flow failed; recorded as an error dict, not a crash."""

    def __init__(self, error, description, **extra):
        super().__init__(description)
        self.result = {"error": error, "error_description": description}
        self.result.update(extra)


class RecordingSession(requests.Session):
    """requests.Session given to MSAL as http_client=.

    * Restores the authority's port in the user realm discovery URL
      (USERREALM_MODE=port_fix), see the module docstring.
    * Records every request (method, url, form fields) into the log of the
      flow that is running when RECORD_HTTP=1.
    * Applies a default timeout (MSAL only does so for sessions it builds).
    """

    def __init__(self, runner, authority, userrealm_mode, timeout):
        super().__init__()
        self._runner = runner
        parsed = urlparse(authority)
        self._host = parsed.hostname
        self._netloc = parsed.netloc
        self._port = parsed.port
        self._userrealm_mode = userrealm_mode
        self._timeout = timeout

    def request(self, method, url, *args, **kwargs):
        parsed = urlparse(url)
        if (self._userrealm_mode == "port_fix"
                and self._port not in (None, 443)
                and parsed.hostname == self._host
                and parsed.port is None
                and parsed.path.startswith("/common/userrealm/")):
            url = parsed._replace(netloc=self._netloc).geturl()
        kwargs.setdefault("timeout", self._timeout)
        self._runner.record_http(method, url, kwargs)
        return super().request(method, url, *args, **kwargs)


class Runner:
    def __init__(self):
        self.authority = env("AUTHORITY").rstrip("/")
        self.userrealm_mode = os.environ.get("USERREALM_MODE", "port_fix") or "port_fix"
        if self.userrealm_mode not in ("port_fix", "skip", "raw"):
            raise ValueError("USERREALM_MODE must be port_fix, skip or raw")
        self.record = os.environ.get("RECORD_HTTP", "") not in ("", "0", "false")
        self.timeout = float(os.environ.get("HTTP_TIMEOUT", "30"))
        self.graph_scope = os.environ.get("GRAPH_SCOPE") or "https://graph.microsoft.com/.default"
        self.results = {}
        self._apps = {}
        self._stack = []  # names of the flows running, innermost last
        self._http = {}
        self._assertion_calls = {}
        if self.userrealm_mode == "skip":
            host = urlparse(self.authority).hostname
            msal.authority.Authority._domains_without_user_realm_discovery.add(host)
        self.flows = {
            "secret_app": self.flow_secret_app,
            "cert_app": self.flow_cert_app,
            "fic_app": self.flow_fic_app,
            "fic_t1": self.flow_fic_t1,
            "t1": self.flow_t1,
            "t2": self.flow_t2,
            "user_password": self.flow_user_password,
            "obo": self.flow_obo,
            "refresh": self.flow_refresh,
            "public_refresh": self.flow_public_refresh,
            "errors_wrong_secret": self.flow_errors_wrong_secret,
            # Extra flows, run only when listed in FLOWS:
            "t2_exchange": self.flow_t2_exchange,
            "user_fic": self.flow_user_fic,
        }

    # ----- plumbing -------------------------------------------------------

    @property
    def bp_api_scope(self):
        return os.environ.get("BP_API_SCOPE") or "api://%s/access_as_user" % env("BP_ID")

    def record_http(self, method, url, kwargs):
        if not self.record or not self._stack:
            return
        form = kwargs.get("data")
        if isinstance(form, dict):
            form = {
                k: ("***" if k in CLEARTEXT_SECRETS else
                    v.decode() if isinstance(v, bytes) else v)
                for k, v in form.items()
            }
        entry = {"method": method, "url": url}
        if kwargs.get("params"):
            entry["params"] = kwargs["params"]
        if form is not None:
            entry["form"] = form
        self._http.setdefault(self._stack[-1], []).append(entry)

    def http_client(self):
        return RecordingSession(self, self.authority, self.userrealm_mode, self.timeout)

    def confidential(self, key, client_id, credential):
        if key not in self._apps:
            self._apps[key] = msal.ConfidentialClientApplication(
                client_id,
                client_credential=credential,
                authority=self.authority,
                instance_discovery=False,
                http_client=self.http_client(),
            )
        return self._apps[key]

    def public(self):
        if "public" not in self._apps:
            self._apps["public"] = msal.PublicClientApplication(
                env("PUBLIC_CLIENT_ID"),
                authority=self.authority,
                instance_discovery=False,
                http_client=self.http_client(),
            )
        return self._apps["public"]

    def callable_assertion(self, name, produce):
        """Wrap produce() as a client-assertion callable for MSAL.

        MSAL >= 1.37 passes a context dict ({"client_id", "token_endpoint"
        and, when the request has one, "fmi_path"}) to a callable that declares
        a required positional parameter, and calls older-style callables with
        no argument. Older MSAL always calls with no argument. Both are handled;
        what MSAL passed is reported under "_client_assertion_calls".
        """
        calls = self._assertion_calls.setdefault(name, [])

        def note(context):
            calls.append((self._stack[-1] if self._stack else None, context))

        if hasattr(msal.oauth2cli.oauth2.BaseClient, "_invoke_assertion_callable"):
            def assertion(context):
                note(context)
                return produce()
        else:
            def assertion():
                note(None)
                return produce()
        return assertion

    def run(self, name):
        if name in self.results:
            return self.results[name]
        if name not in self.flows:
            raise ValueError("unknown flow %r; known: %s" % (name, ", ".join(self.flows)))
        if name in self._stack:
            raise RuntimeError("flow dependency cycle at %s" % name)
        self._stack.append(name)
        try:
            result = self.flows[name]()
        except FlowError as e:
            result = e.result
        finally:
            self._stack.pop()
        if not isinstance(result, dict):
            raise TypeError("flow %s returned %r, not a dict" % (name, result))
        if self.record:
            result["_http"] = self._http.pop(name, [])
        self.results[name] = result
        return result

    def need_token(self, name, key="access_token"):
        result = self.run(name)
        if not result.get(key):
            raise FlowError(
                "dependency_failed",
                "flow %s gave no %s: %s %s" % (
                    name, key, result.get("error"), result.get("error_description")),
                _dependency=name)
        return result[key]

    # ----- apps -----------------------------------------------------------

    def bp_app(self):
        return self.confidential("bp", env("BP_ID"), env("BP_SECRET"))

    def sa_token_assertion(self):
        path = env("SA_TOKEN_FILE")

        def read():
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        return self.callable_assertion("fic", read)

    def fic_app(self):
        if "fic" not in self._apps:
            self.confidential("fic", env("FIC_BP_ID"), {"client_assertion": self.sa_token_assertion()})
        return self._apps["fic"]

    def t1_token(self):
        """T1: the blueprint's token for AzureADTokenExchange with fmi_path=AGENT_ID.

        Served from the blueprint app's MSAL cache when already obtained.
        """
        result = self.bp_app().acquire_token_for_client(
            [TOKEN_EXCHANGE_SCOPE], fmi_path=env("AGENT_ID"))
        if not result.get("access_token"):
            raise FlowError(
                "client_assertion_unavailable",
                "blueprint could not get T1 for agent %s: %s %s" % (
                    env("AGENT_ID"), result.get("error"), result.get("error_description")),
                _t1_result=result)
        return result["access_token"]

    def agent_app(self):
        if "agent" not in self._apps:
            self.confidential("agent", env("AGENT_ID"), {
                "client_assertion": self.callable_assertion("agent", self.t1_token)})
        return self._apps["agent"]

    def with_assertion_calls(self, app_key, result):
        """Add what MSAL passed to the app's assertion callable during this flow
        (a list with one entry per call: the context dict, or null when MSAL
        called it without argument). Empty when MSAL served the token from its
        cache."""
        flow = self._stack[-1] if self._stack else None
        result["_client_assertion_calls"] = [
            context for (f, context) in self._assertion_calls.get(app_key, []) if f == flow]
        return result

    def refresh_token_of(self, app, result):
        """Refresh token from a result dict, else from the app's token cache."""
        if result.get("refresh_token"):
            return result["refresh_token"], False
        entries = list(app.token_cache.search(
            msal.TokenCache.CredentialType.REFRESH_TOKEN,
            query={"client_id": app.client_id}))
        if entries:
            return entries[-1]["secret"], True
        return None, False

    # ----- flows ----------------------------------------------------------

    def flow_secret_app(self):
        return self.bp_app().acquire_token_for_client([self.graph_scope])

    def flow_cert_app(self):
        with open(env("CERT_KEY_PEM_FILE"), encoding="utf-8") as f:
            pem = f.read()
        app = self.confidential("cert", env("CERT_APP_ID"), {
            "private_key": pem,
            "thumbprint": env("CERT_THUMBPRINT"),
        })
        return app.acquire_token_for_client([self.graph_scope])

    def flow_fic_app(self):
        result = self.fic_app().acquire_token_for_client([self.graph_scope])
        return self.with_assertion_calls("fic", result)

    def flow_fic_t1(self):
        agent = os.environ.get("FIC_AGENT_ID") or env("AGENT_ID")
        result = self.fic_app().acquire_token_for_client(
            [TOKEN_EXCHANGE_SCOPE], fmi_path=agent)
        return self.with_assertion_calls("fic", result)

    def flow_t1(self):
        # An app of its own, so that this result always comes from the STS,
        # never from the MSAL cache filled by the agent's assertion callable.
        app = self.confidential("bp_t1", env("BP_ID"), env("BP_SECRET"))
        return app.acquire_token_for_client(
            [TOKEN_EXCHANGE_SCOPE], fmi_path=env("AGENT_ID"))

    def flow_t2(self):
        result = self.agent_app().acquire_token_for_client([self.graph_scope])
        return self.with_assertion_calls("agent", result)

    def flow_user_password(self):
        return self.public().acquire_token_by_username_password(
            env("USER_UPN"), env("USER_PASSWORD"), scopes=[self.bp_api_scope])

    def flow_obo(self):
        tc = self.need_token("user_password")
        result = self.agent_app().acquire_token_on_behalf_of(
            user_assertion=tc, scopes=[self.graph_scope])
        return self.with_assertion_calls("agent", result)

    def flow_refresh(self):
        obo = self.run("obo")
        app = self.agent_app()
        rt, from_cache = self.refresh_token_of(app, obo)
        if not rt:
            raise FlowError(
                "no_refresh_token",
                "no refresh token in the obo result nor in the agent app's cache "
                "(obo: %s %s)" % (obo.get("error"), obo.get("error_description")),
                _refresh_token_from_cache=False)
        result = app.acquire_token_by_refresh_token(rt, scopes=[self.graph_scope])
        result["_refresh_token_from_cache"] = from_cache
        return self.with_assertion_calls("agent", result)

    def flow_public_refresh(self):
        up = self.run("user_password")
        app = self.public()
        rt, from_cache = self.refresh_token_of(app, up)
        if not rt:
            raise FlowError(
                "no_refresh_token",
                "no refresh token in the user_password result nor in the public "
                "app's cache (user_password: %s %s)" % (
                    up.get("error"), up.get("error_description")),
                _refresh_token_from_cache=False)
        result = app.acquire_token_by_refresh_token(rt, scopes=[self.bp_api_scope])
        result["_refresh_token_from_cache"] = from_cache
        return result

    def flow_errors_wrong_secret(self):
        wrong = os.environ.get("WRONG_SECRET") or ("wrong-" + env("BP_SECRET"))
        app = self.confidential("bp_wrong", env("BP_ID"), wrong)
        return app.acquire_token_for_client([self.graph_scope])

    def flow_t2_exchange(self):
        """Agent identity's own token for AzureADTokenExchange (agent user leg 2)."""
        result = self.agent_app().acquire_token_for_client([TOKEN_EXCHANGE_SCOPE])
        return self.with_assertion_calls("agent", result)

    def flow_user_fic(self):
        """Agent user flow: grant_type=user_fic with the t2_exchange token.

        Needs AGENT_USER_UPN (or AGENT_USER_OID).
        """
        t2x = self.need_token("t2_exchange")
        upn = os.environ.get("AGENT_USER_UPN") or None
        oid = None if upn else env("AGENT_USER_OID")
        result = self.agent_app().acquire_token_by_user_federated_identity_credential(
            [self.graph_scope], t2x, username=upn, user_object_id=oid)
        return self.with_assertion_calls("agent", result)


def _json_default(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return repr(value)


def main():
    level = os.environ.get("MSAL_LOG_LEVEL")
    if level:
        logging.basicConfig(stream=sys.stderr, level=level.upper())
    flows = [f.strip() for f in os.environ.get("FLOWS", "").split(",") if f.strip()]
    runner = None
    status = 0
    try:
        if flows:
            runner = Runner()
            unknown = [name for name in flows if name not in runner.flows]
            if unknown:
                raise ValueError("unknown flow(s) %s in FLOWS; known: %s" % (
                    ", ".join(unknown), ", ".join(runner.flows)))
            for name in flows:
                runner.run(name)
    except Exception:  # noqa: BLE001 - reported, then a non-zero exit
        traceback.print_exc(file=sys.stderr)
        status = 1
    results = runner.results if runner else {}
    sys.stdout.write(json.dumps(results, default=_json_default, sort_keys=True) + "\n")
    sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
