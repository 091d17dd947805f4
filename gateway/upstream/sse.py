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

Exactness: the text between the template's ends is decoded as one JSON string; if it is not
exactly one (an unescaped quote, a dangling backslash), the payload is parsed normally. So a
merged chunk is always the chunk the upstream sent, text aside.
"""

from __future__ import annotations

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


def _text_field(chunk: Chunk) -> str | None:
    """The delta's only key, when the chunk is plain text for one choice and nothing else."""
    choices = chunk.get("choices")
    if type(choices) is not list or len(choices) != 1 or chunk.get("usage") is not None:
        return None
    choice = choices[0]
    if type(choice) is not dict or choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return None
    delta = choice.get("delta")
    if type(delta) is not dict or len(delta) != 1:
        return None
    key = next(iter(delta))
    return key if key in _TEXT_FIELDS and type(delta[key]) is str else None


@dataclass(frozen=True, slots=True)
class Template:
    prefix: bytes
    suffix: bytes
    skeleton: Chunk
    field: str

    @staticmethod
    def of(payload: bytes, chunk: Chunk) -> Template | None:
        name = _text_field(chunk)
        if name is None:
            return None
        key = b'"' + name.encode() + b'":'
        value = orjson.dumps(chunk["choices"][0]["delta"][name])
        at = payload.find(key + value)
        # The key must occur once (its text cannot hold it: quotes inside are escaped), and the
        # upstream must have escaped the text as orjson does; otherwise no template.
        if at < 0 or payload.count(key) != 1:
            return None
        start = at + len(key) + 1
        end = at + len(key) + len(value) - 1
        # A private copy: the chunk itself goes downstream, where it is not ours any more.
        choice = chunk["choices"][0]
        skeleton = {**chunk, "choices": [{**choice, "delta": dict(choice["delta"])}]}
        return Template(payload[:start], payload[end:], skeleton, name)

    def text_of(self, payload: bytes) -> str | None:
        """The text of ``payload`` when it is this template with another text, else None."""
        lo, hi = len(self.prefix), len(payload) - len(self.suffix)
        if hi < lo or not payload.startswith(self.prefix) or not payload.endswith(self.suffix):
            return None
        try:
            text = orjson.loads(b'"' + payload[lo:hi] + b'"')
        except orjson.JSONDecodeError:
            return None
        return text if type(text) is str else None

    def build(self, text: str) -> Chunk:
        choice = dict(self.skeleton["choices"][0])
        choice["delta"] = {self.field: text}
        chunk = dict(self.skeleton)
        chunk["choices"] = [choice]
        return chunk


#: tokens merged into a stream's first text chunk; each later run may hold twice as many, up
#: to ``MAX_RUN``. Small first, so the first words are checked and sent before the rest of a
#: large read is (time to first token); large later, so a fast stream costs little per token.
FIRST_RUN = 4
MAX_RUN = 64


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
        if template is not None and (text := template.text_of(payload)) is not None:
            if len(self._run) >= self._run_cap:
                self._close_run(batch)
            self._run.append(text)  # a run begun here has no parsed head: ``build`` makes one
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

    def _close_run(self, batch: list[Chunk]) -> None:
        if not self._run:
            return
        template = self._template
        assert template is not None
        head, parts = self._run_head, self._run
        self._run_head, self._run = None, []
        self._run_cap = min(self._run_cap * 2, MAX_RUN)
        if head is not None and len(parts) == 1:
            batch.append(head)
        else:
            batch.append(template.build(parts[0] if len(parts) == 1 else "".join(parts)))
