"""Tracepoint event formats (``events/<system>/<event>/format``) and their print formats.

Every binary recording (trace-cmd's trace.dat, perf.data's tracing-data
feature, ``per_cpu/cpuN/trace_pipe_raw`` next to tracefs) carries the format
files of its events. They say where each field of a record is (``offset``
and ``size`` in bytes, ``signed``) and how the kernel prints the record
(``print fmt``: a printf format and C expressions over ``REC->field``). The
binary decoder reads fields by these offsets and renders the printed
key=value payload by evaluating the print format over numpy columns, so the
result is what ``trace-cmd report`` or ``perf script`` print for the same
record, without any knowledge of kernel versions.

The expression language is the subset of C that print formats use:
integer literals, ``REC->field``, casts, unary and binary operators, the
ternary operator, ``__print_flags``, ``__print_symbolic``, ``__get_str`` and
``__get_dynamic_array``. Values are int64 numpy arrays (C's unsigned long
wraps the same way), or object arrays of str for strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from replay.errors import BadInputError


@dataclass(frozen=True)
class Field:
    """One field of a record: byte ``offset`` and ``size`` inside the record."""

    name: str
    ctype: str
    offset: int
    size: int
    signed: bool
    #: ``__data_loc`` field: a u32 whose low 16 bits are the offset (bytes) of
    #: the data inside the record, the high 16 bits its length (bytes)
    dynamic: bool = False
    #: a fixed array (``char comm[16]``) or ``char buf[]`` (size 0: to the end)
    array: bool = False


@dataclass
class EventFormat:
    """A parsed format file: id, names, fields by name and the print format."""

    id: int
    system: str
    name: str
    fields: dict[str, Field]
    print_fmt: str
    source: str = ""
    _printer: PrintFormat | None = field(default=None, repr=False)

    @property
    def printer(self) -> PrintFormat:
        """The compiled print format (parsed on first use)."""
        if self._printer is None:
            self._printer = PrintFormat.parse(self.print_fmt, self)
        return self._printer


_FIELD_RE = re.compile(
    r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);(?:\s*signed:(?P<signed>-?\d+);)?"
)


def parse_format(text: str, system: str = "", source: str = "") -> EventFormat:
    """Parse one ``format`` file's text; ``source`` names it in errors."""
    name = ident = None
    fields: dict[str, Field] = {}
    print_fmt = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("name:"):
            name = s[5:].strip()
        elif s.startswith("ID:"):
            try:
                ident = int(s[3:].strip())
            except ValueError:
                raise BadInputError(f"event format has a bad ID line {s!r}", file=source) from None
        elif s.startswith("field:"):
            m = _FIELD_RE.search(s)
            if m is None:
                raise BadInputError(f"event format has a bad field line {s!r}", file=source)
            decl = m.group("decl").strip()
            dynamic = decl.startswith("__data_loc")
            if dynamic:
                decl = decl[len("__data_loc") :].strip()
            array = False
            if decl.endswith("]"):
                array = True
                decl = decl[: decl.index("[")].strip()
            fname = re.split(r"[\s*]+", decl)[-1]
            ctype = decl[: len(decl) - len(fname)].strip()
            size = int(m.group("size"))
            signed = m.group("signed")
            fields[fname] = Field(
                name=fname,
                ctype=ctype,
                offset=int(m.group("off")),
                size=size,
                signed=(signed == "1") if signed is not None else not ctype.startswith("unsigned"),
                dynamic=dynamic,
                array=array,
            )
        elif s.startswith("print fmt:"):
            print_fmt = s[len("print fmt:") :].strip()
    if name is None or ident is None:
        raise BadInputError("event format has no name or ID line", file=source)
    return EventFormat(ident, system, name, fields, print_fmt, source)


_ID_RE = re.compile(r"^\s*ID:\s*(\d+)\s*$", re.M)


