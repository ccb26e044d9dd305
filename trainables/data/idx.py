"""IDX files (MNIST's format, Fashion-MNIST's too), gzipped as Zalando and Debian ship them or not.

An IDX file is a 4-byte magic (two zero bytes, the element type, the number of dimensions), one
big-endian uint32 per dimension, then the elements in row-major order. MNIST and Fashion-MNIST
hold unsigned bytes (type 0x08): images ``(n, 28, 28)`` in ``*-images-idx3-ubyte``, labels
``(n,)`` in ``*-labels-idx1-ubyte``. Anything else, a file shorter or longer than its header
says, and a gzip stream that is cut off or fails its checksum are refused with one line naming
the file and what is wrong.
"""
import zlib

import numpy as np

from trainables.errors import UserError

UBYTE = 0x08
GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path, ndim):
    """The uint8 array in ``path`` (an IDX file of ``ndim`` dimensions, gzipped or not)."""
    data, cut_off = _file_bytes(path)
    header = 4 + 4 * ndim
    stops = " before its gzip stream stops" if cut_off else ""
    magic = bytes([0, 0, UBYTE, ndim])
    if len(data) >= 4 and data[:4] != magic:
        raise UserError(f"{path}: not an IDX file of unsigned bytes in {ndim} dimension(s): "
                        f"magic {data[:4].hex()}, expected {magic.hex()}")
    if len(data) < header:
        raise UserError(f"{path}: truncated: the header needs {header} bytes, the file holds {len(data)}{stops}")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims, dtype=np.int64))
    held = len(data) - header
    if cut_off or held != expected:
        what = "truncated" if cut_off or held < expected else "too long"
        raise UserError(f"{path}: {what}: header says {'x'.join(map(str, dims))} bytes, file holds {held}{stops}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _file_bytes(path):
    """``(bytes, cut_off)``: the file's bytes, gunzipped when it starts with gzip's magic (whatever
    its name); ``cut_off`` when the gzip stream ends without its end marker."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != GZIP_MAGIC:
        if str(path).endswith(".gz"):
            raise UserError(f"{path}: not a gzip file: it starts with {raw[:2].hex() or 'nothing'}, gzip with 1f8b")
        return raw, False
    parts = []
    while raw:   # a gzip file may hold several members, one after the other
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)   # checks each member's CRC-32 and length
        try:
            parts.append(stream.decompress(raw))
        except zlib.error as err:
            raise UserError(f"{path}: corrupt gzip data ({err})") from err
        if not stream.eof:
            return b"".join(parts), True
        raw = stream.unused_data
    return b"".join(parts), False
