"""numpy arrays and scalars as typed data: a dtype, a shape and one raw
frame holding the buffer (dask's ``protocol/numpy.py`` shape), so an array
crosses without JSON, base64 or pickle, and without a key.

numpy is imported only when a value's type comes from it: warren never
requires it. Arrays of Python objects (dtype ``O``) are not raw data and go
to the pickle codec instead; a header that asks for one is refused.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

TAG = "$t"
#: What :func:`decode` returns for a tag that is not numpy's.
NOT_NUMPY = object()


def encode(v: object, frame: Callable[[Any], int]) -> dict[str, Any] | None:
    """``v`` as a node if it is a numpy array or scalar of plain data."""
    if not type(v).__module__.startswith("numpy") or "numpy" not in sys.modules:
        return None
    import numpy as np

    if isinstance(v, np.ndarray):
        if v.dtype.hasobject or v.dtype.fields is not None:
            return None
        data = v if v.flags.c_contiguous else np.ascontiguousarray(v)
        return {
            TAG: "ndarray",
            "dtype": data.dtype.str,
            "shape": list(data.shape),
            "f": frame(memoryview(data.reshape(-1).view("u1")) if data.size else b""),
        }
    if isinstance(v, np.generic) and not v.dtype.hasobject:
        return {TAG: "npscalar", "dtype": v.dtype.str, "f": frame(v.tobytes())}
    return None


def decode(
    tag: object, n: dict[str, Any], frame: Callable[[object], bytearray | memoryview]
) -> Any:
    """The array or scalar of a numpy node, or :data:`NOT_NUMPY`."""
    if tag not in ("ndarray", "npscalar"):
        return NOT_NUMPY
    import numpy as np

    dtype = np.dtype(str(n.get("dtype")))
    if dtype.hasobject:
        raise ValueError("an array of Python objects is not plain data: refused")
    data = frame(n.get("f"))
    if tag == "npscalar":
        return np.frombuffer(data, dtype=dtype, count=1)[0]
    shape = n.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ValueError(f"bad array shape {shape!r}")
    count = 1
    for d in shape:
        count *= d
    if count * dtype.itemsize != len(data):
        raise ValueError(
            f"an array of shape {shape} and dtype {dtype} needs {count * dtype.itemsize} "
            f"bytes, not {len(data)}"
        )
    # Writable memory, as the sender's array had: an opened envelope's
    # frames are bytearrays already (one per array), or writable views of
    # the envelope read from an object store, so this copies nothing.
    writable = type(data) is bytearray or (type(data) is memoryview and not data.readonly)
    owned = data if writable else bytearray(data)
    return np.frombuffer(owned, dtype=dtype).reshape(shape)
