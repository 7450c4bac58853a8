"""Google's original TensorFlow BERT checkpoints, read without TensorFlow.

A TF checkpoint `bert_model.ckpt` is two kinds of file:

* `bert_model.ckpt.index`: a LevelDB table (an "SSTable") mapping each variable name to a
  serialized `BundleEntryProto` (dtype, shape, which data shard, byte offset, byte size, crc32c).
  The empty name "" maps to a `BundleHeaderProto` (number of shards, endianness).
* `bert_model.ckpt.data-00000-of-00001` (one file per shard): the tensors' raw bytes, back to back.

This module decodes both by hand (LevelDB's table format, protobuf's wire format and crc32c), then
renames Google's variables to Hugging Face's names, which are minilth's:

    state = load_tf_state_dict("uncased_L-12_H-768_A-12/bert_model.ckpt")
    state["bert.encoder.layer.0.attention.self.query.weight"]  # (768, 768), kernel transposed
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError

log = logging.getLogger("minilth")

# ---------------------------------------------------------------------------------------------
# crc32c (Castagnoli), as TF and LevelDB use it

CRC32C_POLY = 0x82F63B78  # reflected Castagnoli polynomial
CRC_MASK_DELTA = 0xA282EAD8
FAST_CRC_MIN_BYTES = 1024  # below this the plain byte loop is fast enough


def _make_byte_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint32)  # (256,)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(CRC32C_POLY), table >> 1).astype(np.uint32)
    return table


CRC_TABLE = _make_byte_table()  # (256,): the crc register after one byte, for each register low byte
_CRC_TABLE_LIST = [int(x) for x in CRC_TABLE]


def _crc_update_slow(state: int, data: bytes | memoryview) -> int:
    """The textbook byte-at-a-time loop; the reference that the fast path must agree with."""
    table = _CRC_TABLE_LIST
    for byte in bytes(data):
        state = table[(state ^ byte) & 0xFF] ^ (state >> 8)
    return state


# A crc is linear over GF(2): crc(state, A + B) = shift_|B|(crc(state, A)) ^ crc(0, B), where
# shift_n(s) is the register after feeding n zero bytes from state s. That lets us cut a tensor
# into K equal lanes, run all K byte loops at once as numpy vector operations, then fold the
# lanes pairwise with shift operators. BERT-base's 440 MB check takes seconds this way instead of
# the minutes a Python byte loop would need.
#
# A linear map of the 32-bit register is stored as four 256-entry tables, one per register byte:
# op(s) = T[0][s & 255] ^ T[1][(s >> 8) & 255] ^ T[2][(s >> 16) & 255] ^ T[3][s >> 24].


def _apply(op: np.ndarray, state: np.ndarray) -> np.ndarray:
    """Applies a linear register map (4, 256) to an array of registers."""
    state = state.astype(np.uint32)
    return (op[0][state & 0xFF] ^ op[1][(state >> 8) & 0xFF]
            ^ op[2][(state >> 16) & 0xFF] ^ op[3][state >> 24])


@lru_cache(maxsize=None)
def _zero_byte_op() -> np.ndarray:
    """The register map of feeding one zero byte, as (4, 256) tables."""
    values = np.arange(256, dtype=np.uint32)
    basis = np.stack([values << np.uint32(8 * k) for k in range(4)])  # (4, 256) registers
    return CRC_TABLE[basis & 0xFF] ^ (basis >> 8)


def _shift_op(n_bytes: int) -> np.ndarray:
    """The register map of feeding n_bytes zero bytes, by binary exponentiation of the one-byte map."""
    result = None
    power = _zero_byte_op()
    while n_bytes:
        if n_bytes & 1:
            result = power if result is None else _apply(power, result)
        n_bytes >>= 1
        if n_bytes:
            power = _apply(power, power)
    return result


def _crc_update(state: int, data: bytes | memoryview) -> int:
    """Returns the raw crc register after feeding data from the given register state."""
    n = len(data)
    if n < FAST_CRC_MIN_BYTES:
        return _crc_update_slow(state, data)
    lanes = 1 << min(16, (n // 16).bit_length() - 1)  # K: a power of two, at least 16 bytes per lane
    lane_len = n // lanes
    body = np.frombuffer(data, dtype=np.uint8, count=lanes * lane_len)
    columns = body.reshape(lanes, lane_len).T.copy()  # (lane_len, K): row i = byte i of every lane
    registers = np.zeros(lanes, dtype=np.uint32)  # (K,)
    registers[0] = state  # only the first lane starts from the running state; the others from 0
    for row in columns:
        registers = CRC_TABLE[(registers ^ row) & 0xFF] ^ (registers >> 8)
    op = _shift_op(lane_len)
    while len(registers) > 1:  # fold neighbours: (left, right) -> shift(left) ^ right
        registers = _apply(op, registers[0::2]) ^ registers[1::2]
        op = _apply(op, op)  # lanes are now twice as long
    return _crc_update(int(registers[0]), memoryview(data)[lanes * lane_len:])


def crc32c(data: bytes | memoryview) -> int:
    """Returns the crc32c (Castagnoli) of the bytes, as Python int; crc32c(b"123456789") == 0xE3069283."""
    return _crc_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Returns the plain crc32c from TF's/LevelDB's stored ("masked") form."""
    rotated = (masked - CRC_MASK_DELTA) & 0xFFFFFFFF
    return ((rotated >> 17) | (rotated << 15)) & 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    """Returns the masked crc TF stores: a crc of data that embeds crcs must not look like one."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + CRC_MASK_DELTA) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------------------
# protobuf wire format, just enough for BundleEntryProto and BundleHeaderProto


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    """Returns (value, next position) of the base-128 varint at pos."""
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _parse_fields(buf: bytes | memoryview) -> list[tuple[int, int | bytes]]:
    """Returns the (field number, value) pairs of a protobuf message: ints for varint and fixed fields, bytes for
    length-delimited ones."""
    fields, pos = [], 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:  # varint
            value, pos = _read_varint(buf, pos)
        elif wire_type == 1:  # fixed64
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire_type == 2:  # length-delimited: bytes, strings, sub-messages
            length, pos = _read_varint(buf, pos)
            value, pos = bytes(buf[pos:pos + length]), pos + length
        elif wire_type == 5:  # fixed32
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")
        if pos > len(buf):
            raise ValueError("truncated protobuf field")
        fields.append((number, value))
    return fields


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value  # two's complement, as protobuf encodes int64


@dataclass
class TensorEntry:
    """Where one tensor lives: a decoded BundleEntryProto."""

    dtype: int = 0  # TF DataType enum
    shape: tuple[int, ...] = ()
    shard_id: int = 0
    offset: int = 0
    size: int = 0  # bytes
    crc32c: int | None = None  # masked, as stored
    sliced: bool = False  # a partitioned variable, stored as slices under other keys
    raw_fields: list = field(default_factory=list, repr=False)


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 {int64 size = 1}; unknown_rank = 3."""
    dims = []
    for number, value in _parse_fields(buf):
        if number == 2:
            sizes = [_int64(v) for n, v in _parse_fields(value) if n == 1]
            dims.append(sizes[0] if sizes else 0)
    return tuple(dims)


