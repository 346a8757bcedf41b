#!/usr/bin/env python3
"""Extracts text from an R lazy-load database (.rdb/.rdx) without R.

R packages ship their data sets as a lazy-load database: NAME.rdx is an .rds
file (usually gzip) holding list(variables, references, compressed), where
variables maps each object name to c(offset, length) in NAME.rdb; each .rdb
entry is a 4-byte big-endian uncompressed length, (for compressed = 2 or 3)
one byte naming the codec, then the compressed R serialization stream.

Only the XDR serialization format ('X\\n', versions 2 and 3) is read, and only
the SEXP types that data sets are made of: vectors, pairlists, symbols,
attributes, environments and the common ALTREP classes. Anything else (byte
code, external pointers, ...) raises RDataError naming the type.

Usage:
  rdata_text.py list BASE                 # objects, their type and length
  rdata_text.py extract BASE OUT_DIR [--only=a,b] [--quiet]

BASE is the database path with or without .rdb/.rdx. `extract` writes
OUT_DIR/<name>.txt for every character vector (one element a line) and every
data frame with a column named "text" or exactly one character column.
"""

import argparse
import bz2
import gzip
import lzma
import os
import struct
import sys
import zlib

# SEXP types (Rinternals.h) and serialization pseudo-types (serialize.c).
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP = 7, 8, 9, 10
INTSXP, REALSXP, CPLXSXP, STRSXP, DOTSXP = 13, 14, 15, 16, 17
VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP, RAWSXP, S4SXP = (
    19, 20, 21, 22, 23, 24, 25)
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP = 255, 254, 253, 252
MISSINGARG_SXP, BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP = 251, 250, 249, 248
PERSISTSXP, CLASSREFSXP, GENERICREFSXP, BCREPDEF = 247, 246, 245, 244
EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = (
    242, 241, 240, 239, 238)

TYPE_NAMES = {
    NILSXP: "NULL", SYMSXP: "symbol", LISTSXP: "pairlist", CLOSXP: "closure",
    ENVSXP: "environment", PROMSXP: "promise", LANGSXP: "language",
    SPECIALSXP: "special", BUILTINSXP: "builtin", CHARSXP: "char",
    LGLSXP: "logical", INTSXP: "integer", REALSXP: "double",
    CPLXSXP: "complex", STRSXP: "character", DOTSXP: "...", VECSXP: "list",
    EXPRSXP: "expression", BCODESXP: "bytecode", EXTPTRSXP: "externalptr",
    WEAKREFSXP: "weakref", RAWSXP: "raw", S4SXP: "S4",
    REFSXP: "REFSXP", PERSISTSXP: "PERSISTSXP", CLASSREFSXP: "CLASSREFSXP",
    GENERICREFSXP: "GENERICREFSXP", BCREPDEF: "BCREPDEF",
    ALTREP_SXP: "ALTREP_SXP",
}

# Flag bits of an item header (serialize.c: PackFlags).
IS_OBJECT_BIT = 1 << 8
HAS_ATTR_BIT = 1 << 9
HAS_TAG_BIT = 1 << 10
# CHARSXP encoding bits, stored in the header's "levels" (flags >> 12).
BYTES_MASK, LATIN1_MASK, UTF8_MASK, ASCII_MASK = 1 << 1, 1 << 2, 1 << 3, 1 << 6

NA_INTEGER = -(2 ** 31)
PAIRLIST_TYPES = (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP,
                  ATTRLISTSXP, ATTRLANGSXP)


class RDataError(Exception):
    """The input is not something this reader understands."""


class RObject:
    """One R value: `kind` is a TYPE_NAMES entry, `value` a Python value.

    character -> list of str (None for NA); integer/logical -> list of int
    (None for NA); double -> list of float; list/expression -> list of
    RObject; pairlist-like -> list of (tag name or None, RObject);
    symbol -> str; environment -> dict; others -> whatever was read.
    """

    __slots__ = ("kind", "value", "attributes")

    def __init__(self, kind, value=None, attributes=None):
        self.kind = kind
        self.value = value
        self.attributes = attributes or {}

    def attr(self, name):
        return self.attributes.get(name)

    def names(self):
        names = self.attr("names")
        return names.value if names is not None else None

    def classes(self):
        cls = self.attr("class")
        return list(cls.value) if cls is not None and cls.kind == "character" else []

    def __len__(self):
        return len(self.value) if isinstance(self.value, (list, dict)) else 1

    def __repr__(self):
        return "RObject(%s, len=%d)" % (self.kind, len(self))


NULL = RObject("NULL")


