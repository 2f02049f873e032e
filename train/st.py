"""The project's one safetensors reader/writer in Python (the format: 8-byte little-endian header
size, JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then raw
little-endian data). Used so the scripts need no `safetensors` package; files load with the real
library too.

    load_numpy(path)            numpy arrays (BF16 widened to float32), numpy only
    load_file(path)             torch tensors;  save_file(tensors, path, metadata)

The training scripts, the artifact tests (eval/tests) and the GPU benchmarks all use this module;
torch is imported only by the torch functions.
"""
import json
import struct

import numpy as np

_NUMPY = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1", "I8": "i1",
          "I16": "<i2", "BF16": "<u2"}
_WIDTH = {"F32": 4, "F16": 2, "BF16": 2, "I32": 4, "I64": 8, "U8": 1, "I8": 1, "I16": 2}


def read(path):
    """(header {name: {dtype, shape, data_offsets}}, metadata {str: str}, data bytes), checked:
    every tensor's byte range lies in the data and matches its dtype and shape."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: shorter than the 8-byte header size")
        n = struct.unpack("<Q", head)[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    for name, e in header.items():
        a, b = e["data_offsets"]
        if e["dtype"] not in _WIDTH:
            raise ValueError(f"{path}: tensor {name} has dtype {e['dtype']}, expected one of "
                             f"{', '.join(_WIDTH)}")
        count = int(np.prod(e["shape"], dtype=np.int64))
        if not (0 <= a <= b <= len(data)) or b - a != count * _WIDTH[e["dtype"]]:
            raise ValueError(f"{path}: tensor {name} has data_offsets [{a}, {b}], expected "
                             f"{count * _WIDTH[e['dtype']]} bytes inside the {len(data)} of data")
    return header, meta, data


def bf16_to_float32(bits):
    """uint16 bf16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def load_numpy(path, with_metadata=False):
    """{name: numpy array}; BF16 tensors come widened to float32."""
    header, meta, data = read(path)
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=_NUMPY[e["dtype"]])
        if e["dtype"] == "BF16":
            arr = bf16_to_float32(arr)
        out[name] = arr.reshape(e["shape"])
    return (out, meta) if with_metadata else out


def _torch_dtypes():
    import torch
    return {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
            torch.int32: "I32", torch.int64: "I64", torch.uint8: "U8", torch.int8: "I8",
            torch.int16: "I16"}


def _raw(t):
    import torch
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def save_file(tensors, path, metadata=None):
    """Writes {name: torch tensor} (sorted by name) and string metadata."""
    dtypes = _torch_dtypes()
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        b = _raw(t)
        header[name] = {"dtype": dtypes[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def load_file(path, with_metadata=False):
    """{name: torch tensor} (a copy that owns its memory), optionally with the metadata."""
    import torch
    by_name = {v: k for k, v in _torch_dtypes().items()}
    header, meta, data = read(path)
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        dt = by_name[e["dtype"]]
        buf = bytearray(data[a:b])
        if dt in (torch.bfloat16, torch.float16):
            t = torch.frombuffer(buf, dtype=torch.int16).view(dt) if b > a else torch.empty(0, dtype=dt)
        else:
            t = torch.frombuffer(buf, dtype=dt) if b > a else torch.empty(0, dtype=dt)
        out[name] = t.reshape(e["shape"]).clone()
    return (out, meta) if with_metadata else out
