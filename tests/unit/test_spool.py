"""The ingress's spool: pure units on real files in tmp_path, and one real process SIGKILLed."""

from __future__ import annotations

import asyncio
import errno
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumer.ingress import spool as spool_module
from consumer.ingress.spool import (
    Spool,
    SpooledCallback,
    SpoolError,
    SpoolFull,
    SpoolUnwritable,
    TornRecord,
)
from consumer.ingress.spool_files import encode, forget

SEGMENT = "00000000000000000001.spool"


def callback(n: int) -> SpooledCallback:
    """A callback whose body says its arrival number."""
    body = b'{"eventType":"recordingAvailable","recordingId":"r-%06d"}' % n
    return SpooledCallback(body, b"r-%06d" % n, (("ingress.received_at", b"%06d" % n),))


def numbers(entries: list[SpooledCallback]) -> list[int]:
    """The arrival numbers of `entries`, each checked to be whole."""
    found = []
    for entry in entries:
        assert entry.key is not None
        found.append(int(entry.key[2:]))
        assert entry == callback(found[-1])
    return found


def segments(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".spool"))


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> int:
    """Segments rolled after about four callbacks, so a few dozen span several files."""
    size = 4 * len(encode(callback(10)))
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", size)
    return size


@pytest.fixture
def opened() -> Iterator[list[Spool]]:
    """Spools opened by a test, closed after it."""
    spools: list[Spool] = []
    yield spools
    for spool in spools:
        spool.close()


def reopen(opened: list[Spool], directory: Path, max_bytes: int = 2**30) -> Spool:
    """Close the last spool opened (if any) and open `directory` again."""
    if opened:
        opened.pop().close()
    opened.append(Spool.open(directory, max_bytes))
    return opened[-1]


async def fill(spool: Spool, first: int, count: int) -> None:
    for n in range(first, first + count):
        await spool.append(callback(n))


async def test_round_trip_in_order_across_segment_rolls_and_reopen(
    tmp_path: Path, opened: list[Spool], small_segments: int
) -> None:
    """Sequential and concurrent appends come back whole and in arrival order, from several
    segment files, and the same after the spool is opened again."""
    directory = tmp_path / "spool"
    spool = reopen(opened, directory)
    await fill(spool, 0, 10)
    await asyncio.gather(*(spool.append(callback(n)) for n in range(10, 30)))
    assert numbers(spool.oldest(100)) == list(range(30))
    assert numbers(spool.oldest(7)) == list(range(7))
    files = segments(directory)
    assert len(files) == 8
    on_disk = sum((directory / name).stat().st_size for name in files)
    assert spool.size_bytes == on_disk == 30 * len(encode(callback(10)))
    assert all((directory / name).stat().st_size <= small_segments for name in files)

    spool = reopen(opened, directory)
    assert (len(spool), spool.size_bytes, spool.torn) == (30, on_disk, ())
    assert numbers(spool.oldest(100)) == list(range(30))
    await fill(spool, 30, 3)
    assert numbers(spool.oldest(100)) == list(range(33))


async def test_removed_entries_never_come_back_and_the_others_do(
    tmp_path: Path, opened: list[Spool], small_segments: int
) -> None:
    """Removal is durable across reopen, across segment boundaries; forwarded files are deleted,
    and a spool emptied keeps no segment file and starts a new one for the next append."""
    directory = tmp_path / "spool"
    spool = reopen(opened, directory)
    await fill(spool, 0, 20)
    size = len(encode(callback(10)))
    await spool.remove(3)
    assert (len(spool), spool.size_bytes) == (17, 17 * size)
    spool = reopen(opened, directory)
    assert numbers(spool.oldest(100)) == list(range(3, 20))

    before = segments(directory)
    await spool.remove(6)  # past the first segment and into the third
    assert segments(directory) == before[2:]
    spool = reopen(opened, directory)
    assert numbers(spool.oldest(100)) == list(range(9, 20))
    assert spool.size_bytes == 11 * size

    await spool.remove(11)
    assert (len(spool), spool.size_bytes, segments(directory)) == (0, 0, [])
    spool = reopen(opened, directory)
    assert (len(spool), spool.oldest(10)) == (0, [])
    await fill(spool, 20, 2)
    assert len(segments(directory)) == 1
    assert segments(directory)[0] > before[-1]
    spool = reopen(opened, directory)
    assert numbers(spool.oldest(10)) == [20, 21]
    with pytest.raises(ValueError, match="cannot remove 3 of 2"):
        await spool.remove(3)