class _Reader:
    """Reads one XDR serialization stream (serialize.c: R_Unserialize)."""

    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.refs = []  # the reference table; REFSXP indices are 1-based
        self.encoding = "utf-8"

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise RDataError("serialization stream truncated at byte %d (wanted %d more)"
                             % (self.pos, n))
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self):
        if self.pos + 4 > len(self.data):
            self._take(4)  # raises the truncation error
        value = struct.unpack_from(">i", self.data, self.pos)[0]
        self.pos += 4
        return value

    def length(self):
        n = self.int()
        if n == -1:  # long vector: two more ints, upper and lower 32 bits
            upper, lower = self.int(), self.int()
            n = (upper << 32) + (lower & 0xFFFFFFFF)
        elif n < 0:
            raise RDataError("negative vector length %d at byte %d" % (n, self.pos - 4))
        return n

    def ints(self, n):
        values = list(struct.unpack(">%di" % n, self._take(4 * n)))
        return [None if v == NA_INTEGER else v for v in values]

    def doubles(self, n):
        return list(struct.unpack(">%dd" % n, self._take(8 * n)))

    def header(self):
        fmt = self._take(2)
        if fmt != b"X\n":
            if fmt in (b"A\n", b"B\n"):
                raise RDataError("serialization format %r (ascii/native) is not supported, "
                                 "only XDR ('X\\n')" % fmt)
            raise RDataError("not an R serialization stream (starts with %r)" % fmt)
        version = self.int()
        self.int()  # version of R that wrote it
        self.int()  # minimal R version to read it
        if version == 3:
            self.encoding = _python_encoding(self._take(self.int()).decode("ascii"))
        elif version != 2:
            raise RDataError("serialization version %d is not supported (only 2 and 3)" % version)

    def item(self, flags=None):
        if flags is None:
            flags = self.int()
        kind = flags & 0xFF
        has_attr = bool(flags & HAS_ATTR_BIT)

        if kind == NILVALUE_SXP:
            return NULL
        if kind in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, BASENAMESPACE_SXP):
            return RObject("environment", {"special": TYPE_SPECIAL_ENV[kind]})
        if kind in (UNBOUNDVALUE_SXP, MISSINGARG_SXP):
            return RObject("NULL")
        if kind == REFSXP:
            index = flags >> 8 or self.int()
            if not 1 <= index <= len(self.refs):
                raise RDataError("reference %d out of range (table has %d)"
                                 % (index, len(self.refs)))
            return self.refs[index - 1]
        if kind in (PERSISTSXP, PACKAGESXP, NAMESPACESXP):
            kinds = {PERSISTSXP: "persistent", PACKAGESXP: "package", NAMESPACESXP: "namespace"}
            obj = RObject(kinds[kind], self._string_vec())
            self.refs.append(obj)
            return obj
        if kind == SYMSXP:
            obj = RObject("symbol", self.item().value)  # a CHARSXP
            self.refs.append(obj)
            return obj
        if kind == ENVSXP:
            obj = RObject("environment", {})
            self.refs.append(obj)  # before the contents, which may refer to it
            obj.value["locked"] = self.int()
            obj.value["enclos"] = self.item()
            obj.value["frame"] = self.item()
            obj.value["hashtab"] = self.item()
            obj.attributes = _attributes(self.item())
            return obj
        if kind in PAIRLIST_TYPES:
            return self._pairlist(flags)
        if kind == ALTREP_SXP:
            return self._altrep()

        if kind == CHARSXP:
            n = self.int()
            if n == -1:
                return RObject("char", None)  # NA_character_
            raw = self._take(n)
            levels = flags >> 12
            if levels & LATIN1_MASK:
                encoding = "latin-1"
            elif levels & (UTF8_MASK | ASCII_MASK):
                encoding = "utf-8"
            elif levels & BYTES_MASK:
                raise RDataError("string with 'bytes' encoding at byte %d" % self.pos)
            else:
                encoding = self.encoding
            try:
                return RObject("char", raw.decode(encoding))
            except UnicodeDecodeError as e:
                raise RDataError("string at byte %d is not valid %s: %s"
                                 % (self.pos - n, encoding, e)) from None
        elif kind in (LGLSXP, INTSXP):
            obj = RObject(TYPE_NAMES[kind], self.ints(self.length()))
        elif kind == REALSXP:
            obj = RObject("double", self.doubles(self.length()))
        elif kind == CPLXSXP:
            parts = self.doubles(2 * self.length())
            obj = RObject("complex", [complex(re, im) for re, im in zip(parts[::2], parts[1::2])])
        elif kind == RAWSXP:
            obj = RObject("raw", self._take(self.length()))
        elif kind == STRSXP:
            obj = RObject("character", [self.item().value for _ in range(self.length())])
        elif kind in (VECSXP, EXPRSXP):
            obj = RObject(TYPE_NAMES[kind], [self.item() for _ in range(self.length())])
        elif kind == S4SXP:
            obj = RObject("S4")
        elif kind in (SPECIALSXP, BUILTINSXP):
            obj = RObject(TYPE_NAMES[kind], self._take(self.int()).decode("ascii"))
        else:
            raise RDataError("unsupported SEXP type %d (%s) at byte %d"
                             % (kind, TYPE_NAMES.get(kind, "unknown"), self.pos - 4))
        if has_attr:
            obj.attributes = _attributes(self.item())
        return obj

    def _string_vec(self):
        if self.int() != 0:
            raise RDataError("malformed string vector at byte %d" % (self.pos - 4))
        return [self.item().value for _ in range(self.length())]

    def _pairlist(self, flags):
        # Iterative over the CDR chain, as R does, so long lists don't recurse.
        kind = flags & 0xFF
        name = {ATTRLISTSXP: "pairlist", ATTRLANGSXP: "language"}.get(kind, TYPE_NAMES[kind])
        obj = RObject(name, [])
        first = True
        while True:
            attributes = _attributes(self.item()) if flags & HAS_ATTR_BIT or \
                kind in (ATTRLISTSXP, ATTRLANGSXP) else {}
            if first:
                obj.attributes = attributes
                first = False
            tag = self.item().value if flags & HAS_TAG_BIT else None
            obj.value.append((tag, self.item()))
            flags = self.int()
            if flags & 0xFF != kind or kind not in (LISTSXP, ATTRLISTSXP):
                tail = self.item(flags)
                if tail is not NULL:
                    obj.value.append((None, tail))  # language CDR or dotted pair
                return obj

    def _altrep(self):
        info = self.item()  # pairlist(class symbol, package symbol, type)
        state = self.item()
        attributes = _attributes(self.item())
        cls = info.value[0][1].value if info.kind == "pairlist" and info.value else "?"
        if cls in ("compact_intseq", "compact_realseq"):
            n, start, step = (state.value + [0, 0, 0])[:3]
            seq = [start + i * step for i in range(int(n))]
            obj = RObject("integer" if cls == "compact_intseq" else "double",
                          [int(v) for v in seq] if cls == "compact_intseq" else seq)
        elif cls.startswith("wrap_"):
            obj = state.value[0]  # list(x, metadata)
        elif cls == "deferred_string":
            source = state.value[0][1] if state.kind == "pairlist" else state
            obj = RObject("character", [_as_character(v) for v in source.value])
        else:
            raise RDataError("unsupported ALTREP class %r" % cls)
        obj.attributes = attributes or obj.attributes
        return obj


