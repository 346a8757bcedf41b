#!/usr/bin/env python3
"""Tests rdata_text.py on R serialization streams built here byte by byte."""

import contextlib
import gzip
import io
import lzma
import os
import struct
import sys
import tempfile
import unittest
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rdata_text  # noqa: E402

# Item header flags as R packs them: type | object | attr | tag | levels << 12.
STRSXP, VECSXP, INTSXP, LGLSXP, REALSXP, CHARSXP, SYMSXP, LISTSXP = 16, 19, 13, 10, 14, 9, 1, 2
NILVALUE, REFSXP, BCODESXP = 254, 255, 21
OBJ, ATTR, TAG = 1 << 8, 1 << 9, 1 << 10
UTF8, ASCII = 1 << 3, 1 << 6


def i32(*values):
    return struct.pack(">%di" % len(values), *values)


def header(version=3):
    out = b"X\n" + i32(version, 0x040201, 0x030500)
    if version == 3:
        out += i32(5) + b"UTF-8"
    return out


def charsxp(s):
    if s is None:
        return i32(CHARSXP, -1)
    raw = s.encode("utf-8")
    levels = ASCII if raw.isascii() else UTF8
    return i32(CHARSXP | (levels << 12), len(raw)) + raw


def strsxp(values, attributes=b""):
    flags = STRSXP | (ATTR if attributes else 0)
    return i32(flags, len(values)) + b"".join(charsxp(v) for v in values) + attributes


class Symbols:
    """Writes each symbol once, then as a REFSXP, as R's reference table does."""

    def __init__(self):
        self.table = []

    def __call__(self, name):
        if name in self.table:
            return i32(REFSXP | ((self.table.index(name) + 1) << 8))
        self.table.append(name)
        return i32(SYMSXP) + charsxp(name)


def attributes(sym, pairs):
    """A pairlist of (tag, value bytes): the attributes that follow an item."""
    out = b""
    for tag, value in pairs:
        out += i32(LISTSXP | TAG) + sym(tag) + value
    return out + i32(NILVALUE)


def named_list(sym, pairs, extra=()):
    body = b"".join(value for _, value in pairs)
    attrs = attributes(sym, [("names", strsxp([n for n, _ in pairs]))] + list(extra))
    obj = OBJ if any(tag == "class" for tag, _ in extra) else 0
    return i32(VECSXP | ATTR | obj, len(pairs)) + body + attrs


def lazy_load_db(directory, objects, compressed=1, rdx_style="gzip"):
    """Writes directory/db.rdb and db.rdx holding objects {name: stream bytes}."""
    rdb = b""
    offsets = {}
    for name, stream in objects.items():
        if compressed == 1:
            entry = struct.pack(">I", len(stream)) + zlib.compress(stream)
        else:  # compressed = 3: codec byte 'X', xz data
            entry = struct.pack(">I", len(stream)) + b"X" + lzma.compress(stream)
        offsets[name] = (len(rdb), len(entry))
        rdb += entry
    sym = Symbols()
    variables = named_list(sym, [(n, i32(INTSXP, 2, *where)) for n, where in offsets.items()])
    index = header(2) + named_list(sym, [
        ("variables", variables),
        ("references", i32(VECSXP, 0)),
        ("compressed", i32(LGLSXP, 1, 1) if compressed == 1 else i32(REALSXP, 1) + struct.pack(">d", 3)),
    ])
    if rdx_style == "gzip":  # what R's saveRDS() writes
        rdx = gzip.compress(index)
    else:  # length + zlib, like an .rdb entry
        rdx = struct.pack(">I", len(index)) + zlib.compress(index)
    base = os.path.join(directory, "db")
    with open(base + ".rdb", "wb") as f:
        f.write(rdb)
    with open(base + ".rdx", "wb") as f:
        f.write(rdx)
    return base


NOVEL = ["Chapter 1", "", "It is a truth universally acknowledged, ...", "",
         "\u201cCaf\u00e9,\u201d said she \u2014 \u00a35.", "", "Finis"]


def novel_stream(version=3):
    return header(version) + strsxp(NOVEL)


