"""The polars implementation of canonical-file ingest, kept as an independent reference.

This was replay.trace.canonical until ingest became streaming (numba, chunk by
chunk): it reads the whole file into one Arrow table and validates and fills
it in with polars over the whole table (joins, group_bys). The differential
tests in test_canonical.py check the streaming ingester against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from replay.errors import BadInputError
from replay.trace.canonical import META_KEY, REQUIRED
from replay.trace.schema import (
    EVENT_SCHEMA,
    MAX_ORDER,
    MIGRATE_MOVABLE,
    OP_DICTIONARY,
)


def read_table(path: Path, kind: str) -> tuple[pa.Table, dict[str, Any]]:
    """Read the file into an Arrow table plus the replay metadata stored with it."""
    name = str(path)
    try:
        if kind == "parquet":
            table = pq.read_table(path)
        elif kind == "arrow":
            with open(path, "rb") as f:
                magic = f.read(6)
            if magic == b"ARROW1":
                table = ipc.open_file(path).read_all()
            else:
                table = ipc.open_stream(path).read_all()
        else:
            table = pacsv.read_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={"gfp": pa.string(), "comm": pa.string(), "op": pa.string()},
                    strings_can_be_null=True,
                ),
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"cannot read as {kind}: {exc}", file=name) from exc
    meta: dict[str, Any] = {}
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw:
        try:
            meta = json.loads(raw)
        except ValueError:
            meta = {}
    return table, meta


def _pages(col: str) -> pl.Expr:
    """2**order as an Int64 expression: pages of a block of that order."""
    return pl.lit(2, pl.Int64).pow(pl.col(col).cast(pl.UInt32))


def _where(kind: str, row: int) -> int:
    """The line number a row is reported at: CSV counts its header line."""
    return row + 2 if kind == "csv" else row + 1


def _fail(path: Path, kind: str, row: int, fieldname: str, message: str) -> BadInputError:
    unit = "" if kind == "csv" else f" (row {row + 1})"
    return BadInputError(message + unit, file=str(path), line=_where(kind, row), field=fieldname)


def canonicalise(table: pa.Table, path: Path, kind: str) -> tuple[pa.Table, dict[str, int]]:
    """Validate a canonical table and fill in the missing columns.

    Returns the table in EVENT_SCHEMA and the pairing counts.
    """
    missing = [c for c in REQUIRED if c not in table.column_names]
    if missing:
        raise BadInputError(
            f"missing required column(s) {', '.join(missing)} (need at least op,obj,order)",
            file=str(path),
            field=missing[0],
        )
    if table.num_rows == 0:
        raise BadInputError("no events (the file has no rows)", file=str(path))
    df = pl.from_arrow(table)
    assert isinstance(df, pl.DataFrame)
    n = df.height
    df = df.with_columns(pl.Series("_row", np.arange(n, dtype=np.int64)))

    def int_col(col: str, dtype: pl.DataType) -> None:
        nonlocal df
        s = df[col]
        if s.dtype == pl.String:
            cast = s.cast(dtype, strict=False)
            bad = cast.is_null() & s.is_not_null()
        else:
            try:
                cast = s.cast(dtype, strict=True)
            except pl.exceptions.InvalidOperationError as exc:
                raise BadInputError(str(exc), file=str(path), field=col) from exc
            bad = pl.Series([False] * n)
        if bad.any():
            r = int(bad.arg_true()[0])
            raise _fail(path, kind, r, col, f"expected an integer, got {s[r]!r}")
        df = df.with_columns(cast.alias(col))

    if "seq" in df.columns:
        int_col("seq", pl.Int64)
        if df["seq"].is_null().any() or df["seq"].is_duplicated().any():
            r = int((df["seq"].is_null() | df["seq"].is_duplicated()).arg_true()[0])
            raise _fail(path, kind, r, "seq", "seq must be unique and not empty")
        df = df.sort("seq", maintain_order=True)
    op = df["op"].cast(pl.String).str.strip_chars().str.to_lowercase()
    bad_op = ~op.is_in(["alloc", "free"]) | op.is_null()
    if bad_op.any():
        r = int(df["_row"][int(bad_op.arg_true()[0])])
        raise _fail(
            path, kind, r, "op", f"must be 'alloc' or 'free', got {table['op'][r].as_py()!r}"
        )
    df = df.with_columns(op.alias("op"))
    int_col("obj", pl.Int64)
    if df["obj"].is_null().any():
        r = int(df["_row"][int(df["obj"].is_null().arg_true()[0])])
        raise _fail(path, kind, r, "obj", "obj must not be empty")
    int_col("order", pl.Int64)
    is_alloc = df["op"] == "alloc"
    bad_order = (df["order"].is_not_null() & ((df["order"] < 0) | (df["order"] > MAX_ORDER))) | (
        df["order"].is_null() & is_alloc
    )
    if bad_order.any():
        i = int(bad_order.arg_true()[0])
        raise _fail(
            path,
            kind,
            int(df["_row"][i]),
            "order",
            f"order {df['order'][i]} is outside 0..{MAX_ORDER}",
        )
    for col in ("offset", "migratetype", "ts_ns", "pfn", "cpu", "pid", "region", "vpn"):
        if col in df.columns:
            int_col(col, pl.Int64)
    if "migratetype" in df.columns:
        bad_mt = df["migratetype"].is_not_null() & (
            (df["migratetype"] < -1) | (df["migratetype"] > 5)
        )
        if bad_mt.any():
            i = int(bad_mt.arg_true()[0])
            raise _fail(
                path,
                kind,
                int(df["_row"][i]),
                "migratetype",
                f"migratetype {df['migratetype'][i]} is not one of 0..5",
            )

    # Objects: one alloc each, before any free of it.
    allocs = df.filter(is_alloc).select("obj", "order", "_row", pl.int_range(pl.len()).alias("_k"))
    dup = allocs["obj"].is_duplicated()
    if dup.any():
        first_dup = (
            allocs.filter(dup).group_by("obj").agg(pl.col("_row").sort().get(1)).sort("_row")
        )
        r = int(first_dup["_row"][0])
        raise _fail(path, kind, r, "obj", f"object {first_dup['obj'][0]} is allocated twice")
    pos = pl.Series("_pos", np.arange(n, dtype=np.int64))
    df = df.with_columns(pos)
    alloc_pos = df.filter(is_alloc).select(
        pl.col("obj"),
        pl.col("_pos").alias("_apos"),
        pl.col("order").alias("_oorder"),
        (pl.col("migratetype") if "migratetype" in df.columns else pl.lit(None, pl.Int64)).alias(
            "_omt"
        ),
    )
    df = df.join(alloc_pos, on="obj", how="left", maintain_order="left")
    # A free with no alloc of its object is a page allocated before tracing
    # began only when it names a recorded pfn (ftrace-derived traces); in a
    # hand-written or synthetic trace it is a mistake.
    has_pfn = pl.col("pfn").is_not_null() if "pfn" in df.columns else pl.lit(False)
    frees = df.filter(pl.col("op") == "free")
    unknown = frees.filter(
        (pl.col("_apos").is_null() & ~has_pfn) | (pl.col("_apos") > pl.col("_pos"))
    )
    if unknown.height:
        r = int(unknown["_row"][0])
        raise _fail(
            path,
            kind,
            r,
            "obj",
            f"free of unknown object {unknown['obj'][0]} (no earlier alloc of it, "
            "and no pfn to mark it as allocated before tracing began)",
        )
    pre = frees.filter(pl.col("_apos").is_null())
    if pre.height:
        dup_pre = pre.filter(pl.col("obj").is_duplicated())
        if dup_pre.height:
            raise _fail(
                path,
                kind,
                int(dup_pre["_row"][1]),
                "obj",
                f"object {dup_pre['obj'][0]} (allocated before tracing) is freed twice",
            )
        df = df.with_columns(
            pl.when(pl.col("_apos").is_null())
            .then(pl.col("order"))
            .otherwise(pl.col("_oorder"))
            .alias("_oorder"),
            pl.when(pl.col("_apos").is_null())
            .then(pl.lit(-1))
            .otherwise(pl.col("_omt"))
            .alias("_omt"),
        )
    if "offset" not in df.columns:
        df = df.with_columns(pl.lit(0, pl.Int64).alias("offset"))
    df = df.with_columns(
        pl.col("offset").fill_null(0),
        pl.when(pl.col("op") == "free")
        .then(pl.col("order").fill_null(pl.col("_oorder")))
        .otherwise(pl.col("order"))
        .alias("order"),
    )
    frees = df.filter(pl.col("op") == "free")
    too_big = frees.filter(
        (pl.col("order") > pl.col("_oorder"))
        | (pl.col("offset") < 0)
        | (pl.col("offset") + _pages("order") > _pages("_oorder"))
        | ((pl.col("offset") % _pages("order")) != 0)
    )
    if too_big.height:
        r = int(too_big["_row"][0])
        raise _fail(
            path,
            kind,
            r,
            "offset",
            f"freed part (offset {too_big['offset'][0]}, order {too_big['order'][0]}) "
            f"is not an aligned part of object {too_big['obj'][0]} "
            f"(order {too_big['_oorder'][0]})",
        )
    freed = frees.group_by("obj").agg(
        _pages("order").sum().alias("_freed"),
        pl.col("_oorder").first(),
        pl.col("_row").max().alias("_last"),
        pl.col("offset").is_duplicated().any().alias("_dupoff"),
    )
    over = freed.filter((pl.col("_freed") > _pages("_oorder")) | pl.col("_dupoff"))
    if over.height:
        over = over.sort("_last")
        raise _fail(
            path, kind, int(over["_last"][0]), "obj", f"object {over['obj'][0]} is freed twice"
        )

    mt = pl.col("migratetype") if "migratetype" in df.columns else pl.lit(None, pl.Int64)
    df = df.with_columns(
        pl.when(pl.col("op") == "alloc")
        .then(mt.fill_null(MIGRATE_MOVABLE))
        .otherwise(pl.col("_omt").fill_null(MIGRATE_MOVABLE))
        .cast(pl.Int64)
        .alias("migratetype")
    )
    seq = np.arange(n, dtype=np.int64)
    cols: dict[str, pa.Array] = {}

    def get(col: str, typ: pa.DataType, default: Any = None) -> pa.Array:
        if col in df.columns:
            return df[col].to_arrow().cast(typ)
        if default is None:
            return pa.nulls(n, typ)
        return pa.array(default, type=typ)

    op_idx = np.where((df["op"] == "alloc").to_numpy(), 0, 1).astype(np.int8)
    cols["seq"] = pa.array(seq)
    cols["ts_ns"] = get("ts_ns", pa.int64(), seq) if "ts_ns" in df.columns else pa.array(seq)
    if cols["ts_ns"].null_count:
        raise BadInputError("ts_ns has empty values", file=str(path), field="ts_ns")
    cols["op"] = pa.DictionaryArray.from_arrays(pa.array(op_idx), OP_DICTIONARY)
    cols["obj"] = get("obj", pa.int64())
    cols["offset"] = get("offset", pa.int32())
    cols["order"] = get("order", pa.int8())
    cols["migratetype"] = get("migratetype", pa.int8())
    cols["gfp"] = get("gfp", pa.string()).dictionary_encode().cast(EVENT_SCHEMA.field("gfp").type)
    cols["pfn"] = get("pfn", pa.int64())
    cols["cpu"] = get("cpu", pa.int16())
    cols["pid"] = get("pid", pa.int32())
    comm = get("comm", pa.string())
    cols["comm"] = comm.dictionary_encode().cast(EVENT_SCHEMA.field("comm").type)
    cols["region"] = get("region", pa.int64())
    cols["vpn"] = get("vpn", pa.int64())
    cols["movable"] = get("movable", pa.bool_())
    cols["line"] = pa.array(df["_row"].to_numpy() + (2 if kind == "csv" else 1))
    cols["batched"] = get("batched", pa.bool_())
    cols["failed"] = get("failed", pa.bool_())
    out = pa.Table.from_arrays([cols[c] for c in EVENT_SCHEMA.names], schema=EVENT_SCHEMA)

    # requests the kernel failed (failed = true) got no pages: not allocations
    n_failed = int(df["failed"].fill_null(False).sum()) if "failed" in df.columns else 0
    n_alloc = int(is_alloc.sum()) - n_failed
    live_pages = freed.join(allocs.select("obj"), on="obj", how="inner")
    fully_freed = live_pages.filter(pl.col("_freed") == _pages("_oorder")).height
    partial = int(
        frees.filter(~((pl.col("offset") == 0) & (pl.col("order") == pl.col("_oorder")))).height
    )
    counts = {
        "allocs": n_alloc,
        "frees": n - n_alloc - n_failed,
        "partial_frees": partial,
        "preexisting": pre.height,
        "failed_allocs": n_failed,
        "batched": int(df["batched"].fill_null(False).sum()) if "batched" in df.columns else 0,
        "live_at_end": n_alloc - fully_freed,
    }
    return out, counts
