"""Decoding API Gateway access logs, delivered to the stream by a CloudWatch Logs subscription.

Each such Kinesis record is the gzip of a CloudWatch Logs envelope (`messageType`, `logEvents`, ...)
whose log events each carry one access-log line in the stage's `AccessLogSetting.Format`: a JSON
object of quoted strings, with `"-"` where API Gateway has no value.

API Gateway may leave a `"` or `\\` of the caller's unescaped (DataBiosphere/azul#4348), so a line
is read by position first (`contract.access_logs`: the caller's one value, the path, is last): the
fields before it cannot hold a quote, the path is all that remains before the closing `"}`, read as
a JSON string if it is one (escaped) and as written if not. A line of another shape (an older
format, say) is read as JSON. `"-"` in a number counts the response without that number: API
Gateway writes it for `integrationLatency` when no integration ran, and its documentation does
not promise `status` and `responseLatency` for every request it answers itself.

Decoding is total, like `consumer.core.events`: any bytes give a `LogRecord` or `InvalidEvent`, and
one bad log event is reported in its place without spoiling the others in its envelope
(tests/unit/test_access_logs_fuzz.py). Inflating is bounded (`MAX_INFLATED_BYTES`,
`MAX_INFLATION_RATIO`), so a gzip bomb costs at most ~16 MiB for a moment and never stops the shard.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

import msgspec

from consumer.core.events import (
    MAX_CLOCK_SKEW,
    MAX_EVENT_AGE,
    InvalidEvent,
    Reason,
    without_values,
)
from contract.access_logs import CALLER_FIELD, FIELDS, FORMAT, literals
from contract.events import (
    EMAIL_PATTERN,
    MAX_EMAIL_CHARS,
    MAX_SOURCE_IP_CHARS,
    MAX_TEXT_CHARS,
    email_key,
    format_timestamp,
)

GZIP_MAGIC: Final = b"\x1f\x8b"
DATA_MESSAGE: Final = "DATA_MESSAGE"
CONTROL_MESSAGE: Final = "CONTROL_MESSAGE"  # CloudWatch Logs checking the destination: nothing to count
MISSING: Final = "-"  # what API Gateway writes for a value it does not have

# CloudWatch Logs counts a batch as its messages' UTF-8 bytes plus 26 per event, at most 1 MiB. The
# envelope adds about 80 bytes of id and timestamp per event and escapes each message once more as a
# JSON string (a quote or backslash doubles, a control character becomes 6 bytes), so a real
# envelope stays under 6 MiB even for odd lines (ours inflate to ~1.4x the batch). 8 MiB keeps a
# margin; inflating holds at most twice that for a moment (zlib joins its output blocks).
MAX_INFLATED_BYTES: Final = 8 * 1024 * 1024
# Deflate reaches ~1,030:1 on a run of one byte, the classic bomb. Access logs: ~13:1 for a batch of
# ordinary requests; a caller can push theirs to ~350:1 (measured: a 6,000-character path of
# double quotes, 4 bytes each once escaped in the line and again in the envelope). A record that
# trips this bound is dead-lettered whole, with other callers' events, so it sits 2x above that.
MAX_INFLATION_RATIO: Final = 800
# PutLogEvents takes at most 10,000 events per batch; our lines (~300 bytes and more) fit at most
# ~3,500 in 1 MiB. Bounds the objects one record makes: 8 MiB of `{},{},...` would be 2.8 million.
MAX_LOG_EVENTS: Final = 10_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TOO_DEEP: Final = "nested deeper than the decoder can read"


class ResponseEvent(msgspec.Struct, frozen=True):
    """One request API Gateway answered, from its access-log line; None where it had no value."""

    request_id: str
    timestamp: datetime  # aware, UTC: when API Gateway received the request
    http_method: str
    resource_path: str | None  # the route template, `/items/{id}`; None: the request matched no route
    path: str | None  # the path requested, `/items/42`, cut to MAX_TEXT_CHARS
    status: int | None  # 100-599; None: API Gateway wrote none (`-`)
    response_latency_ms: int | None  # None: API Gateway wrote none (`-`)
    integration_latency_ms: int | None  # None: no integration ran (e.g. the authorizer refused)
    source_ip: str | None
    user_email: str | None  # canonical (`contract.events.email_key`); None for callers without a key
    api_key_id: str | None
    error_type: str | None = None  # the gateway response (`THROTTLED`, ...); None: the backend's own


LogEventResult = tuple[int, ResponseEvent | InvalidEvent]


@dataclass(frozen=True, slots=True)
class LogRecord:
    """What one subscription record holds: a control message (skip it), or its log events.

    `events` are `(index in the envelope, event or why it cannot count)`, in envelope order;
    `raw_events` each log event as the envelope held it (what a dead letter keeps of a bad one);
    `redrive_origin` is set on an envelope `metering dlq redrive` rebuilt around a dead-lettered one.
    """

    is_control: bool
    events: tuple[LogEventResult, ...] = ()
    raw_events: tuple[bytes, ...] = ()
    redrive_origin: str | None = None


# -- the access-log line ---------------------------------------------------------------------------

# Fields API Gateway or our authorizer writes: out of bounds, the line is not one of ours.
Required = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TEXT_CHARS)]  # and not "-"
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
SourceIp = Annotated[str, msgspec.Meta(max_length=MAX_SOURCE_IP_CHARS)]
Email = Annotated[str, msgspec.Meta(max_length=MAX_EMAIL_CHARS, pattern=rf"^-\Z|{EMAIL_PATTERN}")]
EpochMillis = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,13}\Z")]  # up to the year 2286
Status = Annotated[str, msgspec.Meta(pattern=r"^(?:-|[1-5][0-9]{2})\Z")]
Millis = Annotated[str, msgspec.Meta(pattern=r"^(?:-|[0-9]{1,9})\Z")]  # up to 11 days
_GATEWAY_RESPONSE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")  # API Gateway's enum: THROTTLED, ACCESS_DENIED


class _AccessLogLine(msgspec.Struct, frozen=True, rename="camel"):
    """The line as written. Fields added to the format later are ignored."""

    request_id: Required
    request_time_epoch: EpochMillis
    http_method: Required
    resource_path: Text  # `-` when the request matched no route
    status: Status
    response_latency: Millis
    # The caller writes the path (up to API Gateway's ~10 KB of request line): it is cut, not
    # refused, or a long path would make any caller's requests uncountable.
    path: str = MISSING
    stage: Text = MISSING
    integration_latency: Millis = MISSING
    source_ip: SourceIp = MISSING
    user_email: Email = MISSING
    api_key_id: Text = MISSING
    error_type: Text = MISSING  # older lines do not have it


_line_decoder = msgspec.json.Decoder(_AccessLogLine)
_string_decoder = msgspec.json.Decoder(str)


def _line_pattern() -> re.Pattern[str]:
    """`FORMAT` with each value a group: API Gateway's own hold no quote, the caller's (last) anything."""
    names, texts = list(FIELDS), literals(FORMAT)
    if names[-1] != CALLER_FIELD or not texts[-1].startswith('"'):
        raise ValueError(f"the caller's field must be the format's last value: {FORMAT}")
    values = ['([^"\\\\]*)'] * (len(names) - 1) + ["(.*)"]
    parts = [re.escape(texts[0])]
    for value, text in zip(values, texts[1:], strict=True):
        parts += [value, re.escape(text)]
    return re.compile("".join(parts) + r"\Z", re.DOTALL)


_LINE: Final = _line_pattern()
_LINE_FIELDS: Final = tuple(FIELDS)


def decode_access_log_line(line: bytes | str, now: datetime) -> ResponseEvent:
    """Decode one access-log line into a `ResponseEvent`, or raise `InvalidEvent`."""
    try:
        raw = _read_line(line)
    except (msgspec.DecodeError, UnicodeError) as exc:  # ValidationError is a DecodeError
        raise InvalidEvent(Reason.LOG_EVENT_INVALID, _detail(exc)) from None
    except RecursionError:
        raise InvalidEvent(Reason.TOO_DEEP, _TOO_DEEP) from None
    event = _response_event(raw)
    _check_time(event.timestamp, now)
    return event


def _read_line(line: bytes | str) -> _AccessLogLine:
    """By position if the line has `FORMAT`'s shape (so an unescaped quote of the caller's cannot
    break it), else as JSON."""
    text = line.decode() if isinstance(line, bytes) else line
    found = _LINE.match(text)
    if found is None:
        return _line_decoder.decode(line)
    text.encode()  # a lone surrogate is no more a line here than in JSON (UnicodeError)
    values = dict(zip(_LINE_FIELDS, found.groups(), strict=True))
    values[CALLER_FIELD] = _as_written(values[CALLER_FIELD])
    return msgspec.convert(values, _AccessLogLine)


def _as_written(value: str) -> str:
    """The caller's value: a JSON string's text if API Gateway escaped it, else the text itself.

    Either reading gives the line; the two differ only for a value that holds a backslash escape
    and was not escaped (`/a\\"b` read as `/a"b`), a difference of route at most, never of count."""
    try:
        return _string_decoder.decode(f'"{value}"')
    except msgspec.DecodeError:
        return value


def _response_event(raw: _AccessLogLine) -> ResponseEvent:
    return ResponseEvent(
        request_id=_required(raw.request_id, "requestId"),
        timestamp=_EPOCH + timedelta(milliseconds=int(raw.request_time_epoch)),
        http_method=_required(raw.http_method, "httpMethod"),
        resource_path=_present(raw.resource_path),
        path=_cut(_without_stage(_present(raw.path), raw.stage)),
        status=_int(_present(raw.status)),
        response_latency_ms=_int(_present(raw.response_latency)),
        integration_latency_ms=_int(_present(raw.integration_latency)),
        source_ip=_present(raw.source_ip),
        user_email=_email(_present(raw.user_email)),
        api_key_id=_present(raw.api_key_id),
        error_type=_gateway_response(raw.error_type),
    )


def _without_stage(path: str | None, stage: str) -> str | None:
    """`$context.path` starts with the stage (`/prod/items/42`); routes and usage events do not."""
    prefix = f"/{stage}"
    if path is not None and stage != MISSING and (path == prefix or path.startswith(prefix + "/")):
        return path[len(prefix) :] or "/"
    return path


def _gateway_response(value: str) -> str | None:
    """The response type, or None: `-`, or a value of another shape costs the type, never the line."""
    return value if _GATEWAY_RESPONSE.fullmatch(value) else None


def _required(value: str, name: str) -> str:
    if value == MISSING:
        raise InvalidEvent(Reason.LOG_EVENT_INVALID, f"Required field has no value (-) - at `$.{name}`")
    return value


def _present(value: str) -> str | None:
    return None if value == MISSING else value


def _cut(value: str | None) -> str | None:
    return None if value is None else value[:MAX_TEXT_CHARS]


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _email(value: str | None) -> str | None:
    return None if value is None else email_key(value)  # it matched EMAIL_PATTERN


def _check_time(at: datetime, now: datetime) -> None:
    """The usage decoder's rule (`decode_event`): a broken clock, not a request to count."""
    if at - now > MAX_CLOCK_SKEW:
        raise InvalidEvent(Reason.FUTURE_TIMESTAMP, f"{format_timestamp(at)} is ahead of {now}")
    if now - at > MAX_EVENT_AGE:
        raise InvalidEvent(Reason.STALE_TIMESTAMP, f"{format_timestamp(at)} is long before {now}")


