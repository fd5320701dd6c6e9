#!/usr/bin/env python3
"""Reduces the WordLlama model to the form memes ships in data/semantic/.

Run once by a maintainer, never by the build (the output is committed):

    pip download --no-deps wordllama==0.4.0.post1 -d /tmp/wl
    python3 scripts/semantic-model.py /tmp/wl/wordllama-0.4.0.post1-*.whl [DIMS]

From the wheel's static token embeddings (32000 x 256, f16) it keeps the first DIMS
dimensions (default 64; WordLlama trains them to be truncated this way) and quantises each
row to int8 with its own scale, which keeps the file at about 2 MB. From the tokenizer JSON it
keeps what a BPE tokenizer reads (the vocabulary and the merges, in a binary form memesd
loads without parsing JSON), after checking that the rest is the configuration memes
implements. It also copies the wheel's licence. Standard library only.
"""

import json
import struct
import sys
import zipfile
from pathlib import Path

WEIGHTS = "wordllama/weights/l2_supercat_256.safetensors"
TOKENIZER = "wordllama/tokenizers/l2_supercat_tokenizer_config.json"
OUT = Path(__file__).resolve().parent.parent / "data" / "semantic"


def main() -> None:
    wheel = zipfile.ZipFile(sys.argv[1])
    dims = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    OUT.mkdir(parents=True, exist_ok=True)

    raw = wheel.read(WEIGHTS)
    (header_len,) = struct.unpack_from("<Q", raw)
    header = json.loads(raw[8 : 8 + header_len])["embedding.weight"]
    assert header["dtype"] == "F16", header
    rows, width = header["shape"]
    assert dims <= width
    start = 8 + header_len + header["data_offsets"][0]
    values = struct.unpack_from(f"<{rows * width}e", raw, start)

    quantised = bytearray()
    scales = bytearray()
    for row in range(rows):
        kept = values[row * width : row * width + dims]
        scale = max(abs(v) for v in kept) / 127 or 1.0
        quantised += bytes(
            max(-127, min(127, round(v / scale))) & 0xFF for v in kept
        )
        scales += struct.pack("<f", scale)
    with open(OUT / "embeddings.bin", "wb") as out:
        out.write(b"MEMESEM1")
        out.write(struct.pack("<II", rows, dims))
        out.write(quantised)
        out.write(scales)

    tokenizer = json.loads(wheel.read(TOKENIZER))
    model = tokenizer["model"]
    # The only configuration src/catalogue/semantic/tokenizer.rs implements.
    assert tokenizer["normalizer"] == {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ],
    }, tokenizer["normalizer"]
    assert tokenizer["pre_tokenizer"] is None
    assert model["type"] == "BPE" and model["byte_fallback"], model["type"]
    vocab = model["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    assert [vocab[t] for t in tokens] == list(range(len(tokens))) and len(tokens) < 65536
    # The tokenizer as memesd loads it without parsing JSON: the tokens in id order (u16
    # byte length, UTF-8), then the merges in rank order (left, right, merged ids; u16 each).
    out = bytearray(b"MEMESTK1")
    out += struct.pack("<II", len(tokens), len(model["merges"]))
    for token in tokens:
        raw = token.encode()
        out += struct.pack("<H", len(raw)) + raw
    for merge in model["merges"]:
        left, right = merge.split(" ")
        out += struct.pack("<HHH", vocab[left], vocab[right], vocab[left + right])
    (OUT / "tokenizer.bin").write_bytes(out)

    licence = next(n for n in wheel.namelist() if n.endswith("licenses/LICENSE"))
    (OUT / "LICENSE").write_bytes(wheel.read(licence))


if __name__ == "__main__":
    main()