class FormatTable(Mapping[int, EventFormat]):
    """Event formats by ID, each parsed on first lookup.

    A recording carries the format of every event the kernel has (2,323 on
    6.18), an ingest reads a handful: :meth:`add` only finds the ID line, and
    a format file is parsed when its ID is looked up (a file with no ID line
    is parsed at once, for its error).
    """

    def __init__(self) -> None:
        self._text: dict[int, tuple[str, str, str]] = {}
        self._parsed: dict[int, EventFormat] = {}

    def add(self, text: str, system: str = "", source: str = "") -> None:
        """Register one ``format`` file's text; ``source`` names it in errors."""
        m = _ID_RE.search(text)
        if m is None:
            fmt = parse_format(text, system, source)  # raises: no ID line
            self._parsed[fmt.id] = fmt
            return
        ident = int(m.group(1))
        self._text[ident] = (text, system, source)
        self._parsed.pop(ident, None)

    def text(self, ident: int) -> tuple[str, str]:
        """(system, format file text) of an ID, as the recording holds it."""
        if ident in self._text:
            text, system, _ = self._text[ident]
            return system, text
        raise KeyError(ident)

    def __getitem__(self, ident: int) -> EventFormat:
        fmt = self._parsed.get(ident)
        if fmt is None:
            text, system, source = self._text[ident]  # KeyError: no such format
            fmt = self._parsed[ident] = parse_format(text, system, source)
        return fmt

    def __contains__(self, ident: object) -> bool:
        return ident in self._text or ident in self._parsed

    def __iter__(self) -> Iterator[int]:
        return iter(self._text.keys() | self._parsed.keys())

    def __len__(self) -> int:
        return len(self._text.keys() | self._parsed.keys())


@dataclass(frozen=True)
class PageHeader:
    """Layout of a ring-buffer page (``events/header_page``), bytes."""

    ts_offset: int = 0
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16


def parse_header_page(text: str, source: str = "") -> PageHeader:
    """The page layout from ``header_page``: where the timestamp, commit and data are."""
    fields: dict[str, tuple[int, int]] = {}
    for m in _FIELD_RE.finditer(text):
        decl = m.group("decl").strip()
        fname = re.split(r"[\s*]+", decl.split("[")[0].strip())[-1]
        fields[fname] = (int(m.group("off")), int(m.group("size")))
    for need in ("timestamp", "commit", "data"):
        if need not in fields:
            raise BadInputError(f"header_page has no '{need}' field", file=source, field=need)
    return PageHeader(
        fields["timestamp"][0], fields["commit"][0], fields["commit"][1], fields["data"][0]
    )