def _detail(exc: Exception) -> str:
    """Why msgspec refused, without the offending value (it may be a key pasted into a header)."""
    if isinstance(exc, UnicodeError):  # its message quotes the bad character
        return "not UTF-8 (or a string with a lone surrogate)"
    return without_values(str(exc))


# -- the CloudWatch Logs envelope ------------------------------------------------------------------


class _Envelope(msgspec.Struct, frozen=True, rename="camel"):
    """The fields we read; `owner`, `logGroup`, `logStream`, `subscriptionFilters` are not needed."""

    message_type: Text
    # Raw: each log event is decoded apart, so one bad event does not spoil the others.
    log_events: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_LOG_EVENTS)]
    redrive_origin: Text | None = None  # ours: an envelope `metering dlq redrive` rebuilt


class _LogEvent(msgspec.Struct, frozen=True):
    message: str  # `id` and `timestamp` are CloudWatch's; the line has its own


_envelope_decoder = msgspec.json.Decoder(_Envelope)
_log_event_decoder = msgspec.json.Decoder(_LogEvent)


def is_gzip(data: bytes) -> bool:
    """Whether a record's data is gzip: a subscription's envelope, not a usage event (JSON, `{`)."""
    return data[:2] == GZIP_MAGIC


def decode_log_record(data: bytes, now: datetime) -> LogRecord:
    """Decode one subscription record, or raise `InvalidEvent` if none of it can be read."""
    envelope = _decode_envelope(_inflate(data))
    if envelope.message_type == CONTROL_MESSAGE:
        return LogRecord(is_control=True)
    if envelope.message_type != DATA_MESSAGE:  # the value stays out of the detail: it may be anything
        raise InvalidEvent(Reason.ENVELOPE_INVALID, "unknown messageType")
    events = tuple((index, _decode_log_event(raw, now)) for index, raw in enumerate(envelope.log_events))
    raw_events = tuple(bytes(raw) for raw in envelope.log_events)
    return LogRecord(False, events, raw_events, envelope.redrive_origin)


