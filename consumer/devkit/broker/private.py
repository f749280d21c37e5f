"""Files and directories of the local broker that only the user running it may read.

The secured broker's state holds passwords and private keys, and a broker's data holds whatever
tests produced; another local user must not read either. Everything is created with its final
mode (never written first and narrowed afterwards), and the broker's own processes run with
`UMASK`, so the files Kafka creates are private too.
"""

from __future__ import annotations

import os
from pathlib import Path

UMASK = 0o077
"""For the StorageTool and broker processes: their files come out 0600, their directories 0700."""


def private_dir(path: Path) -> Path:
    """`path` as a directory only its owner may enter, narrowing one left by an older version."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, data: bytes | str) -> None:
    """Replace `path` with a new 0600 file holding `data`.

    The old file is removed first: reopening it would keep whatever mode it had.
    """
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data.encode() if isinstance(data, str) else data)
