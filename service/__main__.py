"""``python -m service …`` in a checkout, as before the package was named segstream (the
name ``service`` is taken on PyPI): the same as ``segstream …``. Not in the wheel."""

import sys

from segstream.cli import main

if __name__ == "__main__":
    sys.exit(main())
