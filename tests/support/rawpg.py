"""A blocking PostgreSQL v3 client for tests that send what real drivers never would.

`RawConnection` speaks bytes: a test builds packets with Bastion's own encoders (or by hand, when
the point is to be malformed), sends them, and reads typed messages back under a deadline. The
client keeps whatever it has received, so a test can wait for the server to hang up and then
parse the ErrorResponse it sent just before. `login` runs a full SCRAM-SHA-256 exchange with
scramp, so relay-phase attacks start from a real, authenticated session. Nothing here retries,
reconnects or hides a server's answer: every unexpected reply is an `UnexpectedReply`.
"""

from __future__ import annotations

import base64
import socket
import ssl
import struct
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

from scramp import ScramClient

from bastion.wire.postgres import backend, frontend, startup
from bastion.wire.postgres.codes import AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL

_LENGTH = struct.Struct("!I")
_CHUNK = 1 << 20
SCRAM = "SCRAM-SHA-256"


class Closed(ConnectionError):
    """The server closed the connection before the expected bytes arrived."""


class UnexpectedReply(AssertionError):
    """The server answered something other than what the protocol step expects."""


@dataclass(frozen=True)
class Message:
    type: str  # the one-character message type
    body: bytes


@dataclass(frozen=True)
class ServerError:
    """The fields of an ErrorResponse, keyed by their one-letter codes."""

    fields: dict[str, str]

    @property
    def sqlstate(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def severity(self) -> str:
        return self.fields.get("V", self.fields.get("S", ""))

    @property
    def hint(self) -> str | None:
        return self.fields.get("H")

    @classmethod
    def from_body(cls, body: bytes) -> ServerError:
        return cls(backend.decode_fields(body))


class ErrorReceived(UnexpectedReply):
    """The server sent an ErrorResponse where the protocol step expected something else."""

    def __init__(self, error: ServerError) -> None:
        super().__init__(f"server error {error.sqlstate}: {error.message}")
        self.error = error


@dataclass(frozen=True)
class ScramFirst:
    """What the server disclosed in its server-first message."""

    salt: bytes
    iterations: int
    nonce: str


@dataclass
class Session:
    """What the server said while a login completed."""

    parameters: dict[str, str] = field(default_factory=dict)
    process_id: int = 0


@dataclass
class QueryResult:
    """Counted replies up to ReadyForQuery; DataRow bodies are counted, not kept."""

    counts: Counter[str] = field(default_factory=Counter)
    tags: list[str] = field(default_factory=list)
    errors: list[ServerError] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.counts["D"]


class RawConnection:
    def __init__(self, sock: socket.socket, timeout: float) -> None:
        self.sock: socket.socket | ssl.SSLSocket = sock
        self.timeout = timeout
        self._buffer = bytearray()
        self._eof = False

    @classmethod
    def open(
        cls, host: str, port: int, *, timeout: float = 5.0, source_host: str | None = None
    ) -> RawConnection:
        """Connect, optionally from a chosen local address (any of 127.0.0.0/8 on Linux)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if source_host is not None:
                sock.bind((source_host, 0))
            sock.settimeout(timeout)
            sock.connect((host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock, timeout)

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    # Sending.

    def send(self, data: bytes) -> None:
        self.sock.settimeout(self.timeout)  # reads shorten it to what is left of their deadline
        self.sock.sendall(data)

    def send_quietly(self, data: bytes) -> bool:
        """Send, but report a connection the server has already dropped instead of raising."""
        try:
            self.send(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        return True

    def startup(self, **parameters: str) -> None:
        self.send(startup.encode_startup_message(parameters))

    # Receiving.

    def _fill(self, deadline: float) -> None:
        """Receive at least one more byte, or raise Closed / TimeoutError."""
        if self._eof:
            raise Closed("the server closed the connection")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no reply from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(_CHUNK)
        except ConnectionResetError:
            data = b""  # a reset ends the stream as surely as a FIN
        if not data:
            self._eof = True
            raise Closed("the server closed the connection")
        self._buffer += data

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def _ensure(self, n: int, deadline: float) -> None:
        while len(self._buffer) < n:
            self._fill(deadline)

    @property
    def buffered(self) -> int:
        """Bytes received and not read yet."""
        return len(self._buffer)

    def peek_byte(self, timeout: float | None = None) -> bytes:
        """The next byte of the stream, left in place (for the one-byte SSL/GSS answers)."""
        self._ensure(1, self._deadline(timeout))
        return bytes(self._buffer[:1])

    def read_byte(self, timeout: float | None = None) -> bytes:
        value = self.peek_byte(timeout)
        del self._buffer[:1]
        return value

    def read_message(self, timeout: float | None = None) -> Message:
        deadline = self._deadline(timeout)
        self._ensure(5, deadline)
        (length,) = _LENGTH.unpack_from(self._buffer, 1)
        if length < 4:
            raise UnexpectedReply(f"server sent a message with length {length}")
        self._ensure(1 + length, deadline)
        message = Message(chr(self._buffer[0]), bytes(self._buffer[5 : 1 + length]))
        del self._buffer[: 1 + length]
        return message

    def read_error(self, timeout: float | None = None) -> ServerError:
        """The next message, which must be an ErrorResponse (notices before it are skipped)."""
        while True:
            message = self.read_message(timeout)
            if message.type == "E":
                return ServerError.from_body(message.body)
            if message.type != "N":
                raise UnexpectedReply(f"expected an ErrorResponse, got {message.type!r}")

    def wait_closed(self, timeout: float) -> bool:
        """True once the server has closed the connection, False if it is still open after
        `timeout`. Bytes received meanwhile are kept for `read_message`."""
        deadline = time.monotonic() + timeout
        while not self._eof:
            try:
                self._fill(deadline)
            except Closed:
                return True
            except TimeoutError:
                return False
        return True

    # TLS.

    def start_tls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Ask for TLS with an SSLRequest and, once accepted, wrap the socket."""
        self.send(startup.encode_ssl_request())
        answer = self.read_byte()
        if answer != b"S":
            raise UnexpectedReply(f"server answered SSLRequest with {answer!r}")
        if self._buffer:
            raise UnexpectedReply("server sent bytes after 'S', before the TLS handshake")
        sock = self.sock
        assert not isinstance(sock, ssl.SSLSocket)
        sock.settimeout(self.timeout)
        self.sock = context.wrap_socket(sock, server_hostname=server_hostname)

    # Authentication.

    def _read_auth(self) -> backend.Authentication:
        message = self.read_message()
        if message.type == "E":
            raise ErrorReceived(ServerError.from_body(message.body))
        if message.type != "R":
            raise UnexpectedReply(f"expected an authentication request, got {message.type!r}")
        return backend.decode_authentication(message.body)

    def _begin_scram(self, user: str, password: str, **parameters: str) -> ScramClient:
        self.startup(user=user, **parameters)
        auth = self._read_auth()
        if auth.code != AUTH_SASL:
            raise UnexpectedReply(f"expected AuthenticationSASL, got code {auth.code}")
        if SCRAM not in backend.decode_sasl_mechanisms(auth.payload):
            raise UnexpectedReply("the server does not offer SCRAM-SHA-256")
        client = ScramClient([SCRAM], user, password)
        self.send(frontend.encode_sasl_initial(SCRAM, client.get_client_first().encode()))
        return client

    def scram_server_first(self, user: str, **parameters: str) -> ScramFirst:
        """Start a SCRAM login and return what the server-first message discloses."""
        self._begin_scram(user, "not-a-password", **parameters)
        auth = self._read_auth()
        if auth.code != AUTH_SASL_CONTINUE:
            raise UnexpectedReply(f"expected AuthenticationSASLContinue, got code {auth.code}")
        attributes = dict(
            item.split("=", 1) for item in auth.payload.decode().split(",") if "=" in item
        )
        return ScramFirst(
            salt=base64.b64decode(attributes["s"]),
            iterations=int(attributes["i"]),
            nonce=attributes["r"],
        )

    def send_scram_proof(self, user: str, password: str, **parameters: str) -> ScramClient:
        """Run SCRAM up to sending the client's proof, without reading the server's verdict."""
        client = self._begin_scram(user, password, **parameters)
        auth = self._read_auth()
        if auth.code != AUTH_SASL_CONTINUE:
            raise UnexpectedReply(f"expected AuthenticationSASLContinue, got code {auth.code}")
        client.set_server_first(auth.payload.decode())
        self.send(frontend.encode_sasl_response(client.get_client_final().encode()))
        return client

    def authenticate(self, user: str, password: str, **parameters: str) -> None:
        """Send the startup packet and complete SCRAM up to AuthenticationOk.

        Raises ErrorReceived with the server's error if it refuses at any step."""
        client = self.send_scram_proof(user, password, **parameters)
        auth = self._read_auth()
        if auth.code != AUTH_SASL_FINAL:
            raise UnexpectedReply(f"expected AuthenticationSASLFinal, got code {auth.code}")
        client.set_server_final(auth.payload.decode())
        auth = self._read_auth()
        if auth.code != AUTH_OK:
            raise UnexpectedReply(f"expected AuthenticationOk, got code {auth.code}")

    def login(self, user: str, password: str, **parameters: str) -> Session:
        """Authenticate and read the greeting up to the first ReadyForQuery."""
        self.authenticate(user, password, **parameters)
        session = Session()
        while True:
            message = self.read_message()
            if message.type == "Z":
                return session
            if message.type == "S":
                name, value = backend.decode_parameter_status(message.body)
                session.parameters[name] = value
            elif message.type == "K":
                session.process_id = backend.decode_backend_key_data(message.body).process_id
            elif message.type == "E":
                raise ErrorReceived(ServerError.from_body(message.body))
            elif message.type != "N":
                raise UnexpectedReply(f"unexpected {message.type!r} before ReadyForQuery")

    # Queries.

    def query(self, sql: str, timeout: float | None = None) -> QueryResult:
        self.send(frontend.encode_query(sql))
        return self.read_until_ready(timeout)

    def read_until_ready(self, timeout: float | None = None) -> QueryResult:
        """Count replies up to ReadyForQuery, walking the buffer in place so that millions of
        DataRows cost no more than a loop iteration each."""
        deadline = self._deadline(timeout)
        result = QueryResult()
        counts = result.counts
        unpack = _LENGTH.unpack_from
        data_row = ord("D")
        rows = 0
        while True:
            buf = self._buffer
            size = len(buf)
            pos = 0
            done = False
            while size - pos >= 5:
                end = pos + 1 + unpack(buf, pos + 1)[0]
                if end > size:
                    break
                type_byte = buf[pos]
                if type_byte == data_row:
                    rows += 1
                else:
                    kind = chr(type_byte)
                    counts[kind] += 1
                    if kind == "C":
                        result.tags.append(
                            backend.decode_command_complete(bytes(buf[pos + 5 : end]))
                        )
                    elif kind == "E":
                        result.errors.append(ServerError.from_body(bytes(buf[pos + 5 : end])))
                    elif kind == "Z":
                        pos = end
                        done = True
                        break
                pos = end
            del buf[:pos]
            if done:
                counts["D"] += rows
                return result
            self._fill(deadline)