async def test_an_append_after_a_marker_that_failed_past_its_rename_survives_a_restart(
    tmp_path: Path, opened: list[Spool], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Everything forwarded, the marker renamed, then the forwarded file's deletion or the
    directory's fsync fails: a callback appended next (and answered 200) must not go into a
    file the new marker already counts as forwarded, or the next start deletes it."""
    directory = tmp_path / "spool"
    spool = reopen(opened, directory)
    await fill(spool, 0, 2)

    def forget_then_fail(directory: Path, mark: tuple[int, int], doomed: list[Path]) -> None:
        forget(directory, mark, doomed)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spool_module, "forget", forget_then_fail)
    with pytest.raises(SpoolUnwritable):
        await spool.remove(2)
    monkeypatch.undo()
    await spool.append(callback(2))
    spool = reopen(opened, directory)
    assert numbers(spool.oldest(10)) == [2]


async def test_a_cancelled_append_does_not_stop_the_others(
    tmp_path: Path, opened: list[Spool]
) -> None:
    """A caller cancelled while its append waits (a client hanging up) gets CancelledError; the
    appends queued with it still complete in order, and its own entry is stored whole anyway
    (at most a duplicate when the client retries, never a half record or a hung caller)."""
    spool = reopen(opened, tmp_path)
    tasks = [asyncio.create_task(spool.append(callback(n))) for n in range(3)]
    await asyncio.sleep(0)  # all three queued, the first batch being written
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] is None
    assert isinstance(results[1], asyncio.CancelledError)
    assert results[2] is None
    assert numbers(reopen(opened, tmp_path).oldest(10)) == [0, 1, 2]


async def three_records(directory: Path, opened: list[Spool]) -> tuple[bytes, int]:
    """A one-segment spool of callbacks 0, 1, 2, closed: its file's bytes and where 2 begins."""
    spool = reopen(opened, directory)
    await fill(spool, 0, 3)
    opened.pop().close()
    data = (directory / SEGMENT).read_bytes()
    return data, len(data) - len(encode(callback(2)))


async def test_a_record_cut_at_any_byte_is_cut_off_and_reported(
    tmp_path: Path, opened: list[Spool]
) -> None:
    """A file cut anywhere inside its last record (a crash before the fsync) reopens with the
    whole records before it, a TornRecord saying where and how much, and the file truncated
    there; the next append follows the whole records and nothing half is ever read."""
    data, last = await three_records(tmp_path / "original", opened)
    for cut in range(last + 1, len(data)):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        (directory / SEGMENT).write_bytes(data[:cut])
        spool = reopen(opened, directory)
        assert spool.torn == (TornRecord(SEGMENT, last, cut - last),)
        assert numbers(spool.oldest(10)) == [0, 1]
        assert (directory / SEGMENT).read_bytes() == data[:last]
        await spool.append(callback(3))
        spool = reopen(opened, directory)
        assert (spool.torn, numbers(spool.oldest(10))) == ((), [0, 1, 3])


async def test_a_flipped_byte_in_the_last_record_fails_its_checksum(
    tmp_path: Path, opened: list[Spool]
) -> None:
    """Whichever byte of the last record (length, checksum or payload) is flipped, the record
    is dropped and reported, and the records before it are kept."""
    data, last = await three_records(tmp_path / "original", opened)
    for at in range(last, len(data)):
        directory = tmp_path / f"flip-{at}"
        directory.mkdir()
        (directory / SEGMENT).write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :])
        spool = reopen(opened, directory)
        assert spool.torn == (TornRecord(SEGMENT, last, len(data) - last),)
        assert numbers(spool.oldest(10)) == [0, 1]


