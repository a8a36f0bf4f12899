"""Writes safetensors files for the converters in tools/ (shared by both),
and reads back the float32 ones this project writes (read_safetensors).

The layout Restyle's C++ reader expects: 8-byte little-endian header length,
JSON header {name: {dtype, shape, data_offsets}} with "__metadata__" (string
values), padded with spaces to a multiple of 8, then the raw little-endian
data, tensors sorted by name. Written to a temporary file, then renamed.
"""
import json
import os
import struct

import torch

DTYPES = {
    torch.float32: ("F32", 4),
    torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2),
    torch.float64: ("F64", 8),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
    torch.uint8: ("U8", 1),
}


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in DTYPES:
            raise SystemExit(f"{name}: unsupported dtype {t.dtype}")
        code, size = DTYPES[t.dtype]
        # Raw little-endian bytes via a byte view (works for fp16/bf16 too).
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        assert len(data) == t.numel() * size
        header[name] = {"dtype": code, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as out:
        out.write(struct.pack("<Q", len(text)))
        out.write(text)
        for data in blobs:
            out.write(data)
    os.replace(tmp, path)


def read_safetensors(path):
    """The tensors of a safetensors file of float32 tensors, by name."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}, expected F32")
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"]).clone()
    return out
