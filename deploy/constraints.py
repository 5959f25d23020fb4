"""Write constraints.txt: every distribution segstream and its dev extras need, at the
version installed in this virtualenv (``make constraints``), so ``make setup``, the wheel
test and the image install the same versions anywhere."""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

ROOT = "segstream"
HEADER = "# Versions segstream was tested with; regenerate with `make constraints`.\n"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: set[str]) -> dict[str, str]:
    """Name -> installed version of ``root`` (with ``extras``) and all it requires."""
    found: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(root, extras)]
    while todo:
        name, wanted = todo.pop()
        if (canonical(name), frozenset(wanted)) in seen:
            continue
        seen.add((canonical(name), frozenset(wanted)))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            continue  # a marker-excluded requirement (another platform or Python)
        found[canonical(dist.metadata["Name"])] = dist.version
        for requirement in dist.requires or []:
            spec, _, marker = requirement.partition(";")
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
            if extra and extra.group(1) not in wanted:
                continue
            match = re.match(r"\s*([A-Za-z0-9._-]+)(\[([^\]]*)\])?", spec)
            if match:
                subs = {s.strip() for s in (match.group(3) or "").split(",") if s.strip()}
                todo.append((match.group(1), subs))
    found.pop(ROOT, None)
    return found


def main() -> None:
    pins = closure(ROOT, {"dev"})
    lines = [f"{name}=={version}\n" for name, version in sorted(pins.items())]
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt")
    target.write_text(HEADER + "".join(lines))
    print(f"constraints: {len(lines)} distributions pinned")


if __name__ == "__main__":
    main()