def parse_bundle_entry(buf: bytes) -> TensorEntry:
    """Returns the TensorEntry of a serialized BundleEntryProto."""
    entry = TensorEntry(raw_fields=_parse_fields(buf))
    for number, value in entry.raw_fields:
        if number == 1:
            entry.dtype = value
        elif number == 2:
            entry.shape = _parse_shape(value)
        elif number == 3:
            entry.shard_id = value
        elif number == 4:
            entry.offset = _int64(value)
        elif number == 5:
            entry.size = _int64(value)
        elif number == 6:
            entry.crc32c = value
        elif number == 7:
            entry.sliced = True
    return entry


def parse_bundle_header(buf: bytes) -> dict:
    """Returns {"num_shards", "big_endian"} from a serialized BundleHeaderProto."""
    header = {"num_shards": 1, "big_endian": False}
    for number, value in _parse_fields(buf):
        if number == 1:
            header["num_shards"] = value
        elif number == 2:
            header["big_endian"] = value == 1  # enum Endianness {LITTLE = 0; BIG = 1}
    return header


# ---------------------------------------------------------------------------------------------
# the LevelDB table (SSTable) of the .index file

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_LEN = 48  # two block handles padded to 40 bytes, then the 8-byte magic
BLOCK_TRAILER_LEN = 5  # compression type byte + masked crc32c of (contents + type byte)
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1


