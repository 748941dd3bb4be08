"""A local SMTP server that keeps what it is sent, for the alert e-mail tests (aiosmtpd is not
installed here and the standard library's ``smtpd`` is deprecated): EHLO/HELO, MAIL, RCPT, DATA,
RSET, NOOP, QUIT over plain TCP on 127.0.0.1, enough for ``smtplib``."""

from __future__ import annotations

import asyncio
import email
import threading
from email.message import Message

__all__ = ["SmtpSink"]


class SmtpSink:
    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[list[str], Message]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sink", daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._client, "127.0.0.1", self.port), self._loop
        ).result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def say(line: str) -> None:
            writer.write(line.encode("ascii") + b"\r\n")

        say("220 sink ESMTP")
        recipients: list[str] = []
        try:
            while True:
                line = (await reader.readline()).decode("ascii", "replace").rstrip("\r\n")
                verb = line[:4].upper()
                if not line and reader.at_eof():
                    return
                if verb in ("EHLO", "HELO"):
                    say("250-sink" if verb == "EHLO" else "250 sink")
                    if verb == "EHLO":
                        say("250 8BITMIME")
                elif verb == "MAIL":
                    recipients = []
                    say("250 OK")
                elif verb == "RCPT":
                    recipients.append(line.split(":", 1)[1].strip().strip("<>"))
                    say("250 OK")
                elif verb == "DATA":
                    say("354 end with .")
                    data = bytearray()
                    while True:
                        chunk = await reader.readline()
                        if chunk in (b".\r\n", b".\n"):
                            break
                        data += chunk[1:] if chunk.startswith(b"..") else chunk
                    self.messages.append((recipients, email.message_from_bytes(bytes(data))))
                    say("250 OK queued")
                elif verb in ("RSET", "NOOP"):
                    say("250 OK")
                elif verb == "QUIT":
                    say("221 bye")
                    await writer.drain()
                    return
                else:
                    say("502 not implemented")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()
