"""The worker's entry point: numerical libraries get one thread, set before they load."""

from __future__ import annotations

import subprocess
import sys


def test_math_threads_are_limited_before_numpy_is_imported() -> None:
    code = (
        "import os, sys\n"
        "for name in ('OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS'):\n"
        "    os.environ.pop(name, None)\n"
        "import segstream.__main__ as entry\n"
        "assert 'numpy' not in sys.modules, 'numpy loaded before the limit'\n"
        "entry.single_threaded_math()\n"
        "import numpy\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'])\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["1", "1"]


def test_a_thread_count_the_environment_sets_is_kept() -> None:
    code = (
        "import os\n"
        "os.environ['OPENBLAS_NUM_THREADS'] = '2'\n"
        "import segstream.__main__ as entry\n"
        "entry.single_threaded_math()\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'])\n"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == ["2"]
