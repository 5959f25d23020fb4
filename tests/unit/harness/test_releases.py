"""The release helper of the upgrade test: a missing tag is an error that says how to get
it (the upgrade test must fail, not skip), the links of ``service/`` are followed, and the
installed packages are checked against a release's pins."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import releases
from harness.releases import (
    FIRST_RELEASE,
    ReleaseError,
    extract_release,
    extract_tree,
    linked,
    release_commit,
    unmet_dependencies,
)


def test_a_missing_tag_fails_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match=r"tag v0\.0\.0-never is missing .*git fetch --tags"):
        extract_release("v0.0.0-never", tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_links_of_service_point_to_the_schemas_and_the_api_document() -> None:
    assert linked("HEAD") == ["deploy/openapi.json", "schemas"]


def test_this_virtualenv_satisfies_the_checkouts_own_pins() -> None:
    assert unmet_dependencies("HEAD") == []


def test_extracting_head_writes_the_package_and_what_its_links_need(tmp_path: Path) -> None:
    service = extract_tree("HEAD", tmp_path)
    assert (service / "segstream" / "__init__.py").is_file()
    assert (service / "segstream" / "api" / "openapi.json").read_bytes().startswith(b"{")
    assert (service / "segstream" / "schemas" / "v1").is_dir()


def test_a_clone_without_tags_takes_the_recorded_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(releases.RELEASES, "v9.9.9-untagged", releases.RELEASES[FIRST_RELEASE])
    assert release_commit("v9.9.9-untagged") == releases.RELEASES[FIRST_RELEASE]


def test_a_tag_naming_another_commit_than_recorded_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tag is simulated: a clone need not have fetched tags (CI's does not).
    def tag_names_another_commit(*args: str) -> bytes:
        assert args[:3] == ("rev-parse", "--verify", "--quiet"), args
        return b"1" * 40 + b"\n"

    monkeypatch.setattr(releases, "_git", tag_names_another_commit)
    monkeypatch.setitem(releases.RELEASES, FIRST_RELEASE, "0" * 40)
    with pytest.raises(ReleaseError, match=r"names 1{40}, not the release's 0{40}"):
        release_commit(FIRST_RELEASE)
