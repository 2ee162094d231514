"""The feed's HTTP client against raw servers that misbehave as receivers do: kept connections, idle
connections closed by the server, drops without an answer, chunked and read-until-close answers,
garbage, hanging, TLS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.crm import poster as poster_module
from bot.crm.poster import Answer, Poster, PostFailed
from bot.redis_server import free_port

NO_CONTENT = b"HTTP/1.1 204 No Content\r\n\r\n"
Reply = Callable[[int, bytes], Awaitable[bytes | None]]  # (request number, request) -> answer, None: close


@dataclass
class RawServer:
    """A TCP server that reads whole requests and answers what `reply` says, counting connections."""

    reply: Reply
    close_after_answer: bool = False
    port: int = field(default_factory=free_port)
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                answer = await self.reply(len(self.requests), request)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if self.close_after_answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(reply: Reply, tls: ssl.SSLContext | None = None, close_after_answer: bool = False
                  ) -> AsyncIterator[RawServer]:
    raw = RawServer(reply, close_after_answer)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", raw.port, ssl=tls)
    try:
        yield raw
    finally:
        server.close()


async def post(poster: Poster, raw: RawServer, body: bytes = b"{}", scheme: str = "http",
               host: str = "127.0.0.1") -> Answer:
    return await poster.post(f"{scheme}://{host}:{raw.port}/hook?x=1", body, {"webhook-id": "msg_1"}, timeout=5)


def always(answer: bytes) -> Reply:
    async def reply(n: int, request: bytes) -> bytes:
        return answer
    return reply


async def test_posts_share_one_kept_connection_and_send_the_body_and_headers() -> None:
    poster = Poster()
    async with serving(always(NO_CONTENT)) as raw:
        answers = [await post(poster, raw, f'{{"n": {n}}}'.encode()) for n in range(5)]
    assert [a.status for a in answers] == [204] * 5
    assert raw.connections == 1
    first = raw.requests[0]
    assert first.startswith(b"POST /hook?x=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{raw.port}\r\n".encode() in first
    assert b"webhook-id: msg_1\r\n" in first and b"content-length: 8\r\n" in first
    assert first.endswith(b'\r\n\r\n{"n": 0}')
    await poster.aclose()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    async def reply(n: int, request: bytes) -> bytes:
        return b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"
    poster = Poster()
    async with serving(reply) as raw:
        assert (await post(poster, raw)).status == 200
        assert (await post(poster, raw)).status == 200
    assert raw.connections == 2


async def test_a_kept_connection_dropped_under_a_request_is_tried_once_more_on_a_new_one() -> None:
    async def reply(n: int, request: bytes) -> bytes | None:
        return None if n == 2 else NO_CONTENT  # the second request: read, then the connection closed
    poster = Poster()
    async with serving(reply) as raw:
        await post(poster, raw)
        assert (await post(poster, raw)).status == 204
    assert len(raw.requests) == 3 and raw.connections == 2


async def test_a_new_connection_dropped_without_an_answer_fails() -> None:
    async def reply(n: int, request: bytes) -> None:
        return None
    poster = Poster()
    async with serving(reply) as raw:
        with pytest.raises(PostFailed, match="closed the connection without answering"):
            await post(poster, raw)
    assert len(raw.requests) == 1  # a first try on a new connection is not repeated here: the feed retries


async def test_chunked_and_read_until_close_answers_and_retry_after() -> None:
    chunked = b"HTTP/1.1 503 Busy\r\nRetry-After: 7\r\ntransfer-encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n"
    poster = Poster()
    async with serving(always(chunked)) as raw:
        assert await post(poster, raw) == Answer(503, "7")
        assert await post(poster, raw) == Answer(503, "7")
    assert raw.connections == 1  # the chunked body was read to its end; the connection went on

    until_close = b"HTTP/1.0 202 Accepted\r\n\r\nthe body runs until the connection closes"
    async with serving(always(until_close), close_after_answer=True) as raw:
        assert (await post(poster, raw)).status == 202
        assert (await post(poster, raw)).status == 202
    assert raw.connections == 2


async def test_an_answer_that_is_not_http_fails_and_its_connection_is_not_reused() -> None:
    async def reply(n: int, request: bytes) -> bytes:
        return b"SSH-2.0-OpenSSH_9.2\r\n" if n == 1 else NO_CONTENT
    poster = Poster()
    async with serving(reply) as raw:
        with pytest.raises(PostFailed, match="not HTTP"):
            await post(poster, raw)
        assert (await post(poster, raw)).status == 204
    assert raw.connections == 2


async def test_a_request_that_timed_out_never_reads_its_late_answer_as_the_next_ones() -> None:
    async def reply(n: int, request: bytes) -> bytes:
        if n in (1, 2):
            await asyncio.sleep(1.0)
            return b"HTTP/1.1 500 Late\r\ncontent-length: 0\r\n\r\n"
        return NO_CONTENT
    poster = Poster()
    async with serving(reply) as raw:
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # its own deadline
            await poster.post(f"http://127.0.0.1:{raw.port}/hook", b"{}", {}, timeout=0.3)
        assert 0.3 <= time.monotonic() - started < 0.8
        with pytest.raises(TimeoutError):  # the caller's
            async with asyncio.timeout(0.1):
                await poster.post(f"http://127.0.0.1:{raw.port}/hook", b"{}", {}, timeout=5)
        await asyncio.sleep(1.1)
        assert (await post(poster, raw)).status == 204
    assert raw.connections == 3


async def test_a_connection_idle_too_long_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poster_module, "IDLE_SECONDS", 0.3)
    poster = Poster()
    async with serving(always(NO_CONTENT)) as raw:
        await post(poster, raw)
        await post(poster, raw)
        await asyncio.sleep(0.8)
        await post(poster, raw)
    assert raw.connections == 2


async def test_an_unreachable_receiver_and_a_bad_url() -> None:
    poster = Poster()
    with pytest.raises(PostFailed, match="cannot connect"):
        await poster.post(f"http://127.0.0.1:{free_port()}/hook", b"{}", {}, timeout=5)
    for url in ("ftp://example.com/hook", "http:///hook", "http://example.com:99999/hook"):
        with pytest.raises(ValueError):
            await poster.post(url, b"{}", {}, timeout=5)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """(key, certificate) of a receiver named localhost, self-signed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    return key, cert


