"""The tests' identity provider: oauth2-mock-server (npm) run by tests/accounts/oidc_server.mjs
in a node process, and a login through it the way a browser makes one, without a browser."""

from __future__ import annotations

import selectors
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).with_name("oidc_server.mjs")
PROVIDER_ID = "sso"
PROVIDER_NAME = "Acme SSO"
CLIENT_ID = "chatsite-tests"


@dataclass
class MockIdP:
    url: str
    process: subprocess.Popen

    def add_person(self, key: str, *, sub: str | None = None, email: str | None = None,
                   name: str = "", groups: list[str] | None = None, **claims) -> None:
        """Adds (or replaces) the person the login_hint `key` signs in; read at each token,
        so a second call changes what their next login says."""
        person = {"sub": sub or f"sub-{key}",
                  "email": f"{key}@acme.example" if email is None else email,
                  "name": name or key.title(), "groups": groups or [], **claims}
        httpx.post(f"{self.url}/_people", json={key: person}).raise_for_status()

    def set_default(self, key: str | None) -> None:
        """Who signs in when the login has no hint (a browser clicking the button)."""
        httpx.post(f"{self.url}/_people/default", json={"key": key}).raise_for_status()

    def picture_fetches(self) -> int:
        return httpx.get(f"{self.url}/_picture/fetches").json()["fetches"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def app_settings(self) -> dict:
        """SOCIALACCOUNT_PROVIDERS as chatsite/settings.py makes it from OIDC_* for this IdP."""
        return {
            "openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": [{
                "provider_id": PROVIDER_ID, "name": PROVIDER_NAME, "client_id": CLIENT_ID,
                "secret": "not-a-real-secret",
                "settings": {"server_url": self.url, "oauth_pkce_enabled": True},
            }]},
        }


def start_idp() -> MockIdP:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the SSO tests need Node.js (`make install` needs it too)")
    if not (ROOT / "node_modules" / "oauth2-mock-server").is_dir():
        raise RuntimeError("oauth2-mock-server is missing: run `make install` (npm ci)")
    process = subprocess.Popen([node, str(LAUNCHER)], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=20):
        process.kill()
        raise RuntimeError("the mock identity provider did not start within 20 s")
    url = process.stdout.readline().strip()
    if not url.startswith("http://"):
        process.kill()
        raise RuntimeError(f"the mock identity provider did not start: {url!r}")
    return MockIdP(url=url, process=process)


def sso_login(client, key: str, *, next_url: str | None = None):
    """`key` signs in through the provider with Django test client `client`: the button's POST,
    the provider's authorization endpoint (real HTTP), then our callback. Returns the callback's
    response (a redirect into the site when signed in)."""
    login_url = f"/accounts/oidc/{PROVIDER_ID}/login/?auth_params=" + quote(f"login_hint={key}")
    start = client.post(login_url, {"next": next_url} if next_url else {})
    assert start.status_code == 302, start
    authorize = httpx.get(start["Location"], follow_redirects=False)
    assert authorize.status_code == 302, authorize.text
    callback = urlsplit(authorize.headers["location"])
    return client.get(f"{callback.path}?{callback.query}")
