"""A seeded mutation fuzzer for Lingua frames (protocol.md §1–§2).

``Mutator(seed).frame(base)`` takes a valid message (a dict) and returns a :class:`Fuzzed`
frame: the bytes to send, whether it goes as a binary frame, and the names of the mutations
applied (for the report of a failing seed).  Mutations work on the message (drop a field,
wrong type, huge number or string, deep nesting, extra fields, another ``type``) and on the
encoded bytes (invalid UTF-8, flipped and inserted bytes, truncation, duplicate keys, JSON
oddities).  The same seed always gives the same frames.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

JSON = dict[str, Any]

NODE_TYPES: Final = (
    "node_register",
    "node_heartbeat",
    "job_ack",
    "job_started",
    "job_result",
    "asr_partial",
    "node_error",
)
SESSION_TYPES: Final = ("session_init", "utterance", "client_heartbeat", "session_close")
ODD_STRINGS: Final = (
    "",
    " ",
    "\u0000",
    "\ud800",  # a lone surrogate: encodable only as the escape "\\ud800"
    "\u202e",
    "😀" * 10,
    "a" * 257,
    "en\u0000de",
    "../../etc/passwd",
    "<script>",
    "NaN",
    "-0",
)
HUGE_NUMBERS: Final = (
    0,
    -1,
    -0.0,
    1.5,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**30,
    -(10**30),
    1e308,
    -1e308,
    5e-324,
)


@dataclass(frozen=True, slots=True)
class Fuzzed:
    data: bytes
    binary: bool
    mutations: tuple[str, ...]


class Mutator:
    """Mutations drawn from one ``random.Random(seed)``."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self._message_ops: list[tuple[str, Callable[[JSON], None]]] = [
            ("drop_field", self._drop_field),
            ("wrong_type", self._wrong_type),
            ("huge_number", self._huge_number),
            ("huge_string", self._huge_string),
            ("odd_string", self._odd_string),
            ("deep_nesting", self._deep_nesting),
            ("extra_fields", self._extra_fields),
            ("other_type", self._other_type),
            ("nested_mutation", self._nested_mutation),
            ("null_field", self._null_field),
        ]
        self._byte_ops: list[tuple[str, Callable[[bytes], bytes]]] = [
            ("invalid_utf8", self._invalid_utf8),
            ("flip_bytes", self._flip_bytes),
            ("truncate", self._truncate),
            ("insert_bytes", self._insert_bytes),
            ("duplicate_key", self._duplicate_key),
            ("json_oddity", self._json_oddity),
        ]

    # --- the frame ------------------------------------------------------------------------

    def frame(self, base: JSON, *, max_ops: int = 3) -> Fuzzed:
        message = copy.deepcopy(base)
        names: list[str] = []
        self._deep: dict[bytes, bytes] = {}
        if self.rng.random() < 0.2:
            # Gentle: only what the contract says to ignore, so valid frames with odd
            # passengers reach dispatch and the nodes (opaque fields travel verbatim).
            self._extra_fields(message)
            return Fuzzed(encode(message, ascii_only=self.rng.random() < 0.5), False, ("extra",))
        for _ in range(self.rng.randint(1, max_ops)):
            if self.rng.random() < 0.75:
                name, op = self.rng.choice(self._message_ops)
                op(message)
                names.append(name)
        data = encode(message, ascii_only=self.rng.random() < 0.5)
        for marker, nested in self._deep.items():  # too deep for json.dumps: spliced in
            data = data.replace(marker, nested)
        if self.rng.random() < 0.3 or not names:
            name, byte_op = self.rng.choice(self._byte_ops)
            data = byte_op(data)
            names.append(name)
        binary = self.rng.random() < 0.03
        if binary:
            names.append("binary")
        return Fuzzed(data, binary, tuple(names))

    # --- message mutations ------------------------------------------------------------------

    def _key(self, message: JSON) -> str | None:
        keys = [k for k in message if k != "type"]
        return self.rng.choice(keys) if keys else None

    def _drop_field(self, message: JSON) -> None:
        key = self._key(message)
        if key is not None:
            del message[key]

    def random_value(self, depth: int = 0) -> object:
        roll = self.rng.randrange(9 if depth < 2 else 6)
        if roll == 0:
            return None
        if roll == 1:
            return self.rng.random() < 0.5
        if roll == 2:
            return self.rng.choice(HUGE_NUMBERS)
        if roll == 3:
            return self.rng.choice(ODD_STRINGS)
        if roll == 4:
            return self.rng.randint(-5, 5)
        if roll == 5:
            size = self.rng.randrange(8)
            return "".join(chr(self.rng.randrange(32, 0x2FFF)) for _ in range(size))
        if roll == 6:
            return [self.random_value(depth + 1) for _ in range(self.rng.randrange(4))]
        return {f"k{i}": self.random_value(depth + 1) for i in range(self.rng.randrange(4))}

    def _wrong_type(self, message: JSON) -> None:
        key = self._key(message)
        if key is not None:
            message[key] = self.random_value()

    def _huge_number(self, message: JSON) -> None:
        key = self._key(message)
        if key is not None:
            message[key] = self.rng.choice(HUGE_NUMBERS)

    def _huge_string(self, message: JSON) -> None:
        key = self._key(message)
        if key is not None:
            message[key] = self.rng.choice("xé😀") * self.rng.choice((300, 5000, 20000))

    def _odd_string(self, message: JSON) -> None:
        key = self._key(message)
        if key is not None:
            message[key] = self.rng.choice(ODD_STRINGS)

    def _deep_nesting(self, message: JSON) -> None:
        depth = self.rng.choice((64, 500, 2000, 20000))
        opening, closing = (b"[", b"]") if self.rng.random() < 0.5 else (b'{"a":', b"}")
        marker = f"__deep_{len(self._deep)}__"
        self._deep[json.dumps(marker).encode()] = opening * depth + b"1" + closing * depth
        key = self._key(message) if self.rng.random() < 0.5 else None
        message[key or "deep"] = marker

    def _extra_fields(self, message: JSON) -> None:
        for i in range(self.rng.randrange(1, 4)):
            message[f"extra_{self.rng.randrange(1000)}_{i}"] = self.random_value()

    def _other_type(self, message: JSON) -> None:
        choices = (*NODE_TYPES, *SESSION_TYPES, "", "UTTERANCE", "error", "job_assign", 7, None)
        message["type"] = self.rng.choice(choices)

    def _nested_mutation(self, message: JSON) -> None:
        nested = [k for k, v in message.items() if isinstance(v, dict | list) and v]
        if not nested:
            self._extra_fields(message)
            return
        value = message[self.rng.choice(nested)]
        if isinstance(value, list):
            item = self.rng.randrange(len(value))
            if isinstance(value[item], dict) and value[item]:
                value[item][self.rng.choice(list(value[item]))] = self.random_value()
            else:
                value[item] = self.random_value()
        elif value:
            value[self.rng.choice(list(value))] = self.random_value()

    def _null_field(self, message: JSON) -> None:
        key = self._key(message)
        if key is not None:
            message[key] = None

    # --- byte mutations ---------------------------------------------------------------------

    def _invalid_utf8(self, data: bytes) -> bytes:
        bad = self.rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"))
        quote = data.find(b'"', self.rng.randrange(max(len(data), 1)))
        at = quote + 1 if quote >= 0 else self.rng.randrange(len(data) + 1)
        return data[:at] + bad + data[at:]

    def _flip_bytes(self, data: bytes) -> bytes:
        buf = bytearray(data)
        for _ in range(self.rng.randint(1, 4)):
            if buf:
                buf[self.rng.randrange(len(buf))] = self.rng.randrange(256)
        return bytes(buf)

    def _truncate(self, data: bytes) -> bytes:
        return data[: self.rng.randrange(len(data))] if data else data

    def _insert_bytes(self, data: bytes) -> bytes:
        at = self.rng.randrange(len(data) + 1)
        junk = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))
        return data[:at] + junk + data[at:]

    def _duplicate_key(self, data: bytes) -> bytes:
        # A second "type" or "session_id" later in the object: JSON allows it, last wins.
        key = self.rng.choice((b'"type"', b'"session_id"', b'"node_id"', b'"job_id"'))
        value = json.dumps(self.rng.choice(("utterance", "x", "job_result"))).encode()
        return data[:-1] + b"," + key + b":" + value + b"}" if data.endswith(b"}") else data

    def _json_oddity(self, data: bytes) -> bytes:
        odd = self.rng.choice(
            (
                b"\xef\xbb\xbf" + data,
                data + b" trailing",
                data + data,
                b"[" + data + b"]",
                data.replace(b":", b': NaN, "x":', 1),
                data.replace(b":", b': Infinity, "x":', 1),
                data.replace(b":", b': 01, "x":', 1),
                b"",
                b"null",
                b"   ",
            )
        )
        return odd


def encode(message: JSON, *, ascii_only: bool = True) -> bytes:
    """JSON text; a lone surrogate becomes the escape ``\\ud800`` (valid JSON, invalid
    Unicode) or, with ``ascii_only=False``, raw surrogate bytes (invalid UTF-8)."""
    return json.dumps(message, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
