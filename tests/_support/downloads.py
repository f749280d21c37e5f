"""The download handler built for a test, and what it wrote."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from consumer.devkit.testing import make_event
from consumer.events import RecordingEvent
from consumer.handlers.bandwidth import media_path
from consumer.handlers.download import DownloadHandler, DownloadOptions
from tests._support.tls_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    TOKEN_PATH,
    FakeBandwidth,
)


@pytest.fixture
def make_handler(
    bandwidth: FakeBandwidth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., DownloadHandler]:
    monkeypatch.setenv("BANDWIDTH_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("BANDWIDTH_CLIENT_SECRET", CLIENT_SECRET)

    def build(**options: Any) -> DownloadHandler:
        defaults: dict[str, Any] = {
            "directory": str(tmp_path / "recordings"),
            "token_url": bandwidth.url(TOKEN_PATH),
            "allowed_hosts": (bandwidth.host,),
            "api_url": bandwidth.url("/api/v2"),
            "timeout": 5.0,
        }
        return DownloadHandler(DownloadOptions(**(defaults | options)))

    return build


def served(
    bandwidth: FakeBandwidth, maker: Callable[..., RecordingEvent] = make_event, **kw: Any
) -> RecordingEvent:
    """An event whose mediaUrl points at `bandwidth`, which holds its audio."""
    event = maker(**kw)
    path = media_path(event)
    bandwidth.media[path] = AUDIO
    if event.file_format == "mp3":
        bandwidth.content_types[path] = "audio/mpeg"
    return maker(**kw, media_url=bandwidth.url(path))


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


AUDIO = b"RIFF" + bytes(range(256)) * 64