# -- C expressions of print formats --------------------------------------------

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<num>0[xX][0-9a-fA-F]+|\d+)(?P<suffix>[uUlL]*)
      | (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<chr>'(?:[^'\\]|\\.)')
      | (?P<id>[A-Za-z_]\w*)
      | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>?:(),{}\[\].])
    )""",
    re.X,
)

_BINARY = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6,
    "<": 7, ">": 7, "<=": 7, ">=": 7, "<<": 8, ">>": 8,
    "+": 9, "-": 9, "*": 10, "/": 10, "%": 10,
}  # fmt: skip
_TYPE_WORDS = {
    "unsigned", "signed", "long", "int", "short", "char", "void", "struct", "const",
    "bool", "_Bool", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "size_t",
    "gfp_t", "pid_t", "dev_t", "ino_t", "loff_t", "uint8_t", "uint16_t", "uint32_t",
    "uint64_t", "int8_t", "int16_t", "int32_t", "int64_t", "__u64", "__u32", "__u16",
    "__u8", "__s64", "__s32", "__s16", "__s8", "unsigned long", "isolate_mode_t",
    "pgoff_t", "phys_addr_t", "resource_size_t", "blk_opf_t", "slab_flags_t",
}  # fmt: skip


class ExprError(ValueError):
    """A print-format expression this evaluator cannot read or evaluate."""


Node = tuple  # ("num", v) ("str", s) ("field", name) ("ident", n) ("un", op, x) ...


def _unescape(s: str) -> str:
    return bytes(s[1:-1], "utf-8").decode("unicode_escape")


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks: list[tuple[str, object]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN_RE.match(text, pos)
            if m is None or m.end() == pos:
                if text[pos:].strip() == "":
                    break
                raise ExprError(f"cannot read {text[pos : pos + 20]!r}")
            pos = m.end()
            if m.group("num") is not None:
                self.toks.append(("num", int(m.group("num"), 0)))
            elif m.group("str") is not None:
                self.toks.append(("str", _unescape(m.group("str"))))
            elif m.group("chr") is not None:
                self.toks.append(("num", ord(_unescape(m.group("chr")))))
            elif m.group("id") is not None:
                self.toks.append(("id", m.group("id")))
            else:
                self.toks.append(("op", m.group("op")))
        self.i = 0

    def peek(self) -> tuple[str, object]:
        return self.toks[self.i] if self.i < len(self.toks) else ("end", None)

    def take(self, op: str | None = None) -> tuple[str, object]:
        tok = self.peek()
        if op is not None and tok != ("op", op):
            raise ExprError(f"expected {op!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def args(self) -> list[Node]:
        """Comma-separated expressions up to the end."""
        out: list[Node] = []
        while self.peek()[0] != "end":
            out.append(self.expr())
            if self.peek() == ("op", ","):
                self.take()
        return out

    def expr(self) -> Node:
        cond = self.binary(1)
        if self.peek() == ("op", "?"):
            self.take()
            a = self.expr()
            self.take(":")
            b = self.expr()
            return ("if", cond, a, b)
        return cond

    def binary(self, level: int) -> Node:
        left = self.unary()
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in _BINARY or _BINARY[str(op)] < level:
                return left
            self.take()
            right = self.binary(_BINARY[str(op)] + 1)
            left = ("bin", op, left, right)

    def _is_cast(self) -> bool:
        j = self.i + 1
        saw = False
        while j < len(self.toks):
            kind, v = self.toks[j]
            if kind == "op" and v == ")":
                return saw
            if kind == "op" and v == "*":
                j += 1
                continue
            if kind != "id":
                return False
            if v not in _TYPE_WORDS and not str(v).endswith("_t") and (j == self.i + 1):
                # "(struct x *)" and "(gfp_t)" are casts; "(REC" is not
                return False
            saw = True
            j += 1
        return False

    def unary(self) -> Node:
        kind, v = self.peek()
        if kind == "op" and v in ("-", "~", "!", "+"):
            self.take()
            return ("un", v, self.unary())
        if kind == "op" and v == "&":
            self.take()
            return ("addr", self.unary())
        if kind == "op" and v == "*":
            self.take()
            return ("deref", self.unary())
        if kind == "op" and v == "(" and self._is_cast():
            words = []
            self.take()
            while self.peek() != ("op", ")"):
                words.append(str(self.take()[1]))
            self.take(")")
            return ("cast", " ".join(words), self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            tok = self.peek()
            if tok == ("op", "->") or tok == ("op", "."):
                self.take()
                name = str(self.take()[1])
                node = ("field", name) if node == ("ident", "REC") else ("member", node, name)
            elif tok == ("op", "["):
                self.take()
                idx = self.expr()
                self.take("]")
                node = ("index", node, idx)
            else:
                return node

    def primary(self) -> Node:
        kind, v = self.take()
        if kind == "num":
            return ("num", v)
        if kind == "str":
            s = str(v)
            while self.peek()[0] == "str":  # "a" "b" concatenates
                s += str(self.take()[1])
            return ("str", s)
        if kind == "op" and v == "(":
            e = self.expr()
            self.take(")")
            return e
        if kind == "op" and v == "{":
            items = []
            while self.peek() != ("op", "}"):
                items.append(self.expr())
                if self.peek() == ("op", ","):
                    self.take()
            self.take("}")
            return ("list", items)
        if kind == "id":
            if self.peek() == ("op", "("):
                self.take()
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.expr())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take(")")
                return ("call", v, args)
            return ("ident", v)
        raise ExprError(f"unexpected {v!r}")


def _const(node: Node) -> int:
    """A constant integer expression (flag and symbol tables)."""
    out = _eval(node, lambda name: np.zeros(1, np.int64), 1)
    if isinstance(out, np.ndarray) and out.dtype != object:
        return int(out[0])
    raise ExprError("not a constant")


def _as_int(v: np.ndarray, n: int) -> np.ndarray:
    if v.dtype == object:
        raise ExprError("a string where a number was expected")
    return np.broadcast_to(v, (n,))


def _eval(node: Node, col: Callable[[str], np.ndarray], n: int) -> np.ndarray:
    """Evaluate ``node`` over ``n`` records; ``col(name)`` gives a field's values."""
    kind = node[0]
    if kind == "num":
        v = int(node[1])
        v = v - (1 << 64) if v >= 1 << 63 else v
        return np.array([v], np.int64)  # broadcasts against the n records
    if kind == "str":
        out = np.empty(n, object)
        out[:] = node[1]
        return out
    if kind == "field":
        return col(str(node[1]))
    if kind == "cast":
        inner = _eval(node[2], col, n)
        if inner.dtype == object:
            return inner
        ctype = str(node[1])
        if "*" in ctype:
            return inner
        words = ctype.split()
        if "char" in words or ctype in ("u8", "s8", "__u8", "__s8", "uint8_t", "int8_t", "bool"):
            bits = 8
        elif "short" in words or ctype in ("u16", "s16", "__u16", "__s16"):
            bits = 16
        elif ctype in ("int", "unsigned int", "unsigned", "u32", "s32", "__u32", "__s32"):
            bits = 32
        else:
            return inner
        unsigned = "unsigned" in words or ctype.startswith(("u", "__u"))
        x = inner.astype(np.int64) & ((1 << bits) - 1)
        if not unsigned:
            x = np.where(x >= 1 << (bits - 1), x - (1 << bits), x)
        return x.astype(np.int64)
    if kind == "un":
        x = _as_int(_eval(node[2], col, n), n)
        op = node[1]
        if op == "-":
            return -x
        if op == "~":
            return ~x
        if op == "!":
            return (x == 0).astype(np.int64)
        return x
    if kind == "bin":
        op = node[1]
        a = _eval(node[2], col, n)
        b = _eval(node[3], col, n)
        if a.dtype == object or b.dtype == object:
            if op in ("==", "!="):
                eq = np.array([x == y for x, y in zip(a, b, strict=True)], dtype=bool)
                return (eq if op == "==" else ~eq).astype(np.int64)
            raise ExprError(f"operator {op} on a string")
        a = _as_int(a, n)
        b = _as_int(b, n)
        with np.errstate(all="ignore"):
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if op == "/":
                return np.where(b != 0, a // np.where(b == 0, 1, b), 0)
            if op == "%":
                return np.where(b != 0, a % np.where(b == 0, 1, b), 0)
            if op == "<<":
                return a << (b & 63)
            if op == ">>":
                return (a.view(np.uint64) >> (b & 63).view(np.uint64)).view(np.int64)
            if op == "&":
                return a & b
            if op == "|":
                return a | b
            if op == "^":
                return a ^ b
            if op == "&&":
                return ((a != 0) & (b != 0)).astype(np.int64)
            if op == "||":
                return ((a != 0) | (b != 0)).astype(np.int64)
            cmp = {
                "==": np.equal, "!=": np.not_equal, "<": np.less, ">": np.greater,
                "<=": np.less_equal, ">=": np.greater_equal,
            }[str(op)]  # fmt: skip
            return cmp(a, b).astype(np.int64)
    if kind == "if":
        cond = _as_int(_eval(node[1], col, n), n) != 0
        a = _eval(node[2], col, n)
        b = _eval(node[3], col, n)
        if a.dtype == object or b.dtype == object:
            out = np.empty(n, object)
            out[:] = b
            out[cond] = a[cond] if a.shape == (n,) else a
            return out
        return np.where(cond, a, b)
    if kind == "call":
        return _call(str(node[1]), node[2], col, n)
    if kind == "ident":
        name = str(node[1])
        if name in ("true", "false"):
            return np.array([1 if name == "true" else 0], np.int64)
        # NULL, or a kernel variable (vmemmap_base, jiffies): libtraceevent reads it as 0
        return np.zeros(1, np.int64)
    raise ExprError(f"cannot evaluate {kind}")


def _table(items: list[Node]) -> list[tuple[int, str]]:
    out = []
    for it in items:
        if it[0] != "list" or len(it[1]) != 2:
            raise ExprError("bad flag/symbol table entry")
        val, name = it[1]
        if name[0] != "str":
            continue  # the { 0, NULL } terminator
        out.append((_const(val), str(name[1])))
    return out


def print_flags(value: int, delim: str, table: list[tuple[int, str]]) -> str:
    """Render ``value`` as flag names joined by ``delim``, leftover bits as hex.

    As the kernel's trace_print_flags_seq and libtraceevent do: each table
    entry whose bits are all set is printed and its bits cleared, in table
    order; bits no entry names are printed as ``0x..`` at the end.
    """
    v = value & ((1 << 64) - 1)
    parts: list[str] = []
    for mask, name in table:
        m = mask & ((1 << 64) - 1)
        if m and (v & m) == m:
            parts.append(name)
            v &= ~m
        elif m == 0 and v == 0 and not parts:
            parts.append(name)
    if v:
        parts.append(f"0x{v:x}")
    return delim.join(parts)


def factorize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of each value in the distinct values, the distinct values in first-seen order).

    A hash table (Arrow's dictionary encoding), not a sort: a block's pids,
    task names and gfp masks have few distinct values among many records.
    """
    enc = pa.array(np.ascontiguousarray(values)).dictionary_encode()
    return enc.indices.to_numpy(), enc.dictionary.to_numpy(zero_copy_only=False)


def _per_value(values: np.ndarray, render: Callable[[int], str]) -> np.ndarray:
    inv, uniq = factorize(values)
    names = np.array([render(int(u)) for u in uniq.tolist()] + [""], dtype=object)
    return names[inv] if uniq.size else np.empty(0, object)


def _call(name: str, args: list[Node], col: Callable[[str], np.ndarray], n: int) -> np.ndarray:
    if name == "__print_flags":
        values = _as_int(_eval(args[0], col, n), n)
        delim = str(args[1][1]) if args[1][0] == "str" else "|"
        table = _table(args[2:])
        return _per_value(values, lambda v: print_flags(v, delim, table))
    if name == "__print_symbolic":
        values = _as_int(_eval(args[0], col, n), n)
        sym = dict(reversed(_table(args[1:])))

        def render(v: int) -> str:
            if v in sym:
                return sym[v]
            return f"0x{v & ((1 << 64) - 1):x}"

        return _per_value(values, render)
    if name in ("__get_str", "__get_dynamic_array", "__get_rel_str"):
        if args[0][0] not in ("ident", "field"):
            raise ExprError(f"{name} of an expression")
        return col("@str:" + str(args[0][1]))
    if name == "__get_bitmask" or name == "__get_cpumask":
        return col("@str:" + str(args[0][1]))
    if name == "sizeof":
        return np.full(n, 8, np.int64)
    raise ExprError(f"unsupported function {name}")


# -- printf conversions ---------------------------------------------------------

_CONST_KEY_RE = re.compile(r"(?:^|(?<=[\s,(]))(\w+)=(0x[0-9a-fA-F]+|-?\d+)(?=[\s,)]|$)")
_CONV_RE = re.compile(
    r"%(?P<flags>[-+ #0]*)(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d+))?"
    r"(?P<len>hh|h|ll|l|z|L|j|t)?(?P<conv>[diouxXcsp%])(?P<ext>[a-zA-Z]*)"
)


@dataclass
class Conversion:
    """One ``%`` conversion of a print format and its argument."""

    spec: str  # a Python %-format equivalent (length modifiers dropped)
    conv: str  # d i u o x X c s p
    ext: str  # %p extensions: s, S, F, f, ...
    key: str | None  # the key=... it prints (None outside key=value)
    arg: Node | None
    unsigned_bits: int  # 32 or 64: width of an unsigned conversion


@dataclass
class PrintFormat:
    """A print format compiled to literal text pieces and conversions."""

    pieces: list[str | Conversion]
    event: EventFormat
    #: keys whose value is literal text of the format (``order=0``)
    constants: dict[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, event: EventFormat) -> PrintFormat:
        """Split ``"fmt", args...`` into literal pieces and conversions with their args."""
        p = _Parser(text)
        first = p.take()
        if first[0] != "str":
            raise ExprError("print fmt does not start with a string")
        fmt = str(first[1])
        while p.peek()[0] == "str":
            fmt += str(p.take()[1])
        if p.peek() == ("op", ","):
            p.take()
        args = p.args()
        pieces: list[str | Conversion] = []
        pos = 0
        ai = 0
        for m in _CONV_RE.finditer(fmt):
            lit = fmt[pos : m.start()]
            pos = m.end()
            if m.group("conv") == "%":
                pieces.append(lit + "%")
                continue
            if lit:
                pieces.append(lit)
            if m.group("width") == "*" or m.group("prec") == "*":
                raise ExprError("'*' widths are not supported")
            conv = m.group("conv")
            ext = m.group("ext") if conv == "p" else ""
            rest = m.group("ext") if conv != "p" else ""
            prev = "".join(x for x in pieces[-1:] if isinstance(x, str))
            km = re.search(r"(\w+)=(?:0x)?$", prev)
            spec = "%" + m.group("flags") + (m.group("width") or "")
            if m.group("prec"):
                spec += "." + m.group("prec")
            lenmod = m.group("len") or ""
            arg = args[ai] if ai < len(args) else None
            ai += 1
            pieces.append(
                Conversion(
                    spec, conv, ext, km.group(1) if km else None, arg,
                    64 if lenmod in ("l", "ll", "z", "j", "L", "t") else 32,
                )
            )  # fmt: skip
            if rest:
                pieces.append(rest)
        if pos < len(fmt):
            pieces.append(fmt[pos:])
        out = cls(pieces, event)
        # keys printed with a constant value in the format itself ("order=0")
        for lit in pieces:
            if isinstance(lit, str):
                for m in _CONST_KEY_RE.finditer(lit):
                    out.constants[m.group(1)] = int(m.group(2), 0)
        return out

    def conversions(self) -> list[Conversion]:
        return [c for c in self.pieces if isinstance(c, Conversion)]

    def keys(self) -> list[str]:
        """The keys of the ``key=%..`` and ``key=<constant>`` pairs it prints."""
        return [c.key for c in self.conversions() if c.key is not None] + list(self.constants)

    def conversion(self, key: str) -> Conversion | None:
        """The conversion printing ``key`` (a constant one for ``key=0`` text), or None."""
        for c in self.conversions():
            if c.key == key:
                return c
        if key in self.constants:
            return Conversion("%", "d", "", key, ("num", self.constants[key]), 64)
        return None

    def values(self, conv: Conversion, col: Callable[[str], np.ndarray], n: int) -> np.ndarray:
        """The argument of ``conv`` over ``n`` records (int64, or str objects)."""
        if conv.arg is None:
            raise ExprError("a conversion without an argument")
        out = _eval(conv.arg, col, n)
        return out if out.shape == (n,) else np.broadcast_to(out, (n,)).copy()

    def coded(
        self, conv: Conversion, col: Callable[[str], np.ndarray], n: int
    ) -> tuple[np.ndarray, list[object]]:
        """The argument of ``conv`` as (index per record, distinct values).

        When the argument reads only integer fields (``__print_flags`` of
        gfp_flags, ``__print_symbolic`` of a migratetype), it is evaluated
        once per distinct combination of those fields, not once per record.
        """
        if conv.arg is None:
            raise ExprError("a conversion without an argument")
        names = _int_fields(conv.arg)
        cols = [np.asarray(col(nm)) for nm in sorted(names or ())]
        if not cols or any(c.dtype == object for c in cols):
            vals = self.values(conv, col, n)
            uniq, inv = np.unique(vals.astype(str) if vals.dtype == object else vals,
                                  return_inverse=True)  # fmt: skip
            return inv.reshape(-1).astype(np.int64), uniq.tolist()
        assert names is not None
        if len(cols) == 1:
            inv, uniq = factorize(cols[0])
            sub = {next(iter(names)): uniq}
        else:
            _, first, inv = np.unique(
                np.stack(cols, axis=1), axis=0, return_index=True, return_inverse=True
            )
            sub = {nm: c[first] for nm, c in zip(sorted(names), cols, strict=True)}
        m = int(next(iter(sub.values())).size)
        out = _eval(conv.arg, lambda nm: sub[nm], m)
        if out.shape != (m,):
            out = np.broadcast_to(out, (m,))
        return inv.reshape(-1).astype(np.int64), out.tolist()

    def render(
        self,
        col: Callable[[str], np.ndarray],
        n: int,
        symbol: Callable[[int], str] | None = None,
    ) -> list[str]:
        """The printed payload of ``n`` records, as libtraceevent prints it."""
        # one %-format for the whole payload: integer conversions keep their own
        # spec over values wrapped in numpy, the others are formatted first (%s)
        fmt: list[str] = []
        args: list[list[object]] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                fmt.append(piece.replace("%", "%%"))
                continue
            vals = self.values(piece, col, n)
            ints = _plain_ints(piece, vals)
            if ints is None:
                fmt.append("%s")
                args.append(_format_values(piece, vals, symbol))  # type: ignore[arg-type]
            else:
                fmt.append(piece.spec + ("d" if piece.conv in ("d", "i") else piece.conv))
                args.append(ints)
        spec = "".join(fmt)
        if not args:
            return [spec % ()] * n
        return [spec % t for t in zip(*args, strict=True)]


def _plain_ints(c: Conversion, vals: np.ndarray) -> list[object] | None:
    """The values of an integer conversion (d i u x X o) as the ints printf prints, or None."""
    if vals.dtype == object or c.conv not in ("d", "i", "u", "x", "X", "o"):
        return None
    ints = vals.astype(np.int64)
    if c.conv in ("d", "i"):
        if c.unsigned_bits == 32:
            ints = ints.astype(np.int32).astype(np.int64)  # printf's int: wraps to 32 bits
        return ints.tolist()  # type: ignore[no-any-return]
    if c.unsigned_bits == 32:
        return (ints & 0xFFFFFFFF).tolist()  # type: ignore[no-any-return]
    return ints.view(np.uint64).tolist()  # type: ignore[no-any-return]


def _format_values(
    c: Conversion, vals: np.ndarray, symbol: Callable[[int], str] | None
) -> list[str]:
    if vals.dtype == object:
        spec = c.spec + "s"
        return [spec % (v,) for v in vals]
    ints = vals.astype(np.int64)
    if c.conv == "p":
        if c.ext[:1] in ("s", "S", "F", "f", "B") and symbol is not None:
            return [symbol(int(v) & ((1 << 64) - 1)) for v in ints.tolist()]
        return [f"0x{int(v) & ((1 << 64) - 1):x}" if v else "(nil)" for v in ints.tolist()]
    if c.conv in ("u", "x", "X", "o"):
        mask = (1 << c.unsigned_bits) - 1
        spec = c.spec + c.conv
        return [spec % (v & mask) for v in ints.tolist()]
    if c.conv == "c":
        return [chr(int(v) & 0xFF) for v in ints.tolist()]
    spec = c.spec + "d"
    if c.unsigned_bits == 32:
        return [spec % (((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)) for v in ints.tolist()]
    return [spec % v for v in ints.tolist()]


def _int_fields(node: Node) -> set[str] | None:
    """The ``REC->field`` names an expression reads, or None when it reads a string."""
    out: set[str] = set()

    def walk(x: object) -> bool:
        if isinstance(x, tuple) and x:
            if x[0] == "field":
                out.add(str(x[1]))
                return True
            if x[0] == "call" and str(x[1]) not in ("__print_flags", "__print_symbolic", "sizeof"):
                return False
            return all(walk(y) for y in x[1:])
        if isinstance(x, list):
            return all(walk(y) for y in x)
        return True

    return out if walk(node) else None