async def test_https_with_the_receivers_certificate_checked(certificate: tuple[Path, Path],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    key, cert = certificate
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    async with serving(always(NO_CONTENT), tls) as raw:
        with pytest.raises(PostFailed, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted yet
            await post(Poster(), raw, scheme="https", host="localhost")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the receiver's certificate trusted
        assert (await post(Poster(), raw, scheme="https", host="localhost")).status == 204
        with pytest.raises(PostFailed, match=r"IP address mismatch"):  # a certificate for another name
            await post(Poster(), raw, scheme="https", host="127.0.0.1")


async def test_a_connect_that_hangs_fails_at_the_deadline() -> None:
    """A listener whose accept queue is full: the kernel drops further SYNs, so a connect hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the queue (never accepted)
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await Poster().post(f"http://127.0.0.1:{port}/hook", b"{}", {}, timeout=0.5)
        assert time.monotonic() - started < 2
    finally:
        for s in [*fillers, listener]:
            s.close()


async def test_connections_past_the_idle_cap_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poster_module, "IDLE_PER_ORIGIN", 1)

    async def slow(n: int, request: bytes) -> bytes:
        await asyncio.sleep(0.1)
        return NO_CONTENT
    poster = Poster()
    async with serving(slow) as raw:
        await asyncio.gather(post(poster, raw), post(poster, raw))  # two connections at once; one is kept
        await asyncio.gather(post(poster, raw), post(poster, raw))
    assert raw.connections == 3


async def test_credentials_in_the_url_go_as_basic_authorization() -> None:
    poster = Poster()
    async with serving(always(NO_CONTENT)) as raw:
        await poster.post(f"http://crm%40user:p%3Ass@127.0.0.1:{raw.port}/hook", b"{}", {}, timeout=5)
    assert f"authorization: Basic {base64.b64encode(b'crm@user:p:ss').decode()}\r\n".encode() in raw.requests[0]
    assert f"host: 127.0.0.1:{raw.port}\r\n".encode() in raw.requests[0]
