"""Files written so a reader never sees half of one, and their digests: the helpers every writer uses.

`atomic_write` puts the data under a temporary name beside the target, fsyncs it and renames it into place;
`open_regular` refuses anything but a regular file before reading (a FIFO named like an image would block).
Standard library only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import uuid
from typing import Any, BinaryIO


def atomic_write(path: str, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str, obj: Any) -> None:
    """`atomic_write` of pretty, UTF-8 JSON (non-ASCII category names stay readable)."""
    atomic_write(path, (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def open_regular(path: str) -> BinaryIO:
    """`path` opened for binary reading, refused unless it is a regular file (after links): opening a FIFO named
    like an image waits for a writer forever, and a device never ends.

    Raises:
        OSError: for a path that is not a regular file, naming it, or that cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)       # returns at once, even for a FIFO nobody writes to
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a folder, a FIFO, a device or a socket): reading it "
                                        "could wait forever", path)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open_regular(path) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


SAFETENSORS_HEADER_MAX = 100 << 20     # the safetensors library refuses a longer header too


def safetensors_names(path: str) -> list[str]:
    """The tensor names a safetensors file's header lists, read without a tensor library (the launcher's checks).

    Raises:
        ValueError: saying why the file is not a safetensors file.
        OSError: for a file that cannot be read.
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        prefix = f.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{size} bytes, shorter than a safetensors header")
        length = int.from_bytes(prefix, "little")
        if length > min(size - 8, SAFETENSORS_HEADER_MAX):
            raise ValueError(f"its header's length ({length} bytes) runs past the file's end ({size} bytes)")
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ValueError("its header is not JSON") from None
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    return [name for name in header if name != "__metadata__"]
