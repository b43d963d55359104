"""Runs python/tests/test_*.py and prints one line per test in the project's format:
"ok NAME", "ok NAME # skipped: REASON", "not ok NAME" (with the traceback), then a summary;
exits 1 when anything failed. Used by tests/cli_python.sh (`make test`); plain
`python3 -m unittest discover -s python/tests -v` works too."""
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


class LineResult(unittest.TestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.n_ok = 0

    @staticmethod
    def name(test):
        return test.id().replace("__main__.", "")

    def addSuccess(self, test):
        super().addSuccess(test)
        self.n_ok += 1
        print("ok %s" % self.name(test), flush=True)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("ok %s # skipped: %s" % (self.name(test), reason), flush=True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        print("not ok %s\n%s" % (self.name(test), self.failures[-1][1]), flush=True)

    def addError(self, test, err):
        super().addError(test, err)
        print("not ok %s (error)\n%s" % (self.name(test), self.errors[-1][1]), flush=True)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        print("ok %s # expected failure" % self.name(test), flush=True)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        print("not ok %s (unexpected success)" % self.name(test), flush=True)


def main(argv):
    pattern = argv[1] if len(argv) > 1 else "test_*.py"
    suite = unittest.defaultTestLoader.discover(HERE, pattern=pattern)
    result = LineResult()
    suite.run(result)
    bad = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    print("%d passed, %d skipped, %d failed" % (result.n_ok, len(result.skipped), bad))
    for test, reason in result.skipped:
        print("skipped: %s: %s" % (LineResult.name(test), reason))
    return 1 if bad or result.testsRun == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
