#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer-reference.jsonl: token ids that the reference Hugging Face
`tokenizers` library gives for many texts, which the unit tests of
src/catalogue/semantic/tokenizer.rs compare with memes' own tokenizer.

Needs `tokenizers` (pip install into a venv); only maintainers run it, never the build:

    python3 tests/generators/tokenizer_reference.py path/to/l2_supercat_tokenizer_config.json
"""

import json
import sys
from pathlib import Path

from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent.parent

TRICKY = [
    "",
    " ",
    "   ",
    "a",
    "dog",
    " leading space",
    "trailing space ",
    "two  spaces   three",
    "tab\tand\nnewline",
    "CAPITALS and MiXeD case",
    "don't can't won't it's",
    "numbers 12345 and 3.14159 and 1,000,000",
    "punctuation!!! ??? ... --- (brackets) [square] {curly}",
    "café naïve façade résumé",
    "Zürich Straße Ærø",
    "日本語のテキスト",
    "中文文本测试",
    "emoji 🐶🔥☕ fire dog",
    "mixed 🇺🇸 flag and 👨‍👩‍👧 family",
    "Ελληνικά και русский текст",
    "עברית וערבית العربية",
    "zero\u200bwidth space",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "the the the the the",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    # Not "<s>" and the like: the reference reads them as control tokens, memes (on
    # purpose: they are a user's text) as text.
    "<0x41> looks like a byte token",
    "dog sitting in a burning room saying everything is okay",
    "employee thrown out of the window for a sensible idea in a meeting",
    "▁already▁has▁the▁marker",
    "x" * 256,
]


def main() -> None:
    tokenizer = Tokenizer.from_file(sys.argv[1])
    catalogue = json.loads((ROOT / "data" / "catalogue.json").read_text())
    texts = list(TRICKY)
    for meme in catalogue["memes"]:
        texts.append(meme["title"])
        texts.append(" ".join(meme["tags"]))
        if meme.get("description"):
            texts.append(meme["description"])
    with open(ROOT / "tests" / "fixtures" / "tokenizer-reference.jsonl", "w") as out:
        for text in texts:
            ids = tokenizer.encode(text, add_special_tokens=False).ids
            out.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
