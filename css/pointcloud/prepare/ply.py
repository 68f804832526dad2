"""Reading the vertex element of PLY files.

Positions and colours are read with open3d's tensor API (``open3d.t.io.read_point_cloud``), which
keeps the file's dtypes (uchar colours stay uint8) and exposes extra vertex properties such as
``label``. open3d 0.20 skips properties of some types (``ushort``, ``short``, ``uint``...) with
only a warning, so :func:`read_vertices` checks the header: when a wanted property is declared but
open3d did not return it, the vertex element is read with numpy instead (ascii and binary PLY).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from css.errors import DataError, require

_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


def read_header(path: Path) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]], int]:
    """(format, [(element, count, [(property, type)])], byte offset of the data)."""
    with open(path, "rb") as f:
        if f.readline().strip() != b"ply":
            raise DataError(f"{path} is not a PLY file (it does not start with 'ply')")
        fmt, elements = "", []
        while True:
            line = f.readline()
            if not line:
                raise DataError(f"{path}: the PLY header has no end_header line; the file is damaged")
            words = line.decode("latin-1").split()
            if not words or words[0] in ("comment", "obj_info"):
                continue
            if words[0] == "end_header":
                return fmt, elements, f.tell()
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                elements.append((words[1], int(words[2]), []))
            elif words[0] == "property" and elements:
                if words[1] == "list":
                    elements[-1][2].append((words[-1], "list:" + words[2] + ":" + words[3]))
                else:
                    elements[-1][2].append((words[2], words[1]))


def check_complete(path: Path, fmt: str, elements, offset: int) -> None:
    """A PLY file cut short (a copy or download that stopped) holds fewer vertices than its header
    declares. open3d then fills the missing ones with zeros after an RPly message, so this is
    checked here: by size for binary files, by counting complete lines for ascii ones."""
    if not elements or elements[0][0] != "vertex":
        return
    _, count, props = elements[0]
    if fmt == "ascii":
        lines = 0
        with open(path, "rb") as f:
            f.seek(offset)
            while lines < count:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                lines += chunk.count(b"\n")
        held = min(lines, count)
    elif all(t in _TYPES for _, t in props):  # fixed-size vertex records
        size = sum(np.dtype(_TYPES[t]).itemsize for _, t in props)
        held = (path.stat().st_size - offset) // size if size else count
    else:
        return
    if held < count:
        raise DataError(f"{path}: the header declares {count} vertices, the file holds {held}; it is truncated. "
                        f"Copy or download the file again")


def _read_numpy(path: Path) -> dict[str, np.ndarray]:
    """Every scalar property of the vertex element, read with numpy (vertex must come first)."""
    fmt, elements, offset = read_header(path)
    if not elements or elements[0][0] != "vertex":
        raise DataError(f"{path}: the first PLY element is not 'vertex'; write the vertices first")
    _, count, props = elements[0]
    if any(t.startswith("list:") for _, t in props):
        raise DataError(f"{path}: the vertex element has a list property; store one value per property")
    unknown = [t for _, t in props if t not in _TYPES]
    if unknown:
        raise DataError(f"{path}: unknown PLY property type {unknown[0]!r}; use one of {sorted(_TYPES)}")
    if fmt == "ascii":
        with open(path, "rb") as f:
            f.seek(offset)
            rows = [f.readline() for _ in range(count)]
        fields = [r.split() for r in rows]
        bad = next((k for k, row in enumerate(fields) if len(row) != len(props)), None)
        if bad is not None:
            raise DataError(f"{path}: vertex {bad} has {len(fields[bad])} values, the header declares {len(props)} "
                            f"properties; the file is truncated or damaged. Copy or download it again")
        try:
            table = np.asarray(fields, dtype=np.float64).reshape(count, len(props))
        except ValueError as exc:
            raise DataError(f"{path}: a vertex value is not a number ({exc}); the file is damaged") from None
        return {name: table[:, k].astype(_TYPES[t]) for k, (name, t) in enumerate(props)}
    order = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(fmt)
    if order is None:
        raise DataError(f"{path}: unknown PLY format {fmt!r}")
    dtype = np.dtype([(name, order + _TYPES[t]) for name, t in props])
    data = np.fromfile(path, dtype=dtype, count=count, offset=offset)
    if len(data) != count:
        raise DataError(f"{path}: the header declares {count} vertices, the file holds {len(data)}; it is truncated")
    return {name: data[name].astype(data[name].dtype.newbyteorder("=")) for name in dtype.names}


def read_vertices(path: str | Path, *, wanted: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """``coord`` (n, 3) float64, ``color`` (n, 3) uint8 or None, and each property named in
    ``wanted`` that the file has (1-D arrays)."""
    path = Path(path)
    fmt, elements, offset = read_header(path)
    check_complete(path, fmt, elements, offset)
    vertex = next((e for e in elements if e[0] == "vertex"), None)
    if vertex is None:
        raise DataError(f"{path}: the PLY file has no vertex element")
    declared = {name for name, _ in vertex[2]}
    o3d = require("open3d", needed_for="reading PLY files", install="pip install open3d==0.20.0")
    # open3d warns about each property type it skips; those are read below, so the warning would
    # only mislead
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        cloud = o3d.t.io.read_point_cloud(str(path))
    point = cloud.point
    have = set(point)
    if "positions" not in have or len(point["positions"]) != vertex[1]:
        raise DataError(f"{path}: open3d read no x, y, z vertex positions (header: {sorted(declared)}); "
                        f"the file must hold float x, y, z per vertex")
    out: dict[str, np.ndarray] = {"coord": point["positions"].numpy().astype(np.float64)}
    out["color"] = _colours(path, point["colors"].numpy()) if "colors" in have else None
    missing = [w for w in wanted if w in declared and w not in have]
    if missing:
        table = _read_numpy(path)   # open3d skipped a property type it does not support
        for name in wanted:
            if name in table:
                out[name] = table[name]
    else:
        for name in wanted:
            if name in have:
                out[name] = point[name].numpy().reshape(-1)
    return out


def _colours(path: Path, colors: np.ndarray) -> np.ndarray:
    """Colours as uint8; float colours (0-1) must be exact multiples of 1/255."""
    if colors.dtype == np.uint8:
        return colors
    scaled = colors.astype(np.float64) * (255.0 if colors.max(initial=0) <= 1.0 else 1.0)
    rounded = np.rint(scaled)
    if np.abs(scaled - rounded).max(initial=0) > 1e-3 or rounded.min(initial=0) < 0 or rounded.max(initial=0) > 255:
        raise DataError(f"{path}: vertex colours are not 0-255 integers (dtype {colors.dtype}); store red, "
                        f"green, blue as uchar")
    return rounded.astype(np.uint8)
