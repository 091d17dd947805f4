"""Server-sent events from an OpenAI-compatible upstream into chunk batches, cheaply.

``SseBatcher.feed(data)`` takes whatever one socket read brought in and returns the chunks
that are complete, as parsed JSON objects. Under load one read carries dozens of tokens; most
of them differ from the token before only in their text (same ``id``, ``model``,
``created``...). For those the batcher does not parse the JSON at all: once a plain text chunk
has been parsed, its bytes before and after the text value are a *template*, and a later
payload that starts and ends with exactly those bytes is that chunk with another text. Such
runs within one read come out as one chunk carrying the joined text (the first of a stream
short, later ones longer: ``FIRST_RUN``, ``MAX_RUN``), so the pipeline checks, serializes
and writes per run instead of per token, and no JSON is parsed for most tokens.

The template is found in the upstream's own bytes, not rebuilt from the parsed chunk, so it
fits every server's way of writing a chunk: any key order (llama.cpp sorts them), spaces
after ``:`` and ``,`` (Python's ``json.dumps``), escapes (``\u00e9``, Go's ``\u003c``), a
delta that repeats ``"role":"assistant"`` with every token (Ollama, TGI), and fields such as
``system_fingerprint`` or ``"logprobs":null``. A chunk whose other fields carry per-token
data (logprobs, usage, finish_reason, a second text) never starts a template. The one
per-token field that does not stop a run is OpenAI's random ``obfuscation`` pad (``PAD_FIELD``):
a merged chunk carries its run's first pad.

Exactness: the text between the template's ends is decoded as one JSON string; if it is not
exactly one (an unescaped quote, a dangling backslash), the payload is parsed normally. The
first time a template would merge, it is checked once by parsing it with a probe text in the
text's place, so a key that only looks like the delta's text cannot be mistaken for it. So a
merged chunk is always the chunk the upstream sent, text aside, fields in the same order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.errors import UpstreamError

Chunk = dict[str, Any]
_TEXT_FIELDS = ("content", "reasoning_content", "reasoning")


def _payload(event: bytes) -> bytes:
    if event.startswith(b"data: ") and b"\n" not in event:
        return event[6:]  # the usual one-line event
    payload = b""
    for line in event.split(b"\n"):
        if line.startswith(b"data:"):
            payload += line[5:].strip()
    return payload


def parse_payload(payload: bytes) -> Chunk:
    try:
        chunk = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("Upstream sent a malformed stream chunk.") from exc
    if not isinstance(chunk, dict):
        raise UpstreamError("Upstream sent a malformed stream chunk.")
    if "error" in chunk and "choices" not in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise UpstreamError(f"Upstream error mid-stream: {message}")
    return chunk


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _text_field(chunk: Chunk) -> str | None:
    """The delta's text key, when the chunk is plain text for one choice and nothing else
    that a merge could lose: besides the text, the delta may hold only its ``role`` and
    empty fields (``"tool_calls":[]``, ``"reasoning_content":null``, another empty text)."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict:
        return None
    texts = []
    for key, value in delta.items():
        if key in _TEXT_FIELDS and type(value) is str:
            texts.append(key)
        elif not (key == "role" and type(value) is str) and not _empty(value):
            return None
    full = [key for key in texts if delta[key]]
    if len(full) > 1:
        return None  # a second text would be repeated in every merged chunk
    return full[0] if full else (texts[0] if texts else None)


#: OpenAI's per-chunk random padding (``"obfuscation":"..."``, a side-channel guard on token
#: lengths): it differs in every chunk, so runs would never form; a merged chunk keeps the
#: pad of its run's first chunk, which pads nothing a network observer could use any more.
PAD_FIELD = "obfuscation"
_PLAIN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_.~ "


def _plain(value: bytes) -> bool:
    """A pad value needs no escapes: nothing in it can end the JSON string early."""
    return not value.translate(None, _PLAIN)


_SPACE = b" \t\r\n"
#: a JSON string on one line: anything but quotes, backslashes and line ends, or an escape
_JSON_STRING = re.compile(rb'"[^"\\\n]*(?:\\.[^"\\\n]*)*"')
_PROBE = "\u2063warden\u2063"  # any text would do: it is parsed once, never sent


def _string_end(payload: bytes, start: int) -> int:
    """Index of the quote that closes the JSON string whose text begins at ``start``, or -1."""
    at = start
    while (quote := payload.find(b'"', at)) >= 0:
        back = quote
        while back > start and payload[back - 1] == 0x5C:  # backslash
            back -= 1
        if (quote - back) % 2 == 0:
            return quote
        at = quote + 1
    return -1


