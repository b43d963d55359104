"""Shared set-up of the skipllama Python tests: where the package, the library, the CLI and the
fixtures are, and which optional modules (numpy, torch) this Python has.

The tests import the package from python/ of this source tree (set SKIPLLAMA_TEST_INSTALLED=1
to test an installed copy instead) and the library through the package's usual discovery
($SKIPLLAMA_LIB first; tests/cli_python.sh sets it to $BUILD/libskipllama.so). The CLI used as
the reference is $SKIPLLAMA_CLI, else $BUILD/skipllama, else the skipllama next to the library.
"""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
ROOT = os.path.dirname(PYDIR)

if os.environ.get("SKIPLLAMA_TEST_INSTALLED") != "1":
    sys.path.insert(0, PYDIR)

try:
    import numpy as np
except ImportError:
    np = None
try:
    import torch
except ImportError:
    torch = None

import skipllama  # noqa: E402  (after the path set-up)

need_numpy = unittest.skipIf(np is None, "python3-numpy is not installed")
need_torch = unittest.skipIf(torch is None, "python3-torch is not installed")


def data(name):
    return os.path.join(ROOT, "tests", "data", name)


def cli_path():
    """The skipllama binary built with the library under test, or None."""
    cands = [os.environ.get("SKIPLLAMA_CLI")]
    if os.environ.get("BUILD"):
        cands.append(os.path.join(ROOT, os.environ["BUILD"], "skipllama"))
    try:
        cands.append(os.path.join(os.path.dirname(skipllama.lib_path()), "skipllama"))
    except OSError:
        pass
    cands.append(os.path.join(ROOT, "build", "skipllama"))
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


need_cli = unittest.skipIf(cli_path() is None, "the skipllama CLI binary was not found (set BUILD or SKIPLLAMA_CLI)")
