"""Prints one closing `N passed, N failed` line from the JUnit reports of `pants test`.

Pants does not print pytest's own summary, so CI reads the XML reports instead. Errors
count as failed and skips are reported separately (none are expected).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path


def main(report_dir: str) -> int:
    passed = failed = skipped = 0
    reports = sorted(Path(report_dir).glob("*.xml"))
    for report in reports:
        root = ElementTree.parse(report).getroot()
        suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
        for suite in suites:
            for case in suite.iter("testcase"):
                outcome = {child.tag for child in case}
                if outcome & {"failure", "error"}:
                    failed += 1
                elif "skipped" in outcome:
                    skipped += 1
                else:
                    passed += 1
    suffix = f", {skipped} skipped" if skipped else ""
    print(f"{passed} passed, {failed} failed{suffix} ({len(reports)} test files)")
    return 0 if failed == 0 and reports else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dist/test/reports"))