def _value_span(payload: bytes, name: str) -> tuple[int, int] | None:
    """Where the string value of the only ``"name"`` key in ``payload`` lies (quotes excluded)."""
    key = b'"' + name.encode() + b'"'
    at = payload.find(key)
    # The key must occur once: a text cannot hold it (quotes inside a string are escaped), so
    # a second one is another field of that name, and which is the delta's is not known here.
    if at < 0 or payload.find(key, at + 1) >= 0:
        return None
    at += len(key)
    size = len(payload)
    while at < size and payload[at] in _SPACE:
        at += 1
    if payload[at : at + 1] != b":":
        return None
    at += 1
    while at < size and payload[at] in _SPACE:
        at += 1
    if payload[at : at + 1] != b'"':
        return None
    end = _string_end(payload, at + 1)
    return None if end < 0 else (at + 1, end)


@dataclass(slots=True)
class Template:
    prefix: bytes
    suffix: bytes
    skeleton: Chunk
    field: str
    #: checked once with a probe text, the first time a payload matches (see ``confirm``)
    confirmed: bool = False
    #: with a pad after the text: the fixed bytes between the text's end and the pad's value
    gap: bytes | None = None
    #: the pad's value in the template's own chunk (the probe check puts it back)
    pad: bytes = b""
    #: the pad of the payload ``text_of`` matched last
    last_pad: bytes = b""
    #: once confirmed, and without a pad: the bytes of a one-line event of this template
    #: before its text's JSON string and after it (see ``SseBatcher.feed``)
    event: tuple[bytes, bytes] | None = None

    @staticmethod
    def of(payload: bytes, chunk: Chunk) -> Template | None:
        name = _text_field(chunk)
        if name is None:
            return None
        span = _value_span(payload, name)
        if span is None:
            return None
        start, end = span
        try:
            if orjson.loads(payload[start - 1 : end + 1]) != chunk["choices"][0]["delta"][name]:
                return None
        except orjson.JSONDecodeError:
            return None
        # A private copy: the chunk itself goes downstream, where it is not ours any more.
        choice = chunk["choices"][0]
        skeleton = {**chunk, "choices": [{**choice, "delta": dict(choice["delta"])}]}
        if PAD_FIELD not in chunk:
            return Template(payload[:start], payload[end:], skeleton, name)
        pad = _value_span(payload, PAD_FIELD)
        if pad is None or pad[0] <= end or not _plain(payload[pad[0] : pad[1]]):
            return None
        gap = payload[end : pad[0]]
        return Template(payload[:start], payload[pad[1] :], skeleton, name, gap=gap, pad=payload[pad[0] : pad[1]])

    def confirm(self) -> bool:
        """Is the span between prefix and suffix really the delta's text? Parse the template
        once with a probe text there: the chunk must come back as the skeleton, probe as text."""
        self.confirmed = True
        middle = orjson.dumps(_PROBE)[1:-1] + (self.gap + self.pad if self.gap is not None else b"")
        try:
            probe = orjson.loads(self.prefix + middle + self.suffix)
        except orjson.JSONDecodeError:
            return False
        if probe != self.build(_PROBE):
            return False
        if self.gap is None:
            self.event = (b"data: " + self.prefix[:-1], self.suffix[1:] + b"\n\n")
        return True

    def text_of(self, payload: bytes) -> str | None:
        """The text of ``payload`` when it is this template with another text, else None."""
        lo, hi = len(self.prefix), len(payload) - len(self.suffix)
        if hi < lo or not payload.startswith(self.prefix) or not payload.endswith(self.suffix):
            return None
        if self.gap is not None:
            # The first occurrence is the real one: the text cannot hold the gap's opening
            # quote unescaped, and if it holds ``\"`` + the rest, what is left is no JSON string.
            cut = payload.find(self.gap, lo, hi)
            if cut < 0 or not _plain(pad := payload[cut + len(self.gap) : hi]):
                return None
            self.last_pad, hi = pad, cut
        try:
            # the prefix ends with the text's opening quote and the suffix (or gap) starts with
            # its closing one, so the slice is the JSON string as the upstream wrote it
            text = orjson.loads(payload[lo - 1 : hi + 1])
        except orjson.JSONDecodeError:
            return None
        return text if type(text) is str else None

    def build(self, text: str, pad: bytes | None = None) -> Chunk:
        """The skeleton with ``text`` (and ``pad``): fresh dicts down to the delta, keys in the
        upstream's order."""
        choice = dict(self.skeleton["choices"][0])
        delta = dict(choice["delta"])
        delta[self.field] = text
        choice["delta"] = delta
        chunk = dict(self.skeleton)
        chunk["choices"] = [choice]
        if pad is not None and self.gap is not None:
            chunk[PAD_FIELD] = pad.decode("ascii")
        return chunk


