"""Constants of the PostgreSQL v3 protocol: message type bytes, request codes, auth codes.

Message types are kept as ints (the value of the type byte) because that is what indexing a
bytes object yields on the hot path.
"""

from __future__ import annotations

from typing import Final

# Startup-phase request codes (the 4 bytes after the length of an untyped startup packet).
PROTOCOL_3_0: Final = 196608  # 3 << 16
CANCEL_REQUEST_CODE: Final = 80877102
SSL_REQUEST_CODE: Final = 80877103
GSSENC_REQUEST_CODE: Final = 80877104

# Frontend (client -> server) message types.
F_BIND: Final = ord("B")
F_CLOSE: Final = ord("C")
F_COPY_DATA: Final = ord("d")
F_COPY_DONE: Final = ord("c")
F_COPY_FAIL: Final = ord("f")
F_DESCRIBE: Final = ord("D")
F_EXECUTE: Final = ord("E")
F_FLUSH: Final = ord("H")
F_FUNCTION_CALL: Final = ord("F")
F_PARSE: Final = ord("P")
F_PASSWORD: Final = ord("p")  # also SASLInitialResponse and SASLResponse
F_QUERY: Final = ord("Q")
F_SYNC: Final = ord("S")
F_TERMINATE: Final = ord("X")

FRONTEND_TYPES: Final = frozenset(
    {
        F_BIND,
        F_CLOSE,
        F_COPY_DATA,
        F_COPY_DONE,
        F_COPY_FAIL,
        F_DESCRIBE,
        F_EXECUTE,
        F_FLUSH,
        F_FUNCTION_CALL,
        F_PARSE,
        F_PASSWORD,
        F_QUERY,
        F_SYNC,
        F_TERMINATE,
    }
)

# Backend (server -> client) message types.
B_AUTHENTICATION: Final = ord("R")
B_BACKEND_KEY_DATA: Final = ord("K")
B_BIND_COMPLETE: Final = ord("2")
B_CLOSE_COMPLETE: Final = ord("3")
B_COMMAND_COMPLETE: Final = ord("C")
B_COPY_BOTH_RESPONSE: Final = ord("W")
B_COPY_DATA: Final = ord("d")
B_COPY_DONE: Final = ord("c")
B_COPY_IN_RESPONSE: Final = ord("G")
B_COPY_OUT_RESPONSE: Final = ord("H")
B_DATA_ROW: Final = ord("D")
B_EMPTY_QUERY_RESPONSE: Final = ord("I")
B_ERROR_RESPONSE: Final = ord("E")
B_FUNCTION_CALL_RESPONSE: Final = ord("V")
B_NEGOTIATE_PROTOCOL_VERSION: Final = ord("v")
B_NO_DATA: Final = ord("n")
B_NOTICE_RESPONSE: Final = ord("N")
B_NOTIFICATION_RESPONSE: Final = ord("A")
B_PARAMETER_DESCRIPTION: Final = ord("t")
B_PARAMETER_STATUS: Final = ord("S")
B_PARSE_COMPLETE: Final = ord("1")
B_PORTAL_SUSPENDED: Final = ord("s")
B_READY_FOR_QUERY: Final = ord("Z")
B_ROW_DESCRIPTION: Final = ord("T")

# Authentication request codes (the int32 at the start of an 'R' message).
AUTH_OK: Final = 0
AUTH_KERBEROS_V5: Final = 2
AUTH_CLEARTEXT_PASSWORD: Final = 3
AUTH_MD5_PASSWORD: Final = 5
AUTH_GSS: Final = 7
AUTH_GSS_CONTINUE: Final = 8
AUTH_SSPI: Final = 9
AUTH_SASL: Final = 10
AUTH_SASL_CONTINUE: Final = 11
AUTH_SASL_FINAL: Final = 12

# Transaction status in ReadyForQuery.
TX_IDLE: Final = ord("I")
TX_IN_BLOCK: Final = ord("T")
TX_FAILED: Final = ord("E")

# The largest length any message may claim; the server's own limit for most messages is 1 GB.
MAX_PROTOCOL_MESSAGE: Final = 0x3FFFFFFF
