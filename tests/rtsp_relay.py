"""A small RTSP server for the camera tests: ffmpeg publishes to it, the camera worker plays from it.

Debian's ffmpeg speaks RTSP both ways but serves no stream to a player (its ``-rtsp_flags
listen`` receives one), so this relay stands in for an IP camera or an RTSP server such as
MediaMTX: a publisher (``ffmpeg -re -i clip.mp4 -c copy -f rtsp -rtsp_transport tcp
rtsp://127.0.0.1:PORT/cam``) ANNOUNCEs its SDP and RECORDs RTP interleaved on its TCP connection;
each player DESCRIBEs, SETUPs (RTP over TCP, interleaved), PLAYs and is sent the publisher's RTP
packets as they come. A DESCRIBE with no publisher is 404, and when the publisher goes (killed,
or its clip ended) every player's connection is closed, as a camera that reboots does.
Only 127.0.0.1; no authentication (the credentials in a test's URL are for the redaction checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field

__all__ = ["RtspRelay"]


@dataclass
class _Stream:
    sdp: bytes
    players: set[asyncio.StreamWriter] = field(default_factory=set)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    """One RTSP request (skipping interleaved ``$`` frames a player sends, e.g. RTCP reports)."""
    while True:
        first = await reader.readexactly(1)
        if first == b"$":
            header = await reader.readexactly(3)
            await reader.readexactly(int.from_bytes(header[1:3], "big"))
            continue
        head = first + await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return lines[0], headers, body


def _reply(writer: asyncio.StreamWriter, cseq: str, status: str = "200 OK", **headers: str) -> None:
    body = headers.pop("body", "").encode("latin-1")
    lines = [f"RTSP/1.0 {status}", f"CSeq: {cseq}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)


class RtspRelay:
    """The relay on 127.0.0.1:``port`` in a thread with its own event loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: dict[str, _Stream] = {}
        self.plays = 0
        self.first_packet: dict[str, float] = {}
        """When (``time.monotonic``) each path's latest publisher's first packet was forwarded."""
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="rtsp-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self._loop
        ).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for stream in self.streams.values():
                for player in stream.players:
                    player.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        path = ""
        publishing = False
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                line, headers, body = request
                method, url = line.split(" ")[:2]
                path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("/", 1)[0].split("?")[0]
                cseq = headers.get("cseq", "0")
                if method == "OPTIONS":
                    _reply(writer, cseq, Public="OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN")
                elif method == "ANNOUNCE":
                    self.streams[path] = _Stream(body)
                    publishing = True
                    _reply(writer, cseq)
                elif method == "DESCRIBE":
                    stream = self.streams.get(path)
                    if stream is None:
                        _reply(writer, cseq, "404 Not Found")
                    else:
                        _reply(
                            writer,
                            cseq,
                            Content_Type="application/sdp",
                            Content_Base=f"rtsp://127.0.0.1:{self.port}{path}/",
                            body=stream.sdp.decode("latin-1"),
                        )
                elif method == "SETUP":
                    transport = headers.get("transport", "")
                    if "interleaved" not in transport:
                        _reply(writer, cseq, "461 Unsupported Transport")
                        continue
                    _reply(writer, cseq, Transport=transport, Session="12345678;timeout=60")
                elif method == "RECORD":
                    _reply(writer, cseq, Session="12345678")
                    await self._publish(path, reader)
                    return
                elif method == "PLAY":
                    stream = self.streams.get(path)
                    if stream is None:
                        _reply(writer, cseq, "404 Not Found")
                        continue
                    _reply(writer, cseq, Session="12345678", Range="npt=0.000-")
                    stream.players.add(writer)
                    self.plays += 1
                elif method in ("GET_PARAMETER", "SET_PARAMETER"):
                    _reply(writer, cseq, Session="12345678")
                elif method == "TEARDOWN":
                    _reply(writer, cseq)
                    return
                else:
                    _reply(writer, cseq, "501 Not Implemented")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            return
        finally:
            if publishing:
                stream = self.streams.pop(path, None)
                for player in stream.players if stream else ():
                    player.close()  # the camera went away: so do its viewers' connections
            else:
                for stream in self.streams.values():
                    stream.players.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _publish(self, path: str, reader: asyncio.StreamReader) -> None:
        """Copy every interleaved frame the publisher sends to the stream's players."""
        self.first_packet.pop(path, None)
        while True:
            first = await reader.readexactly(1)
            if first != b"$":  # an RTSP request inside the stream (TEARDOWN, keep-alive): end or skip
                head = first + await reader.readuntil(b"\r\n\r\n")
                if head.startswith(b"TEARDOWN"):
                    return
                continue
            header = await reader.readexactly(3)
            packet = b"$" + header + await reader.readexactly(int.from_bytes(header[1:3], "big"))
            stream = self.streams.get(path)
            if stream is None:
                return
            self.first_packet.setdefault(path, time.monotonic())
            for player in list(stream.players):
                if player.is_closing():
                    stream.players.discard(player)
                    continue
                if player.transport.get_write_buffer_size() < 4 << 20:  # a stalled player loses frames
                    player.write(packet)