TYPE_SPECIAL_ENV = {EMPTYENV_SXP: "emptyenv", BASEENV_SXP: "baseenv",
                    GLOBALENV_SXP: "globalenv", BASENAMESPACE_SXP: "base namespace"}


def _python_encoding(r_name):
    name = r_name.strip().lower()
    if name in ("", "c", "posix", "ascii", "ansi_x3.4-1968"):
        return "utf-8"  # plain ASCII is valid UTF-8
    if name in ("latin1", "iso-8859-1", "iso8859-1"):
        return "latin-1"
    return name


def _as_character(v):
    # Enough of R's as.character() for integer/double deferred strings.
    if v is None:
        return None
    if isinstance(v, float):
        if v == int(v) and abs(v) < 1e15:
            return str(int(v))
        return "%.15g" % v
    return str(v)


def _attributes(pairlist):
    if pairlist is NULL:
        return {}
    if pairlist.kind != "pairlist":
        raise RDataError("attributes are a %s, expected a pairlist" % pairlist.kind)
    return {tag: value for tag, value in pairlist.value}


def unserialize(data):
    """Returns the RObject of one XDR serialization stream."""
    reader = _Reader(data)
    reader.header()
    return reader.item()


def _decompress_rds(data):
    # saveRDS writes gzip by default, bzip2/xz on request, or no compression.
    if data[:2] == b"\x1f\x8b":
        return gzip.decompress(data)
    if data[:3] == b"BZh":
        return bz2.decompress(data)
    if data[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(data)
    if data[:2] in (b"X\n", b"A\n", b"B\n"):
        return data
    if len(data) > 6 and data[4:5] == b"\x78":  # lazy-load style: length + zlib
        return zlib.decompress(data[4:])
    raise RDataError("unrecognised .rds/.rdx compression (starts with %r)" % data[:6])


def read_rds(path):
    with open(path, "rb") as f:
        return unserialize(_decompress_rds(f.read()))


def _rdb_entry(blob, compressed, where):
    # lazyLoadDBinsertValue: 4-byte length, then (type 2/3 only) a codec byte.
    if compressed == 0:
        return blob
    if len(blob) < 5:
        raise RDataError("%s: entry of %d bytes is too short" % (where, len(blob)))
    expected = struct.unpack(">I", blob[:4])[0]
    if compressed == 1:
        codec, payload = b"Z", blob[4:]
    else:
        codec, payload = blob[4:5], blob[5:]
    try:
        if codec == b"Z":
            out = zlib.decompress(payload)
        elif codec == b"2":
            out = bz2.decompress(payload)
        elif codec == b"X":
            out = lzma.decompress(payload)
        elif codec == b"0":
            out = payload
        else:
            raise RDataError("%s: unknown codec byte %r" % (where, codec))
    except (zlib.error, OSError, lzma.LZMAError) as e:
        raise RDataError("%s: cannot decompress: %s" % (where, e)) from None
    if len(out) != expected:
        raise RDataError("%s: decompressed to %d bytes, header says %d"
                         % (where, len(out), expected))
    return out


class LazyLoadDB:
    """The objects of BASE.rdb, indexed by BASE.rdx."""

    def __init__(self, base):
        for ext in (".rdb", ".rdx"):
            if base.endswith(ext):
                base = base[:-len(ext)]
        self.base = base
        if not os.path.exists(base + ".rdx") or not os.path.exists(base + ".rdb"):
            raise RDataError("%s.rdx and %s.rdb must both exist" % (base, base))
        index = read_rds(base + ".rdx")
        parts = dict(zip(index.names() or [], index.value)) if index.kind == "list" else {}
        if "variables" not in parts:
            raise RDataError("%s.rdx is not a lazy-load index (no 'variables')" % base)
        compressed = parts["compressed"].value[0] if "compressed" in parts else 1
        self.compressed = int(compressed) if compressed is not None else 1
        variables = parts["variables"]
        self.index = {}
        for name, where in zip(variables.names() or [], variables.value):
            offset, length = (int(v) for v in where.value[:2])
            self.index[name] = (offset, length)

    def names(self):
        return sorted(self.index)

    def get(self, name):
        if name not in self.index:
            raise RDataError("%s.rdb has no object %r (has: %s)"
                             % (self.base, name, ", ".join(self.names())))
        offset, length = self.index[name]
        with open(self.base + ".rdb", "rb") as f:
            f.seek(offset)
            blob = f.read(length)
        if len(blob) != length:
            raise RDataError("%s.rdb: object %r runs past the end of the file" % (self.base, name))
        where = "%s.rdb[%s]" % (self.base, name)
        return unserialize(_rdb_entry(blob, self.compressed, where))


def text_lines(obj):
    """The lines of text an object holds, or None if it holds none."""
    if obj.kind == "character":
        return ["" if line is None else line for line in obj.value]
    if obj.kind == "list" and "data.frame" in obj.classes():
        columns = dict(zip(obj.names() or [], obj.value))
        strings = [c for c in columns.values() if c.kind == "character"]
        column = columns.get("text")
        if column is None or column.kind != "character":
            column = strings[0] if len(strings) == 1 else None
        if column is not None:
            return text_lines(column)
    return None


def describe(obj):
    cls = obj.classes()
    return "%s[%d]%s" % (obj.kind, len(obj), (" class=" + "/".join(cls)) if cls else "")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Extract text from an R lazy-load database (.rdb/.rdx) without R.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="list the objects of the database")
    p_list.add_argument("base", help="database path, with or without .rdb/.rdx")
    p_ext = sub.add_parser("extract", help="write OUT_DIR/<name>.txt per text object")
    p_ext.add_argument("base", help="database path, with or without .rdb/.rdx")
    p_ext.add_argument("out_dir")
    p_ext.add_argument("--only", default="", help="comma-separated object names")
    p_ext.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    try:
        db = LazyLoadDB(args.base)
        if args.command == "list":
            failed = 0
            for name in db.names():
                try:  # one unreadable object (e.g. byte code) shouldn't hide the rest
                    print("%-24s %s" % (name, describe(db.get(name))))
                except RDataError as e:
                    print("%-24s error: %s" % (name, e))
                    failed += 1
            return 1 if failed else 0
        names = [n for n in args.only.split(",") if n] or db.names()
        os.makedirs(args.out_dir, exist_ok=True)
        written = 0
        for name in names:
            obj = db.get(name)
            lines = text_lines(obj)
            if lines is None:
                if args.only:
                    raise RDataError("object %r is %s, not text" % (name, describe(obj)))
                if not args.quiet:
                    print("skip %-20s %s" % (name, describe(obj)), file=sys.stderr)
                continue
            path = os.path.join(args.out_dir, name + ".txt")
            with open(path, "w", encoding="utf-8", newline="\n") as f:
                f.write("\n".join(lines) + "\n")
            written += 1
            if not args.quiet:
                print("wrote %s (%d lines, %d bytes)" % (path, len(lines), os.path.getsize(path)))
        if written == 0:
            raise RDataError("no text objects in %s" % db.base)
    except (RDataError, OSError) as e:
        print("rdata_text.py: error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
