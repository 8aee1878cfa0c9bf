"""An offline W&B run read back from its ``.wandb`` file (wandb 0.31 has no reader of its own)."""

from __future__ import annotations

import glob
import json
import struct
import time
from pathlib import Path

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log: 32 KiB blocks of framed chunks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def run_file_records(path: Path):
    """Every protobuf Record in a .wandb file (7-byte file header, 7-byte chunk headers)."""
    from wandb.proto.wandb_internal_pb2 import Record

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (FULL, FIRST):
            pending = chunk
        elif kind in (MIDDLE, LAST):
            pending += chunk
        if kind in (FULL, LAST):
            record = Record()
            record.ParseFromString(pending)
            yield record


def read_run(directory: Path, timeout: float = 60.0) -> list:
    """Records of the single offline run, once its exit record has been flushed."""
    deadline = time.monotonic() + timeout
    while True:
        files = glob.glob(str(directory / "wandb" / "offline-run-*" / "run-*.wandb"))
        if files:
            records = list(run_file_records(Path(files[0])))
            if any(r.WhichOneof("record_type") == "exit" for r in records):
                return records
        assert time.monotonic() < deadline, "the offline run never wrote its exit record"
        time.sleep(0.2)


def history_rows(records) -> list[dict]:
    rows = []
    for r in records:
        if r.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item})
    return rows
