"""A drop-in for `amazon_kclpy.kcl.KCLProcess` that decodes the MultiLangDaemon's lines with msgspec.

Same constructor, `run()`, processor API (v3 `RecordProcessorBase`, v1/v2 processors wrapped by
amazon_kclpy's own adapters), replies and error handling as amazon_kclpy 3.1.3 (`kclpy-ext`).
What changes is how a line becomes a message: amazon_kclpy runs `json.loads` with an object hook
that builds a message object per dict (each record eagerly converting its arrival time to a
`datetime`); here each line is decoded by msgspec straight into typed Structs, and a record's data
stays base64 until the processor reads `binary_data`.

Exactness by construction: the typed decoders accept only lines that are exactly what the daemon
sends (the known actions, the known fields, no unknown ones, the types the daemon writes). msgspec
is stricter than `json` (no NaN, no lone surrogates, no duplicate tags) and gives the same values
where both accept. Any line the fast path refuses is decoded by amazon_kclpy itself
(`json.loads(line, object_hook=dispatch.message_decode)`) and handled by the same code as the stock
process: unknown actions, malformed JSON, missing keys, odd types raise or behave exactly as there.
tests/functional/test_kcl_protocol.py drives both with the same lines and compares everything.

One deliberate difference: a record whose `approximateArrivalTimestamp` is null (the daemon's
`JsonFriendlyRecord` writes null when the KCL record has no arrival time) is delivered with
`timestamp_millis` and `approximate_arrival_timestamp` None. amazon_kclpy raises a TypeError on it
while decoding the line, outside any processor, so `run()` ends and the shard restarts on the same
records forever; here the processor gets them, and judges their time by its own clock.
"""

from __future__ import annotations

import json
import sys
import traceback
from binascii import a2b_base64
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, Protocol

import msgspec
from amazon_kclpy import dispatch as kcl_dispatch
from amazon_kclpy import messages as kcl_messages
from amazon_kclpy.checkpoint_error import CheckpointError
from amazon_kclpy.v2 import processor as v2processor
from amazon_kclpy.v3 import processor as v3processor

__all__ = ["CheckpointError", "Checkpointer", "KCLProcess", "Record"]

# Arrival times whose local `datetime` amazon_kclpy can always build (it does so for every record):
# outside this range its decoding may raise, so such a record takes the stock path and does the same.
_MAX_ARRIVAL_MILLIS = 253_370_764_800_000  # 9999-01-01T00:00:00Z
ArrivalMillis = Annotated[int, msgspec.Meta(ge=0, le=_MAX_ARRIVAL_MILLIS)]

_JSON_NAMES = {
    "data": "data",
    "partitionKey": "partition_key",
    "sequenceNumber": "sequence_number",
    "approximateArrivalTimestamp": "timestamp_millis",
    "subSequenceNumber": "sub_sequence_number",
    "action": "action",
}


class Record(msgspec.Struct, frozen=True, eq=False, gc=False, forbid_unknown_fields=True):
    """One record, as `amazon_kclpy.messages.Record` shows it: the same attributes and values."""

    data: str  # base64, as sent
    partition_key: str = msgspec.field(name="partitionKey")
    sequence_number: str = msgspec.field(name="sequenceNumber")
    # None: the daemon had no arrival time (see the module's docstring).
    timestamp_millis: ArrivalMillis | None = msgspec.field(name="approximateArrivalTimestamp")
    sub_sequence_number: int = msgspec.field(name="subSequenceNumber")
    # Required: amazon_kclpy's object hook turns every JSON object into the message its action names.
    action: Literal["record"]

    @property
    def binary_data(self) -> bytes:
        """The data, decoded at each access as amazon_kclpy does (`base64.b64decode` of a str is this)."""
        return a2b_base64(self.data)

    @property
    def approximate_arrival_timestamp(self) -> datetime | None:
        if self.timestamp_millis is None:
            return None
        return datetime.fromtimestamp(self.timestamp_millis / 1000.0)

    def get(self, field: str) -> Any:
        """A field by its protocol name (`record["sequenceNumber"]`), as amazon_kclpy's dict access."""
        return getattr(self, _JSON_NAMES[field])

    def __getitem__(self, field: str) -> Any:
        return self.get(field)


