#!/usr/bin/env python3
"""Self-test of summary.py's gate, on synthetic reports: run by `./build.sh conformance`."""
import contextlib
import io
import json
import os
import tempfile
import unittest

import summary


def run(cases, min_cases=1, path=None):
    """summary.main on a report of `cases` ({case_id: (behavior, close)}) for one agent."""
    with tempfile.TemporaryDirectory() as tmp:
        if path is None:
            path = os.path.join(tmp, "index.json")
            index = {"unisock": {c: {"behavior": b, "behaviorClose": bc}
                                 for c, (b, bc) in cases.items()}}
            with open(path, "w") as f:
                json.dump(index, f)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = summary.main(path, "t", min_cases)
    return status, out.getvalue().splitlines()[-1], out.getvalue()


GOOD = {"1.1.1": ("OK", "OK"), "2.1": ("OK", "OK"), "7.1.6": ("INFORMATIONAL", "OK")}


class Gate(unittest.TestCase):
    def test_ok_and_informational_pass(self):
        self.assertEqual(run(GOOD, 3)[:2], (0, "t: 3 passed, 0 failed"))

    def test_non_strict_fails(self):
        for bad in [("NON-STRICT", "OK"), ("OK", "NON-STRICT")]:
            status, last, out = run(dict(GOOD, **{"6.4.1": bad}), 4)
            self.assertEqual((status, last), (1, "t: 3 passed, 1 failed"))
            self.assertIn("6.4.1: %s (close %s)  FAILED" % bad, out)

    def test_unimplemented_fails(self):
        cases = dict(GOOD, **{"12.1.1": ("UNIMPLEMENTED", "UNIMPLEMENTED")})
        self.assertEqual(run(cases, 4)[:2], (1, "t: 3 passed, 1 failed"))

    def test_other_failures_fail(self):
        for bad in [("FAILED", "OK"), ("OK", "WRONG CODE"), ("OK", "UNCLEAN"), ("OK", None)]:
            self.assertEqual(run(dict(GOOD, **{"5.1": bad}), 4)[0], 1)

    def test_fewer_cases_than_expected_fail(self):
        status, last, out = run(GOOD, 325)
        self.assertEqual((status, last), (1, "t: 3 passed, 322 failed"))
        self.assertIn("3 cases ran, at least 325 expected", out)

    def test_empty_report_fails(self):
        self.assertEqual(run({})[:2], (1, "t: 0 passed, 1 failed"))

    def test_missing_report_fails_with_a_message(self):
        status, last, out = run({}, 325, path="/nonexistent/index.json")
        self.assertEqual((status, last), (1, "t: 0 passed, 325 failed"))
        self.assertIn("/nonexistent/index.json: no report", out)


if __name__ == "__main__":
    unittest.main()