def _inflate(data: bytes) -> bytes:
    """Gunzip one member, never holding more than the bound: a bomb is refused, not expanded."""
    if not is_gzip(data):
        raise InvalidEvent(Reason.ENVELOPE_INVALID, "not gzip")
    limit = min(MAX_INFLATED_BYTES, MAX_INFLATION_RATIO * len(data))
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer, CRC checked
    try:
        inflated = inflater.decompress(data, limit + 1)  # one byte more tells "past the bound"
    except zlib.error:
        raise InvalidEvent(Reason.ENVELOPE_INVALID, "not a valid gzip stream") from None
    if len(inflated) > limit:
        raise InvalidEvent(Reason.DECOMPRESSION_LIMIT, _past(limit, len(data)))
    if not inflater.eof:
        raise InvalidEvent(Reason.ENVELOPE_INVALID, "gzip stream is truncated")
    if inflater.unused_data:
        raise InvalidEvent(Reason.ENVELOPE_INVALID, "data after the gzip stream")
    return inflated


def _past(limit: int, compressed: int) -> str:
    if limit == MAX_INFLATED_BYTES:
        return f"inflates past {MAX_INFLATED_BYTES} bytes"
    return f"inflates past {MAX_INFLATION_RATIO} times its {compressed} bytes"


def _decode_envelope(document: bytes) -> _Envelope:
    try:
        return _envelope_decoder.decode(document)
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise InvalidEvent(Reason.ENVELOPE_INVALID, _detail(exc)) from None
    except RecursionError:
        # msgspec recurses even to skip a value it keeps raw, as for an unknown field
        raise InvalidEvent(Reason.TOO_DEEP, _TOO_DEEP) from None


def _decode_log_event(raw: msgspec.Raw, now: datetime) -> ResponseEvent | InvalidEvent:
    """One log event's line, or why it cannot count: returned, so the envelope's others still count."""
    try:
        return decode_access_log_line(_message(raw), now)
    except InvalidEvent as invalid:
        return invalid


def _message(raw: msgspec.Raw) -> str:
    try:
        return _log_event_decoder.decode(raw).message
    except (msgspec.DecodeError, UnicodeError) as exc:  # skipping it raw did not check its UTF-8
        raise InvalidEvent(Reason.LOG_EVENT_INVALID, _detail(exc)) from None
    except RecursionError:
        raise InvalidEvent(Reason.TOO_DEEP, _TOO_DEEP) from None