# Each action: `action` is the tag of the union (so it must be present) and a class attribute (so
# `.action` reads as on amazon_kclpy's messages); `dict=True` lets `dispatch` attach the checkpointer
# to the input, as amazon_kclpy does.


class InitializeInput(
    msgspec.Struct, tag_field="action", tag="initialize", forbid_unknown_fields=True, dict=True
):
    shard_id: str = msgspec.field(name="shardId")
    sequence_number: str | None = msgspec.field(name="sequenceNumber")
    sub_sequence_number: int | None = msgspec.field(name="subSequenceNumber")
    action: ClassVar[str] = "initialize"

    def dispatch(self, checkpointer: Checkpointer, record_processor: Any) -> None:
        record_processor.initialize(self)


class ProcessRecordsInput(
    msgspec.Struct, tag_field="action", tag="processRecords", forbid_unknown_fields=True, dict=True
):
    records: list[Record]
    millis_behind_latest: int | None = msgspec.field(name="millisBehindLatest")
    action: ClassVar[str] = "processRecords"
    checkpointer: ClassVar[Any] = None  # set on the instance at dispatch

    def dispatch(self, checkpointer: Checkpointer, record_processor: Any) -> None:
        self.checkpointer = checkpointer  # type: ignore[misc]
        record_processor.process_records(self)


class ShutdownRequestedInput(
    msgspec.Struct, tag_field="action", tag="shutdownRequested", forbid_unknown_fields=True, dict=True
):
    action: ClassVar[str] = "shutdownRequested"
    checkpointer: ClassVar[Any] = None

    def dispatch(self, checkpointer: Checkpointer, record_processor: Any) -> None:
        self.checkpointer = checkpointer  # type: ignore[misc]
        record_processor.shutdown_requested(self)


class ShardEndedInput(
    msgspec.Struct, tag_field="action", tag="shardEnded", forbid_unknown_fields=True, dict=True
):
    action: ClassVar[str] = "shardEnded"
    checkpointer: ClassVar[Any] = None

    def dispatch(self, checkpointer: Checkpointer, record_processor: Any) -> None:
        self.checkpointer = checkpointer  # type: ignore[misc]
        record_processor.shard_ended(self)


class LeaseLostInput(
    msgspec.Struct, tag_field="action", tag="leaseLost", forbid_unknown_fields=True, dict=True
):
    action: ClassVar[str] = "leaseLost"  # no checkpointer: the lease is gone

    def dispatch(self, checkpointer: Checkpointer, record_processor: Any) -> None:
        record_processor.lease_lost(self)


class _CheckpointReply(msgspec.Struct, forbid_unknown_fields=True):
    """The daemon's answer to a checkpoint request (`amazon_kclpy.messages.CheckpointInput`)."""

    action: Literal["checkpoint"]
    sequence_number: str | None = msgspec.field(name="sequenceNumber")
    sub_sequence_number: int | None = msgspec.field(name="subSequenceNumber")
    error: str | None = None


_Message = InitializeInput | ProcessRecordsInput | ShutdownRequestedInput | ShardEndedInput | LeaseLostInput
_decode_message = msgspec.json.Decoder(_Message).decode
_decode_checkpoint_reply = msgspec.json.Decoder(_CheckpointReply).decode


def _stock_decode(line: Any) -> Any:
    """amazon_kclpy's own decoding: for every line the typed decoders refuse."""
    return json.loads(line, object_hook=kcl_dispatch.message_decode)


class LineReader(Protocol):
    """Where the daemon's lines come from (`sys.stdin`)."""

    def readline(self) -> Any: ...


