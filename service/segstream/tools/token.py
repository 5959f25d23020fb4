"""``segstream token SCOPE``: a new query-API token and what to configure.

SCOPE is ``platform`` (every shop) or ``shop:<shop_id>`` (one shop). Prints the token
(hand it to the caller once; segstream never stores it) and the entry to merge into
``SEGSTREAM_API_TOKENS`` (its SHA-256 and scope). ``--json`` prints both as one object.
"""

from __future__ import annotations

import json
import sys

from segstream.api.access import SCOPE, new_token, token_hash
from segstream.tools.command import parser_for


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = parser_for("token", __doc__)
    parser.add_argument("scope", help="platform, or shop:<shop_id>")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    if not SCOPE.match(args.scope):
        print(
            f"token: scope must be platform or shop:<shop_id>, got {args.scope!r}", file=sys.stderr
        )
        return 2
    token = new_token()
    entry = {token_hash(token): args.scope}
    if args.json:
        print(json.dumps({"token": token, "api_tokens_entry": entry}))
    else:
        print(f"token (give it to the caller; it is not stored): {token}")
        print(f"SEGSTREAM_API_TOKENS entry: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
