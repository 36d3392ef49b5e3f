"""A raw HTTP/1.1 keep-alive server for the connection-level tests: it counts the connections
it accepts and sees closed, records the request heads it reads, can answer with bytes a test
wrote by hand, and can serve over TLS with a certificate made on the spot."""

from __future__ import annotations

import asyncio
import datetime
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

# In a canned response: close the connection here.
CLOSE = None


class CountingServer:
    """HTTP/1.1 with keep-alive. GET /ok answers at once; /slow sends 3 chunks 50 ms apart;
    /bye answers, then closes the connection 50 ms later, as a server's idle timeout would;
    /once answers, then closes its connection without answering the next request on it (what
    a kept connection the server closed looks like to a client that wrote first); /never sends
    nothing. A path in `canned` is answered with its byte strings as they are, written one by
    one `pause` seconds apart (`CLOSE` among them closes the connection there). With
    `hang_up` set, every request is closed without an answer."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.accepted = 0
        self.closed = 0
        self.writers: set[asyncio.StreamWriter] = set()
        self.ssl_context = ssl_context
        self.heads: list[bytes] = []
        self.canned: dict[bytes, list[bytes | None]] = {}
        self.pause = 0.005
        self.hang_up = False

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0,
                                                 ssl=self.ssl_context)
        port = self.server.sockets[0].getsockname()[1]
        if self.ssl_context:
            return f"https://localhost:{port}"
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.add(writer)
        hang_up_next = False
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":", 1)[1]))
                if hang_up_next or self.hang_up:
                    break
                path = head.split(b" ", 2)[1]
                if path in self.canned:
                    if not await self._canned(writer, self.canned[path]):
                        break
                    continue
                if path == b"/never":
                    await reader.read()
                    break
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                for _ in range(3 if path == b"/slow" else 1):
                    writer.write(b"5\r\nhello\r\n")
                    await writer.drain()
                    if path == b"/slow":
                        await asyncio.sleep(0.05)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
                if path == b"/bye":
                    await asyncio.sleep(0.05)
                    break
                hang_up_next = path == b"/once"
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError):
                pass
            self.writers.discard(writer)
            self.closed += 1

    async def _canned(self, writer: asyncio.StreamWriter, parts: list[bytes | None]) -> bool:
        """Write `parts`; False if one of them said to close."""
        for i, part in enumerate(parts):
            if part is CLOSE:
                return False
            if i:
                await asyncio.sleep(self.pause)
            writer.write(part)
            await writer.drain()
        return True

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


def self_signed(tmp_path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context that trusts only this server's certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


async def fetch(client, url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
                body: bytes | None = None) -> tuple[int, bytes]:
    """(status, whole body) of one request through a provider's HTTP client, closed after."""
    response = await client.send(method, url, headers=headers or {}, body=body)
    try:
        return response.status, await response.read(1 << 30)
    finally:
        await response.aclose()


async def settle(predicate, timeout: float = 2.0) -> None:
    """Wait until `predicate()` holds (what a server saw arrives a loop turn or two later)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
