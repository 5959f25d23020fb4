"""An earlier release's code, taken from the repository's history by its tag, to run beside
today's (the upgrade test and the chaos run's rolling upgrade).

:func:`extract_release` writes the tagged ``service/`` tree into a folder; a worker runs it
with ``PYTHONPATH=<folder>/service`` and this checkout's virtualenv, which must satisfy the
release's pinned dependencies (:func:`unmet_dependencies`: a release whose pins differ
needs its own virtualenv, which this harness does not build). A missing tag is an error
naming the fix, never a skip: a test that did not run the old code proved nothing.
"""

from __future__ import annotations

import posixpath
import subprocess
import tarfile
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from harness.workers import REPO_ROOT

FIRST_RELEASE = "v0.1.0"
"""The first tagged release (commit 64c8095, the behaviour before issue 30)."""
RELEASES = {FIRST_RELEASE: "64c809584f6b21b0e72fe0db8069193ad5819bd1"}
"""Each release's commit: what its tag must name, and what stands in for the tag in a
clone that did not fetch tags (the commit is in main's history)."""


class ReleaseError(RuntimeError):
    """The release cannot be taken from the history or run with this virtualenv."""


def _git(*args: str) -> bytes:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, check=False)
    if done.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout


def release_commit(tag: str) -> str:
    """The commit ``tag`` names (in a clone without tags, the commit :data:`RELEASES`
    records for it); :class:`ReleaseError` telling how to get the tag when neither is
    there (a shallow clone), or when the tag names another commit than recorded."""
    recorded = RELEASES.get(tag)
    try:
        found = _git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    except ReleaseError:
        if recorded is not None and _has_commit(recorded):
            return recorded
        raise ReleaseError(
            f"git tag {tag} is missing from this clone: the upgrade test runs that release's "
            f"code from the history (fetch tags: git fetch --tags; or create it: "
            f"git tag {tag} <commit>)"
        ) from None
    commit = found.decode().strip()
    if recorded is not None and commit != recorded:
        raise ReleaseError(f"git tag {tag} names {commit}, not the release's {recorded}")
    return commit


def _has_commit(commit: str) -> bool:
    try:
        _git("cat-file", "-e", f"{commit}^{{commit}}")
    except ReleaseError:
        return False
    return True


def extract_release(tag: str, into: Path) -> Path:
    """The release's ``service/`` tree (and what its links point to) written under
    ``into``; the folder to put on ``PYTHONPATH`` (``into/service``). :class:`ReleaseError`
    when the tag is missing or this virtualenv does not satisfy the release's
    dependencies."""
    return extract_tree(release_commit(tag).strip(), into)


def extract_tree(revision: str, into: Path) -> Path:
    """:func:`extract_release` of any revision (a commit, ``HEAD``)."""
    unmet = unmet_dependencies(revision)
    if unmet:
        raise ReleaseError(f"{revision} needs {unmet}, which this virtualenv does not have")
    into.mkdir(parents=True, exist_ok=True)
    archive = into / "release.tar"
    archive.write_bytes(_git("archive", "--format=tar", revision, "service", *linked(revision)))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    archive.unlink()
    return into / "service"


def linked(commit: str) -> list[str]:
    """The paths outside ``service/`` that its symbolic links point to (the schemas and
    the OpenAPI document live at the top of the repository), relative to its root."""
    listing = _git("ls-tree", "-r", "-z", commit, "service").decode().split("\0")
    targets = []
    for entry in filter(None, listing):
        mode, _, rest = entry.partition(" ")
        path = rest.partition("\t")[2]
        if mode == "120000":
            target = _git("show", f"{commit}:{path}").decode()
            targets.append(posixpath.normpath(posixpath.join(posixpath.dirname(path), target)))
    return sorted(t for t in targets if not t.startswith(("service/", "../")))


def unmet_dependencies(revision: str) -> list[str]:
    """The release's runtime requirements (its ``pyproject.toml``) that the installed
    packages do not satisfy, each with what is installed."""
    project = tomllib.loads(_git("show", f"{revision}:pyproject.toml").decode())["project"]
    unmet = []
    for line in project["dependencies"]:
        wanted = Requirement(line)
        try:
            installed = metadata.version(wanted.name)
        except metadata.PackageNotFoundError:
            installed = "absent"
        if installed == "absent" or not wanted.specifier.contains(installed, prereleases=True):
            unmet.append(f"{line} (installed: {installed})")
    return unmet
