"""Generate the malformed-data corpus: one small file per way a table can be broken.

Run ``python tests/data/malformed/make_corpus.py [OUT_DIR]`` (default: this folder). The
output is deterministic (seeded, written byte by byte), so the committed files equal what
this script writes; ``tests/unit/validation/test_corpus.py`` checks that.

Outputs: ``good.csv`` (200 clean rows: numeric ``amount`` and ``age``, categorical ``city``
and ``channel``, a learnable but not leaked binary ``label``), ``schema.json`` (the schema
inferred from ``good.csv``), one file per case, and ``cases.json`` listing each case as
``{"file", "target", "schema", "check", "severity", "column"}``: the anomaly
``kfgpu.validation.validate`` (or the ``.check`` of the ``DataError`` that
``kfgpu.data.read_table`` raises) must report for it.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SEED = 20240501
N_ROWS = 200
TARGET = "label"
COLUMNS = ("amount", "age", "city", "channel", "label")
CITIES = ("Berlin", "Lisbon", "Madrid", "Oslo", "Paris")
CHANNELS = ("app", "pos", "web")
WORDS = ("seven", "twelve", "forty", "ninety", "a lot", "few", "unknown")

Row = dict[str, str]


def good_rows() -> list[Row]:
    """200 clean rows, each value already formatted as CSV text."""
    rng = np.random.default_rng(SEED)
    amount = np.round(np.exp(rng.normal(3.5, 0.8, N_ROWS)), 2)
    age = rng.integers(18, 80, N_ROWS)
    city = rng.integers(0, len(CITIES), N_ROWS)
    channel = rng.integers(0, len(CHANNELS), N_ROWS)
    noise = rng.logistic(0.0, 1.0, N_ROWS)
    city_effect = np.array([0.4, -0.3, 0.0, -0.5, 0.3])
    score = 1.2 * (np.log(amount) - 3.5) / 0.8 + 0.03 * (age - 48) + city_effect[city]
    label = (score + noise > 0).astype(int)
    return [
        {
            "amount": f"{amount[i]:.2f}",
            "age": str(int(age[i])),
            "city": CITIES[city[i]],
            "channel": CHANNELS[channel[i]],
            "label": str(int(label[i])),
        }
        for i in range(N_ROWS)
    ]


def to_csv(rows: list[Row], columns: tuple[str, ...] | list[str]) -> bytes:
    """CSV bytes with ``\\n`` line ends; values are written as they are (no quoting)."""
    lines = [",".join(columns)] + [",".join(r[c] for c in columns) for r in rows]
    return ("\n".join(lines) + "\n").encode("utf-8")


def edit(rows: list[Row], change: Callable[[int, Row], Row]) -> list[Row]:
    return [change(i, dict(r)) for i, r in enumerate(rows)]


def tiny_png() -> bytes:
    """A valid 8x8 grey PNG, its pixels stored uncompressed (deflate 'stored' block)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + bytes(range(y * 8, y * 8 + 8)) for y in range(8))
    stored = b"\x01" + struct.pack("<HH", len(raw), len(raw) ^ 0xFFFF) + raw
    idat = b"\x78\x01" + stored + struct.pack(">I", zlib.adler32(raw))
    ihdr = struct.pack(">IIBBBBB", 8, 8, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def build() -> tuple[dict[str, bytes], list[dict[str, Any]]]:
    """Return ``(file name -> bytes, cases)``; schema.json is written separately."""
    good = good_rows()
    files: dict[str, bytes] = {"good.csv": to_csv(good, COLUMNS)}
    cases: list[dict[str, Any]] = []

    def case(
        name: str,
        data: bytes,
        check: str,
        severity: str,
        column: str | None,
        *,
        pinned: bool = False,
        target: str = TARGET,
    ) -> None:
        files[name] = data
        cases.append(
            {
                "file": name,
                "target": target,
                "schema": "schema.json" if pinned else None,
                "check": check,
                "severity": severity,
                "column": column,
            }
        )

    # --- read failures (read_table raises a DataError with this .check) ---
    case("empty.csv", b"", "empty", "error", None)
    case("header_only.csv", to_csv([], COLUMNS), "empty", "error", None)
    # line 9 opens a quote (city "Paris) that is never closed
    quoted = edit(good[:20], lambda i, r: {**r, "city": '"' + r["city"]} if i == 7 else r)
    case("broken_quoting.csv", to_csv(quoted, COLUMNS), "parse", "error", None)
    ragged = to_csv(good[:20], COLUMNS).decode().splitlines()
    ragged[5] += ",extra,fields"
    case("ragged_rows.csv", ("\n".join(ragged) + "\n").encode(), "parse", "error", None)
    latin = edit(good[:40], lambda i, r: {**r, "city": "Zürich"} if i % 7 == 3 else r)
    case(
        "non_utf8.csv",
        to_csv(latin, COLUMNS).decode().encode("latin-1"),
        "encoding",
        "error",
        None,
    )
    case(
        "utf16.csv", to_csv(good[:20], COLUMNS).decode().encode("utf-16"), "encoding", "error", None
    )
    case("binary.csv", tiny_png(), "binary_content", "error", None)
    case("not_gzip.csv.gz", to_csv(good[:20], COLUMNS), "decompress", "error", None)
    case("not_parquet.parquet", to_csv(good[:20], COLUMNS), "parquet", "error", None)
    case(
        "table.xlsx",
        b"PK\x03\x04\x14\x00\x06\x00" + b"[Content_Types].xml",
        "unsupported_format",
        "error",
        None,
    )
    jsonl = "".join(json.dumps(r, sort_keys=True) + "\n" for r in good[:5]) + '{"amount": \n'
    case("broken.jsonl", jsonl.encode(), "parse", "error", None)

    # --- validation errors ---
    words = edit(good, lambda i, r: {**r, "amount": WORDS[i % len(WORDS)]})
    case(
        "wrong_types.csv",
        to_csv(words, COLUMNS),
        "schema_kind_mismatch",
        "error",
        "amount",
        pinned=True,
    )
    no_age = [c for c in COLUMNS if c != "age"]
    case(
        "missing_column.csv",
        to_csv(good, no_age),
        "schema_missing_column",
        "error",
        "age",
        pinned=True,
    )
    no_label = [c for c in COLUMNS if c != TARGET]
    case("missing_target.csv", to_csv(good, no_label), "target_present", "error", TARGET)
    null_label = edit(good, lambda i, r: {**r, "label": ""})
    case("all_null_target.csv", to_csv(null_label, COLUMNS), "target_not_null", "error", TARGET)
    constant = edit(good, lambda i, r: {**r, "label": "1"})
    case("constant_label.csv", to_csv(constant, COLUMNS), "class_count", "error", TARGET)
    leaked = edit(good, lambda i, r: {**r, "label_code": "yes" if r["label"] == "1" else "no"})
    case(
        "leaked_label.csv",
        to_csv(leaked, [*COLUMNS, "label_code"]),
        "label_leakage",
        "error",
        "label_code",
    )

    # --- validation warnings ---
    notes = ("ok", "late", "vip")
    extra = edit(good, lambda i, r: {**r, "notes": notes[i % 3]})
    case(
        "extra_column.csv",
        to_csv(extra, [*COLUMNS, "notes"]),
        "schema_extra_column",
        "warning",
        "notes",
        pinned=True,
    )
    all_null = edit(good, lambda i, r: {**r, "discount": ""})
    case(
        "all_null_column.csv",
        to_csv(all_null, [*COLUMNS, "discount"]),
        "all_null",
        "warning",
        "discount",
    )
    specials = {5: "inf", 17: "-inf", 29: "inf", 41: ""}
    nan_inf = edit(good, lambda i, r: {**r, "amount": specials.get(i, r["amount"])})
    case("nan_inf.csv", to_csv(nan_inf, COLUMNS), "infinite_values", "warning", "amount")
    junk = ("unknown", "?", "abc")
    mixed = edit(good, lambda i, r: {**r, "age": junk[(i // 10) % 3]} if i % 10 == 4 else r)
    case("mixed_types.csv", to_csv(mixed, COLUMNS), "mixed_types", "warning", "age")
    high = max(float(r["amount"]) for r in good)
    far = edit(good, lambda i, r: {**r, "amount": f"{high * 100 + i:.2f}"} if i % 50 == 0 else r)
    case(
        "out_of_range.csv",
        to_csv(far, COLUMNS),
        "schema_out_of_range",
        "warning",
        "amount",
        pinned=True,
    )
    unseen = edit(good, lambda i, r: {**r, "city": ("Tokyo", "Lima")[i % 2]} if i % 9 == 0 else r)
    case(
        "unseen_categories.csv",
        to_csv(unseen, COLUMNS),
        "schema_unseen_categories",
        "warning",
        "city",
        pinned=True,
    )
    case("duplicate_rows.csv", to_csv(good + good[:20], COLUMNS), "duplicate_rows", "warning", None)
    ids = edit(good, lambda i, r: {**r, "customer_id": f"C{(i * 7919) % 100000:05d}"})
    case(
        "high_cardinality.csv",
        to_csv(ids, ["customer_id", *COLUMNS]),
        "high_cardinality",
        "warning",
        "customer_id",
    )
    return files, cases


def main(out: Path) -> None:
    from kfgpu.data import read_table
    from kfgpu.validation import infer_schema

    out.mkdir(parents=True, exist_ok=True)
    files, cases = build()
    for name, data in files.items():
        (out / name).write_bytes(data)
    infer_schema(read_table(str(out / "good.csv")), TARGET).to_json(out / "schema.json")
    (out / "cases.json").write_text(json.dumps(cases, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