def _read_block_handle(buf: bytes | memoryview, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _read_varint(buf, pos)
    size, pos = _read_varint(buf, pos)
    return (offset, size), pos


def _read_block(table: bytes, handle: tuple[int, int]) -> memoryview:
    """Returns the contents of one table block, its crc checked."""
    offset, size = handle
    end = offset + size + BLOCK_TRAILER_LEN
    if end > len(table):
        raise ValueError(f"a block ends at byte {end}, past the end of the file ({len(table)} bytes)")
    contents = memoryview(table)[offset:offset + size]
    compression = table[offset + size]
    stored_crc = int.from_bytes(table[offset + size + 1:end], "little")
    if crc32c(table[offset:offset + size + 1]) != unmask_crc(stored_crc):
        raise ValueError(f"block at byte {offset} fails its crc32c check")
    if compression != NO_COMPRESSION:
        kind = "snappy" if compression == SNAPPY_COMPRESSION else f"type {compression}"
        raise ValueError(f"block at byte {offset} is {kind}-compressed, which minilth does not read "
                         f"(TF writes checkpoint indexes uncompressed)")
    return contents


def _block_entries(block: memoryview) -> list[tuple[bytes, memoryview]]:
    """Returns the (key, value) pairs of a block.

    Keys are prefix-compressed: each entry stores how many bytes it shares with the previous
    key, then the rest. The block ends with the restart-point offsets (where a key is stored
    whole, for binary search) and their count; reading every entry in order does not need them.
    """
    if len(block) < 4:
        raise ValueError("a block is shorter than its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    entries_end = len(block) - 4 - 4 * num_restarts
    if entries_end < 0:
        raise ValueError("a block's restart array is larger than the block")
    entries, key, pos = [], b"", 0
    while pos < entries_end:
        shared, pos = _read_varint(block, pos)
        unshared, pos = _read_varint(block, pos)
        value_len, pos = _read_varint(block, pos)
        if shared > len(key) or pos + unshared + value_len > entries_end:
            raise ValueError("a block entry runs past its block")
        key = key[:shared] + bytes(block[pos:pos + unshared])
        pos += unshared
        entries.append((key, block[pos:pos + value_len]))
        pos += value_len
    return entries


def read_sstable(table: bytes) -> dict[bytes, bytes]:
    """Returns every key -> value of a LevelDB table held in memory."""
    if len(table) < FOOTER_LEN:
        raise ValueError(f"only {len(table)} bytes, shorter than a table footer")
    footer = memoryview(table)[-FOOTER_LEN:]
    magic = int.from_bytes(footer[-8:], "little")
    if magic != TABLE_MAGIC:
        raise ValueError(f"bad table magic {magic:#018x} (expected {TABLE_MAGIC:#018x})")
    _metaindex, pos = _read_block_handle(footer, 0)
    index_handle, _ = _read_block_handle(footer, pos)
    result = {}
    for _, handle_bytes in _block_entries(_read_block(table, index_handle)):
        data_handle, _ = _read_block_handle(handle_bytes, 0)
        for key, value in _block_entries(_read_block(table, data_handle)):
            result[key] = bytes(value)
    return result


# ---------------------------------------------------------------------------------------------
# reading a checkpoint

# TF DataType enum -> numpy dtype of the stored bytes (little-endian)
TF_DTYPES = {
    1: np.float32,  # DT_FLOAT
    2: np.float64,  # DT_DOUBLE
    3: np.int32,  # DT_INT32
    4: np.uint8,  # DT_UINT8
    5: np.int16,  # DT_INT16
    6: np.int8,  # DT_INT8
    9: np.int64,  # DT_INT64
    10: np.bool_,  # DT_BOOL
    14: np.uint16,  # DT_BFLOAT16: numpy has no bfloat16; the top half of a float32, widened below
    17: np.uint16,  # DT_UINT16
    19: np.float16,  # DT_HALF
    22: np.uint32,  # DT_UINT32
    23: np.uint64,  # DT_UINT64
}
DT_BFLOAT16 = 14


def _normalize_prefix(prefix: str | Path) -> Path:
    """Accepts the prefix itself, its .index file, or a folder holding bert_model.ckpt.index."""
    path = Path(prefix).expanduser()
    if path.is_dir():
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise CheckpointError(f"{path} holds {len(indexes)} .index files; pass the checkpoint prefix, "
                                  f"e.g. {path}/bert_model.ckpt")
        path = indexes[0]
    return path.with_suffix("") if path.suffix == ".index" else path


def read_tf_index(prefix: str | Path) -> tuple[dict, dict[str, TensorEntry]]:
    """Returns (header, {variable name: TensorEntry}) from `<prefix>.index`."""
    prefix = _normalize_prefix(prefix)
    index_file = Path(f"{prefix}.index")
    if not index_file.is_file():
        raise CheckpointError(f"no TF checkpoint index {index_file}: pass the prefix (e.g. "
                              f"folder/bert_model.ckpt) of a checkpoint whose .index file exists")
    try:
        table = read_sstable(index_file.read_bytes())
        header = parse_bundle_header(table.pop(b"", b""))
        entries = {}
        for key, value in table.items():
            if key.startswith(b"\x00"):  # the slices of a partitioned variable, keyed by binary codes
                continue
            entries[key.decode("utf-8")] = parse_bundle_entry(value)
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{index_file} is not a readable TF checkpoint index: {error}") from None
    return header, entries


def _data_file(prefix: Path, shard: int, num_shards: int) -> Path:
    return Path(f"{prefix}.data-{shard:05d}-of-{num_shards:05d}")


def _decode_tensor(name: str, entry: TensorEntry, raw: bytes, big_endian: bool) -> np.ndarray:
    """Returns the tensor of one entry's raw bytes; bfloat16 is widened (exactly) to float32."""
    dtype = np.dtype(TF_DTYPES[entry.dtype])
    if big_endian:
        dtype = dtype.newbyteorder(">")
    count = int(np.prod(entry.shape, dtype=np.int64))
    if count * dtype.itemsize != len(raw):
        raise CheckpointError(f"TF checkpoint tensor {name}: {len(raw)} bytes for shape {entry.shape} "
                              f"of {dtype}; the checkpoint is corrupt")
    array = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=True).reshape(entry.shape)
    if entry.dtype == DT_BFLOAT16:
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def read_tf_checkpoint(prefix: str | Path, names: list[str] | None = None,
                       verify_crc: bool = True) -> dict[str, np.ndarray]:
    """Returns {TF variable name: numpy array} of a TF checkpoint, without TensorFlow.

    `prefix` is what TF calls the checkpoint (folder/bert_model.ckpt; its .index file or its
    folder also work). `names` limits reading to those variables. Each tensor's crc32c is
    checked against the index (a few seconds for BERT-base); verify_crc=False skips it.
    """
    prefix = _normalize_prefix(prefix)
    header, entries = read_tf_index(prefix)
    wanted = entries if names is None else {n: entries[n] for n in names if n in entries}
    missing = [n for n in names or () if n not in entries]
    if missing:
        raise CheckpointError(f"{prefix}: no variable {missing[0]!r} in the checkpoint")
    handles = {}
    try:
        tensors = {}
        for name, entry in wanted.items():
            if entry.sliced:
                raise CheckpointError(f"{prefix}: {name} is a partitioned variable, which minilth does not read")
            if entry.dtype not in TF_DTYPES:
                raise CheckpointError(f"{prefix}: {name} has TF dtype {entry.dtype}, which minilth does not read")
            shard = _data_file(prefix, entry.shard_id, header["num_shards"])
            if shard not in handles:
                if not shard.is_file():
                    raise CheckpointError(f"missing TF checkpoint data file {shard}: download the checkpoint again")
                handles[shard] = open(shard, "rb")
            raw = _read_exactly(handles[shard], shard, name, entry)
            if verify_crc and entry.crc32c is not None and crc32c(raw) != unmask_crc(entry.crc32c):
                raise CheckpointError(f"{shard}: tensor {name} fails its crc32c check; the file is corrupt, "
                                      f"download the checkpoint again")
            tensors[name] = _decode_tensor(name, entry, raw, header["big_endian"])
    finally:
        for handle in handles.values():
            handle.close()
    return tensors


def _read_exactly(handle, shard: Path, name: str, entry: TensorEntry) -> bytes:
    handle.seek(entry.offset)
    raw = handle.read(entry.size)
    if len(raw) != entry.size:
        raise CheckpointError(f"{shard} is truncated: tensor {name} needs bytes {entry.offset}..."
                              f"{entry.offset + entry.size}, the file ends earlier; download the checkpoint again")
    return raw


# ---------------------------------------------------------------------------------------------
# Google's names -> Hugging Face's names

# optimizer slots and training bookkeeping: saved during training, never model weights
TRAINING_STATE_PARTS = {"adam_m", "adam_v", "Adam", "Adam_1", "Momentum", "AdamWeightDecayOptimizer",
                        "AdamWeightDecayOptimizer_1", "ExponentialMovingAverage"}
TRAINING_STATE_NAMES = {"global_step", "bad_steps", "good_steps", "loss_scale", "current_loss_scale"}
RENAMED_PARTS = {"kernel": "weight", "gamma": "weight", "beta": "bias",
                 "output_weights": "weight", "output_bias": "bias"}


def is_training_state(tf_name: str) -> bool:
    """Returns True for optimizer slots (adam_m, adam_v, ...) and bookkeeping (global_step, ...)."""
    parts = tf_name.split("/")
    return parts[-1] in TRAINING_STATE_NAMES or any(p in TRAINING_STATE_PARTS for p in parts)


def tf_to_hf_name(tf_name: str) -> str | None:
    """Returns the Hugging Face name of a Google BERT variable, or None for one to skip.

    bert/encoder/layer_3/attention/self/query/kernel -> bert.encoder.layer.3.attention.self.query.weight;
    cls/predictions/output_bias -> cls.predictions.bias; run_classifier's top-level
    output_weights/output_bias -> classifier.*; run_squad's cls/squad/* -> qa_outputs.*.
    Optimizer slots, global_step and names outside BERT's scopes give None.
    """
    parts = tf_name.split("/")
    if is_training_state(tf_name):
        return None
    if parts in (["output_weights"], ["output_bias"]):
        parts = ["classifier"] + parts
    elif parts[:2] == ["cls", "squad"]:
        parts = ["qa_outputs"] + parts[2:]
    elif parts[0] not in ("bert", "cls"):
        return None
    renamed = []
    for part in parts:
        layer = re.fullmatch(r"layer_(\d+)", part)
        renamed += ["layer", layer.group(1)] if layer else [RENAMED_PARTS.get(part, part)]
    if renamed[-1].endswith("_embeddings"):  # an embedding table is a variable, in torch a module's .weight
        renamed.append("weight")
    return ".".join(renamed)


def needs_transpose(tf_name: str) -> bool:
    """Returns True for dense kernels: TF stores them (in, out), torch's Linear weight is (out, in)."""
    return tf_name.endswith("/kernel")


def load_tf_state_dict(prefix: str | Path, verify_crc: bool = True) -> dict[str, torch.Tensor]:
    """Returns the Hugging Face-named float32 state dict of a Google BERT TF checkpoint.

    Kernels are transposed to torch's (out, in); optimizer slots and global_step are skipped;
    any other variable that is not BERT's is skipped with a warning naming it.
    """
    _, entries = read_tf_index(prefix)
    mapping = {name: tf_to_hf_name(name) for name in entries}
    unknown = [name for name, hf in mapping.items() if hf is None and not is_training_state(name)]
    if unknown:
        log.warning("%s: skipped variables that are not BERT's: %s", prefix, ", ".join(sorted(unknown)))
    wanted = [name for name, hf in mapping.items() if hf is not None]
    if not wanted:
        raise CheckpointError(f"{prefix}: no Google BERT variables (bert/..., cls/...) in this checkpoint; "
                              f"TF2 object-based checkpoints are not supported")
    arrays = read_tf_checkpoint(prefix, names=wanted, verify_crc=verify_crc)
    state = {}
    for name in wanted:
        array = arrays.pop(name)  # pop: hold each tensor once, not twice
        if needs_transpose(name):
            array = array.T
        state[mapping[name]] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return state
