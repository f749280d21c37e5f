"""The README and the MkDocs site: their code runs, their links resolve, and the site's build
fails on a broken link, a missing anchor or a page left out of the navigation."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import msgspec
import pytest
import yaml

from consumer import make_event, run_handler
from consumer.handler_api import options_type
from consumer.plugins.discovery import build_handlers, discover
from consumer.secret import decode_secret
from consumer.settings.config import PluginSettings, Settings, load_settings
from tests._support.kafka_helpers import REPO
from tests._support.public_names import consumer_names, not_public

README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))


def blocks(path: Path, language: str) -> list[str]:
    """The `language` code blocks of a page, with a block that includes a file (a snippet line,
    ``--8<-- "config/consumer.toml"``) read from that file, as the site shows it."""
    found = re.findall(rf"```{language}\n(.*?)\n```", path.read_text(), re.S)
    return [_included(block) for block in found]


def _included(block: str) -> str:
    match = re.fullmatch(r'--8<-- "([^"]+)"', block)
    return (REPO / match[1]).read_text() if match else block


async def test_the_readme_handler_runs_as_its_settings_route_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's handler, saved as the module its settings name, is built from those
    settings and logs its line for a complete recording."""
    (code,) = blocks(README, "python")
    (settings_text,) = blocks(README, "toml")
    (tmp_path / "announce.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "announce", raising=False)
    (tmp_path / "consumer.toml").write_text(settings_text)
    settings = load_settings(tmp_path / "consumer.toml", environ={})
    assert settings.routes["complete"] == ["announce", "log"]
    handlers = build_handlers(settings.routes["complete"], settings.handlers, settings.plugins)
    event = make_event(status="complete", recording_id="r-readme")
    run = await run_handler(handlers["announce"], event, name="announce")
    assert run.error is None
    assert run.messages == ["recording ready"]
    assert run.logs[0]["recording_id"] == "r-readme"


def test_python_in_the_readme_and_every_page_uses_only_public_names() -> None:
    """Every Python block of the README and the site reaches `consumer` only through __all__."""
    checked = 0
    for path in [README, *PAGES]:
        for block in blocks(path, "python"):
            # Indented excerpts (methods) parse once wrapped in a class.
            text = block if not block.startswith(" ") else "class _:\n" + block
            assert not not_public(consumer_names(ast.parse(text))), f"{path.name}:\n{block}"
            checked += 1
    assert checked >= 9


def test_settings_blocks_name_real_keys_with_values_of_their_types() -> None:
    """Every TOML block of the README and the site (the guide's are loaded by test_plugins.py)
    names settings keys and handler options that exist, each with a value of its type."""
    installed = discover(PluginSettings())
    checked = 0
    for path in [README, *PAGES]:
        if path.name == "writing-a-handler.md":
            continue
        for block in blocks(path, "toml"):
            raw = tomllib.loads(block)
            msgspec.convert(raw, Settings, strict=True, dec_hook=decode_secret)
            for name, options in raw.get("handlers", {}).items():
                options_class = options_type(installed[name].load())
                assert options_class is not None, name
                msgspec.convert(options, options_class, strict=True, dec_hook=decode_secret)
            checked += 1
    assert checked >= 9


def test_the_readme_links_point_at_files_that_exist() -> None:
    """The README is not part of the site, so its own links are checked here: each relative
    link names a file of the repository (the site's pages among them)."""
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [target for target in targets if "://" not in target]
    assert len(local) >= 10
    assert [target for target in local if not (REPO / target).exists()] == []
    linked = {target.removeprefix("docs/") for target in local if target.startswith("docs/")}
    assert {page.name for page in PAGES} - linked <= {"index.md", "changelog.md"}


def build(
    tmp_path: Path, pages: dict[str, str], nav: list[str]
) -> subprocess.CompletedProcess[str]:
    """`mkdocs build --strict` of `pages` with this project's mkdocs.yml, but its own nav."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text)
    config |= {"docs_dir": str(docs), "site_dir": str(tmp_path / "site"), "nav": nav}
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(tmp_path / "mkdocs.yml")],
        cwd=REPO,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


GOOD = {
    "index.md": "# Home\n\nSee [the other page](other.md#a-section).\n",
    "other.md": "# Other\n\n## A section\n",
}


@pytest.mark.parametrize(
    ("pages", "nav", "complaint"),
    [
        pytest.param(GOOD, ["index.md", "other.md"], None, id="sound"),
        pytest.param(
            GOOD | {"index.md": "# Home\n\n[Gone](gone.md)\n"},
            ["index.md", "other.md"],
            "contains a link 'gone.md', but the target is not found",
            id="broken-link",
        ),
        pytest.param(
            GOOD | {"index.md": "# Home\n\n[There](other.md#no-such-section)\n"},
            ["index.md", "other.md"],
            "does not contain an anchor '#no-such-section'",
            id="missing-anchor",
        ),
        pytest.param(
            GOOD, ["index.md"], 'not included in the "nav" configuration', id="page-not-in-nav"
        ),
    ],
)
def test_the_strict_build_fails_on_each_kind_of_broken_site(
    tmp_path: Path, pages: dict[str, str], nav: list[str], complaint: str | None
) -> None:
    """With the project's validation settings, a broken link, a missing anchor and a page left
    out of the navigation each fail `mkdocs build --strict`; a sound site builds."""
    done = build(tmp_path, pages, nav)
    if complaint is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0
        assert complaint in done.stderr, done.stderr