def table_stream():
    """list(title = c("Emma", NA), text = c(...)) with a data.frame class."""
    sym = Symbols()
    return header() + named_list(
        sym,
        [("title", strsxp(["Emma", None])), ("text", strsxp(["one", "two"]))],
        extra=[("class", strsxp(["data.frame"])),
               ("row.names", i32(INTSXP, 2, -2 ** 31, -2))])


class UnserializeTest(unittest.TestCase):

    def test_character_vector(self):
        for version in (2, 3):
            obj = rdata_text.unserialize(novel_stream(version))
            self.assertEqual(obj.kind, "character")
            self.assertEqual(obj.value, NOVEL)

    def test_na_string(self):
        obj = rdata_text.unserialize(header() + strsxp(["a", None, ""]))
        self.assertEqual(obj.value, ["a", None, ""])
        self.assertEqual(rdata_text.text_lines(obj), ["a", "", ""])

    def test_named_list_of_character_vectors(self):
        sym = Symbols()
        stream = header() + named_list(sym, [
            ("a", strsxp(["x", "y"])),
            ("b", strsxp(["z"], attributes(sym, [("names", strsxp(["k"]))]))),
        ])
        obj = rdata_text.unserialize(stream)
        self.assertEqual(obj.kind, "list")
        self.assertEqual(obj.names(), ["a", "b"])
        self.assertEqual([v.value for v in obj.value], [["x", "y"], ["z"]])
        # The second "names" symbol was a REFSXP back into the table.
        self.assertEqual(obj.value[1].names(), ["k"])

    def test_data_frame_text_column(self):
        obj = rdata_text.unserialize(table_stream())
        self.assertEqual(obj.classes(), ["data.frame"])
        self.assertEqual(obj.attr("row.names").value, [None, -2])
        self.assertEqual(rdata_text.text_lines(obj), ["one", "two"])

    def test_unsupported_type_is_named(self):
        with self.assertRaisesRegex(rdata_text.RDataError, r"unsupported SEXP type 21 \(bytecode\)"):
            rdata_text.unserialize(header() + i32(BCODESXP, 1))

    def test_truncated_stream(self):
        with self.assertRaisesRegex(rdata_text.RDataError, "truncated"):
            rdata_text.unserialize(novel_stream()[:-3])

    def test_not_xdr(self):
        with self.assertRaisesRegex(rdata_text.RDataError, "only XDR"):
            rdata_text.unserialize(b"A\n1\n")


class LazyLoadDBTest(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_round_trip(self):
        for rdx_style in ("gzip", "zlib"):
            for compressed in (1, 3):
                with self.subTest(rdx=rdx_style, compressed=compressed):
                    base = lazy_load_db(self.tmp.name, {
                        "novel": novel_stream(), "table": table_stream(),
                        "counts": header() + i32(INTSXP, 3, 1, 2, 3)},
                        compressed=compressed, rdx_style=rdx_style)
                    db = rdata_text.LazyLoadDB(base + ".rdb")
                    self.assertEqual(db.compressed, compressed)
                    self.assertEqual(db.names(), ["counts", "novel", "table"])
                    self.assertEqual(db.get("novel").value, NOVEL)
                    self.assertEqual(db.get("counts").value, [1, 2, 3])
                    with self.assertRaisesRegex(rdata_text.RDataError, "no object 'nope'"):
                        db.get("nope")

    def test_extract_writes_one_file_per_text_object(self):
        base = lazy_load_db(self.tmp.name, {
            "novel": novel_stream(), "table": table_stream(),
            "counts": header() + i32(INTSXP, 1, 7)})
        out = os.path.join(self.tmp.name, "out")
        with contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()) as err:
            self.assertEqual(rdata_text.main(["extract", base, out]), 0)
        self.assertIn("skip counts", err.getvalue())
        self.assertEqual(sorted(os.listdir(out)), ["novel.txt", "table.txt"])
        with open(os.path.join(out, "novel.txt"), encoding="utf-8") as f:
            self.assertEqual(f.read(), "\n".join(NOVEL) + "\n")
        with contextlib.redirect_stderr(io.StringIO()) as err:
            self.assertEqual(rdata_text.main(["extract", base, out, "--only=counts"]), 1)
        self.assertIn("not text", err.getvalue())


if __name__ == "__main__":
    unittest.main()