async def test_a_corrupt_record_in_the_middle_ends_its_segment_only(
    tmp_path: Path, opened: list[Spool], small_segments: int
) -> None:
    """A bad record inside an earlier segment (disk damage, not a crash): that segment is read
    up to it and cut there, since nothing after a bad length can be trusted to be framed; the
    loss is reported with its offset and size, and the other segments are kept whole."""
    directory = tmp_path / "spool"
    spool = reopen(opened, directory)
    await fill(spool, 0, 12)  # segments of callbacks 0-3, 4-7, 8-11
    opened.pop().close()
    middle = directory / segments(directory)[1]
    data = middle.read_bytes()
    size = len(encode(callback(10)))
    middle.write_bytes(data[: size + 9] + b"\xff" + data[size + 10 :])  # callback 5's payload

    spool = reopen(opened, directory)
    assert spool.torn == (TornRecord(middle.name, size, len(data) - size),)
    assert numbers(spool.oldest(100)) == [0, 1, 2, 3, 4, 8, 9, 10, 11]
    assert middle.read_bytes() == data[:size]
    spool = reopen(opened, directory)
    assert (spool.torn, len(spool)) == ((), 9)


async def test_a_record_changed_on_disk_after_open_is_refused(
    tmp_path: Path, opened: list[Spool]
) -> None:
    """`oldest` checks every record it reads back: a record damaged under a running spool
    raises SpoolError instead of being forwarded as garbage."""
    spool = reopen(opened, tmp_path)
    await fill(spool, 0, 2)
    with (tmp_path / SEGMENT).open("r+b") as file:
        file.seek(20)
        file.write(b"X")
    with pytest.raises(SpoolError, match=f"{SEGMENT}:0 changed on disk"):
        spool.oldest(2)


async def test_full_at_the_cap_and_room_again_after_remove(
    tmp_path: Path, opened: list[Spool]
) -> None:
    """An append that would pass max_bytes raises SpoolFull and stores nothing, concurrent
    appends included; removing entries makes room again."""
    size = len(encode(callback(10)))
    spool = reopen(opened, tmp_path, max_bytes=3 * size)
    await fill(spool, 10, 2)
    results = await asyncio.gather(
        spool.append(callback(12)), spool.append(callback(13)), return_exceptions=True
    )
    assert results[0] is None
    assert isinstance(results[1], SpoolFull)
    assert f"holds {3 * size} bytes of {3 * size}" in str(results[1])
    assert (tmp_path / SEGMENT).stat().st_size == spool.size_bytes == 3 * size
    await spool.remove(1)
    await spool.append(callback(13))
    assert numbers(spool.oldest(10)) == [11, 12, 13]


@pytest.fixture
def immutable(tmp_path: Path) -> Iterator[list[Path]]:
    """Paths made immutable with chattr +i: even root cannot create, write or delete there,
    as on a read-only volume (chmod would not stop root). Made mutable again after the test."""
    paths: list[Path] = []
    yield paths
    subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


async def chattr(flag: str, *paths: Path) -> None:
    process = await asyncio.create_subprocess_exec("chattr", flag, *map(str, paths))
    assert await process.wait() == 0


async def make_immutable(paths: list[Path], *more: Path) -> None:
    await chattr("+i", *more)
    paths.extend(more)


async def test_a_read_only_directory_is_unwritable(
    tmp_path: Path, opened: list[Spool], immutable: list[Path]
) -> None:
    """When the OS refuses to create a segment file (an immutable directory, which stops root
    too), append raises SpoolUnwritable with the OSError as cause and stores nothing; when the
    directory is writable again, appends succeed. A remove whose marker is refused the same way
    raises SpoolUnwritable: the entry is gone from this process (never handed out twice) but
    stays on disk, so a restart forwards it again, until `mark` succeeds."""
    directory = tmp_path / "spool"
    spool = reopen(opened, directory)
    await make_immutable(immutable, directory)
    with pytest.raises(SpoolUnwritable) as refused:
        await spool.append(callback(0))
    assert isinstance(refused.value.__cause__, PermissionError)
    assert (len(spool), spool.size_bytes, segments(directory)) == (0, 0, [])

    await chattr("-i", directory)
    await spool.append(callback(1))
    spool = reopen(opened, directory)
    assert numbers(spool.oldest(10)) == [1]

    await fill(spool, 2, 2)
    await chattr("+i", directory)
    with pytest.raises(SpoolUnwritable):
        await spool.remove(1)
    assert (len(spool), numbers(spool.oldest(10)), spool.unmarked) == (2, [2, 3], True)
    await spool.remove(2, mark=False)  # no marker tried, so nothing refused
    assert (len(spool), spool.size_bytes, spool.unmarked) == (0, 0, True)
    await chattr("-i", directory)
    assert numbers(reopen(opened, directory).oldest(10)) == [1, 2, 3]

    spool = opened[-1]
    await spool.remove(2, mark=False)
    await spool.mark()
    assert (numbers(spool.oldest(10)), spool.unmarked) == ([3], False)
    assert numbers(reopen(opened, directory).oldest(10)) == [3]