#: tokens merged into a stream's first text chunk; each later run may hold ``RUN_GROWTH`` times
#: as many, up to ``MAX_RUN``. Small first, so the first words are checked and sent before the
#: rest of a large read is (time to first token); large later, so a fast stream costs little per
#: token: every chunk is one more pass of the stream checks, one more JSON encoding and write.
FIRST_RUN = 4
RUN_GROWTH = 4
MAX_RUN = 256


@dataclass(slots=True)
class SseBatcher:
    """Feed it socket reads; it gives each read's complete chunks, text runs merged."""

    done: bool = False
    _run_cap: int = FIRST_RUN
    #: raised by the caller after it has passed on the chunks that came before the bad event
    error: UpstreamError | None = None
    _buf: bytes = b""
    _template: Template | None = None
    _run: list[str] = field(default_factory=list)
    _run_head: Chunk | None = None
    _run_pad: bytes | None = None

    def feed(self, data: bytes) -> Iterator[Chunk]:
        """The complete chunks of ``data``, each as soon as it is known: the first ones are on
        their way through the checks before the rest of a large read has been looked at."""
        split_crlf = self._buf.endswith(b"\r")  # a CR that ended the last read waits for its LF
        buf = self._buf + data if self._buf else data
        if split_crlf or b"\r" in data:  # CRLF line endings (a split CRLF is mended when its \n arrives)
            buf = buf.replace(b"\r\n", b"\n")
        self._buf = b""
        ready: list[Chunk] = []
        start = 0
        while not self.done and self.error is None:
            template = self._template
            if template is not None and template.event is not None and buf.startswith(template.event[0], start):
                # A token of the current template, the bulk of a fast stream: the event's fixed
                # bytes compared in place, its text's JSON string found by one match and decoded
                # once, where ``_event`` takes the same steps in Python. Anything else (another
                # shape, an escape JSON refuses) goes there.
                head, tail = template.event
                match = _JSON_STRING.match(buf, start + len(head))
                if match is not None and buf.startswith(tail, match.end()):
                    try:
                        text = orjson.loads(match.group())
                    except orjson.JSONDecodeError:
                        text = None
                    if type(text) is str:
                        self._add(template, text, ready)
                        start = match.end() + len(tail)
                        if ready:
                            yield from ready
                            ready.clear()
                        continue
            cut = buf.find(b"\n\n", start)
            if cut < 0:
                break
            self._event(buf[start:cut], ready)
            start = cut + 2
            if ready:
                yield from ready
                ready.clear()
        self._buf = buf[start:] if start < len(buf) else b""
        self._close_run(ready)
        yield from ready

    def _event(self, event: bytes, batch: list[Chunk]) -> None:
        payload = _payload(event)
        if not payload:
            return
        template = self._template
        if (
            template is not None
            and (text := template.text_of(payload)) is not None
            and (template.confirmed or template.confirm())
        ):
            self._add(template, text, batch)
            return
        self._close_run(batch)
        if payload == b"[DONE]":
            self.done = True
            return
        try:
            chunk = parse_payload(payload)
        except UpstreamError as exc:
            self.error = exc
            return
        found = Template.of(payload, chunk)
        if found is None:
            batch.append(chunk)
            return
        self._template = found
        self._run_head, self._run = chunk, [found.skeleton["choices"][0]["delta"][found.field]]

    def _add(self, template: Template, text: str, batch: list[Chunk]) -> None:
        """One more token of ``template`` for the run (closing the run first when it is full)."""
        if len(self._run) >= self._run_cap:
            self._close_run(batch)
        if not self._run:
            self._run_pad = template.last_pad  # a run keeps its first chunk's pad
        self._run.append(text)  # a run begun here has no parsed head: ``build`` makes one

    def _close_run(self, batch: list[Chunk]) -> None:
        if not self._run:
            return
        template = self._template
        assert template is not None
        head, parts = self._run_head, self._run
        self._run_head, self._run = None, []
        if head is not None and len(parts) == 1:
            batch.append(head)  # nothing merged (a role announcement, say): runs do not grow
        else:
            self._run_cap = min(self._run_cap * RUN_GROWTH, MAX_RUN)
            pad, self._run_pad = self._run_pad, None
            batch.append(template.build(parts[0] if len(parts) == 1 else "".join(parts), pad))
