"""Daphne in a child process, for the tests that need a real server process."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphne(port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
         "chatsite.asgi:application"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne on {port} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"daphne on {port} did not start")


def server_env(*, fake_base_url: str, tmp_path: Path, **env_extra: str) -> dict[str, str]:
    """The environment of serve()'s Daphne: start another process with it to share its
    database (a restart)."""
    return {**os.environ, "DATA_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "REDIS_URL": "",
            "LLM_BASE_URL": fake_base_url, "LLM_MODEL": "fake-model",
            "GENERATE_TITLES": "false", "DJANGO_SETTINGS_MODULE": "chatsite.settings",
            **env_extra}


# A migrated database with one signed-in user, made once per test run and copied for each
# serve(): migrating (allauth's apps included) and hashing the user's password cost a child
# process about 7 s, paid by every test that starts a server.
_template: tuple[Path, str] | None = None


def _migrated_template() -> tuple[Path, str]:
    global _template
    if _template is None:
        data = Path(tempfile.mkdtemp(prefix="chatsite-test-db-"))
        atexit.register(shutil.rmtree, data, ignore_errors=True)
        env = server_env(fake_base_url="http://127.0.0.1:9/v1", tmp_path=data)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env,
                       check=True, timeout=120)
        shutil.copyfile(data / "db.sqlite3", data / "empty.sqlite3")
        setup = subprocess.run([sys.executable, "-m", "bench._setup", "1"], cwd=ROOT, env=env,
                               check=True, timeout=120, capture_output=True, text=True)
        _template = data, json.loads(setup.stdout.strip().splitlines()[-1])["sessions"][0]
    return _template


def migrated_database(path: Path) -> None:
    """A migrated SQLite database with no accounts at `path` (a copy of the template's)."""
    shutil.copyfile(_migrated_template()[0] / "empty.sqlite3", path)


@contextlib.contextmanager
def serve(*, fake_base_url: str, tmp_path: Path,
          **env_extra: str) -> Iterator[tuple[int, str, subprocess.Popen, Path]]:
    """Daphne on its own SQLite database in `tmp_path`, with one user logged in: yields the
    port, that user's session cookie value, the process and the database file."""
    env = server_env(fake_base_url=fake_base_url, tmp_path=tmp_path, **env_extra)
    template, session = _migrated_template()
    # The database and the secret key that signed the session, both the template's.
    for name in ("db.sqlite3", "secret_key"):
        shutil.copyfile(template / name, tmp_path / name)
    port = free_port()
    log = tmp_path / "daphne.log"
    proc = start_daphne(port, env, log)
    try:
        wait_listening(port, proc)
        yield port, session, proc, tmp_path / "db.sqlite3"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        print(log.read_text(errors="replace")[-5000:])