async def test_an_unwritable_spool_cannot_be_opened(
    tmp_path: Path, opened: list[Spool], immutable: list[Path]
) -> None:
    """open() raises SpoolUnwritable when the directory cannot be created (its parent is a
    file), when its files cannot be opened for writing (immutable), and when another process
    (or Spool) holds it."""
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SpoolUnwritable, match="Not a directory"):
        Spool.open(tmp_path / "file" / "spool", 2**20)

    directory = tmp_path / "spool"
    await fill(reopen(opened, directory), 0, 1)
    with pytest.raises(SpoolUnwritable, match="Resource temporarily unavailable"):
        Spool.open(directory, 2**20)
    opened.pop().close()
    await make_immutable(immutable, directory / SEGMENT)
    with pytest.raises(SpoolUnwritable, match="Operation not permitted"):
        Spool.open(directory, 2**20)


async def test_a_write_failing_half_way_leaves_no_half_record(
    tmp_path: Path, opened: list[Spool]
) -> None:
    """A write the OS stops part way (here the file size limit, RLIMIT_FSIZE, which binds root
    as ENOSPC would) raises SpoolUnwritable and the half written record is cut off the file, so
    the next open finds nothing torn and later appends are kept."""
    spool = reopen(opened, tmp_path)
    big = SpooledCallback(b"x" * 2**16, None, ())  # the limit must leave room for pytest's files
    await spool.append(big)
    before = (tmp_path / SEGMENT).read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 10, limits[1]))
    try:
        with pytest.raises(SpoolUnwritable) as refused:
            await spool.append(callback(2))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert isinstance(refused.value.__cause__, OSError)
    assert (tmp_path / SEGMENT).read_bytes() == before
    await spool.append(callback(3))
    spool = reopen(opened, tmp_path)
    assert (spool.torn, spool.oldest(10)) == ((), [big, callback(3)])


async def test_files_are_private_from_creation(tmp_path: Path, opened: list[Spool]) -> None:
    """With a umask that restricts nothing, the directory is created 0700 and every file in it
    0600: the modes come from creation, not from the environment."""
    directory = tmp_path / "spool"
    umask = os.umask(0)
    try:
        spool = reopen(opened, directory)
        await fill(spool, 0, 2)
        await spool.remove(1)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert sorted(os.listdir(directory)) == [SEGMENT, "forwarded", "lock"]
    assert {stat.S_IMODE(path.stat().st_mode) for path in directory.iterdir()} == {0o600}


CHILD = """
import asyncio, sys
from pathlib import Path
from consumer.ingress import spool as spool_module
from tests.unit.test_spool import callback

spool_module.SEGMENT_BYTES = 400  # rolls and deletes a segment every few entries

async def main():
    spool = spool_module.Spool.open(Path(sys.argv[1]), 2**30)
    n = removed = 0
    while True:
        await spool.append(callback(n))
        n += 1
        print("appended", n, flush=True)
        if n % 7 == 0:
            await spool.remove(5)
            removed += 5
            print("removed", removed, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("kill_after", [40, 400])
def test_a_process_killed_while_appending_and_removing_loses_nothing(
    tmp_path: Path, kill_after: int
) -> None:
    """A real process appending (and removing every seventh time) is SIGKILLed: reopened, the
    spool holds every entry whose append returned before the kill and was not reported removed,
    in order, and nothing reported removed; only the operation under way may go either way."""
    directory = tmp_path / "spool"
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, str(directory)],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while len(lines) < kill_after and time.monotonic() < deadline:
            lines.append(child.stdout.readline())
        child.send_signal(signal.SIGKILL)
        lines += child.stdout.readlines()  # what it printed before the kill
    appended = max(int(line.split()[1]) for line in lines if line.startswith("appended"))
    removed = max([0] + [int(line.split()[1]) for line in lines if line.startswith("removed")])
    assert appended >= kill_after // 2

    spool = Spool.open(directory, 2**30)
    try:
        found = numbers(spool.oldest(10**6))
    finally:
        spool.close()
    assert found == list(range(found[0], found[0] + len(found)))
    assert found[0] in (removed, removed + 5)
    assert found[-1] in (appended - 1, appended)