class TextWriter(Protocol):
    """Where replies (`sys.stdout`) and errors (`sys.stderr`) go."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


class _IOHandler:
    """amazon_kclpy's `_IOHandler`: the same reads and writes, with the fast decoding."""

    def __init__(self, input_file: LineReader, output_file: TextWriter, error_file: TextWriter) -> None:
        self.input_file = input_file
        self.output_file = output_file
        self.error_file = error_file

    def write_line(self, line: str) -> None:
        # Framed by newlines, as amazon_kclpy does, in case something else wrote to the same stream.
        self.output_file.write(f"\n{line}\n")
        self.output_file.flush()

    def write_error(self, error_message: str) -> None:
        self.error_file.write(f"{error_message}\n")
        self.error_file.flush()

    def read_line(self) -> Any:
        return self.input_file.readline()

    def load_action(self, line: Any) -> Any:
        try:
            return _decode_message(line)
        except Exception:  # anything else the daemon could write: amazon_kclpy decides
            return _stock_decode(line)

    def load_checkpoint_reply(self, line: Any) -> Any:
        try:
            return _decode_checkpoint_reply(line)
        except Exception:
            return _stock_decode(line)

    def write_action(self, response: dict[str, Any]) -> None:
        self.write_line(json.dumps(response))


class Checkpointer:
    """amazon_kclpy's `Checkpointer`: request a checkpoint, then read the daemon's reply from the input.

    An `error` in the reply raises `CheckpointError(error)`; any other message instead of a
    checkpoint reply raises `CheckpointError("InvalidStateException")`; a line that cannot be decoded
    raises what amazon_kclpy's decoding raises.
    """

    def __init__(self, io_handler: _IOHandler) -> None:
        self.io_handler = io_handler

    def _get_action(self) -> Any:
        return self.io_handler.load_checkpoint_reply(self.io_handler.read_line())

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        response = {
            "action": "checkpoint",
            "sequenceNumber": sequence_number,
            "subSequenceNumber": sub_sequence_number,
        }
        self.io_handler.write_action(response)
        action = self._get_action()
        if isinstance(action, _CheckpointReply | kcl_messages.CheckpointInput):
            if action.error is not None:
                raise CheckpointError(action.error)
        else:
            # Not a checkpoint reply: amazon_kclpy reports an invalid state (not retryable).
            raise CheckpointError("InvalidStateException")


class KCLProcess:
    """Runs a record processor against the MultiLangDaemon's protocol on the given files."""

    def __init__(
        self,
        record_processor: Any,
        input_file: LineReader = sys.stdin,
        output_file: TextWriter = sys.stdout,
        error_file: TextWriter = sys.stderr,
    ) -> None:
        self.io_handler = _IOHandler(input_file, output_file, error_file)
        self.checkpointer = Checkpointer(self.io_handler)
        if record_processor.version == 2:
            self.processor = v3processor.V2toV3Processor(record_processor)
        elif record_processor.version == 1:
            self.processor = v3processor.V2toV3Processor(v2processor.V1toV2Processor(record_processor))
        else:
            self.processor = record_processor

    def _perform_action(self, action: Any) -> None:
        """Dispatch to the processor; like amazon_kclpy, report its errors on stderr and carry on."""
        try:
            action.dispatch(self.checkpointer, self.processor)
        except SystemExit:
            raise
        except Exception as ex:
            error_file = self.io_handler.error_file
            error_file.write(f"Caught exception from action dispatch: {ex!s}")
            traceback.print_exc(file=error_file)
            error_file.flush()

    def _report_done(self, response_for: Any = None) -> None:
        self.io_handler.write_action({"action": "status", "responseFor": response_for})

    def _handle_a_line(self, line: Any) -> None:
        action = self.io_handler.load_action(line)
        self._perform_action(action)
        self._report_done(action.action)

    def run(self) -> None:
        """Handle lines until the input ends; decoding and I/O errors propagate, as in amazon_kclpy."""
        read_line = self.io_handler.read_line
        handle = self._handle_a_line
        line = read_line()
        while line:
            handle(line)
            line = read_line()
