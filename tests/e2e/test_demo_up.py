"""`cdp demo --exit` as a user runs it on a fresh machine: the suite comes up on embedded
PostgreSQL and NATS and the Mailchimp sandbox, the main job runs end to end on the sample
data, and the summary reports what the services and the sandbox hold."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .suite import BIN_DIR, suite_env

SEGMENTS = ("High-value email-engaged customers", "Subscribers with abandoned carts")


def figure(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the output:\n{text}"
    return int(found.group(1))


def test_cdp_demo_runs_the_main_job_on_the_sample_data_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    completed = subprocess.run(
        [str(BIN_DIR / "cdp.pex"), "demo", "--exit", "--data-dir", str(data_dir)],
        env=suite_env(tmp_path), capture_output=True, text=True, timeout=480,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    for number in range(1, 9):
        assert re.search(rf"^\[{number}/8\] .*\(\d+\.\d s\)$", completed.stdout, re.M), output
    assert "FAILED" not in output

    records = figure(r"records in\s+(\d+)", completed.stdout)
    unified = figure(r"unified customers\s+(\d+)", completed.stdout)
    assert 0 < unified < records
    assert figure(r"(\d+) probabilistically", completed.stdout) > 0
    assert figure(r"events stored\s+(\d+)", completed.stdout) > 0
    assert figure(r"routed\s+.*email (\d+)", completed.stdout) > 0
    segments_line = next(line for line in completed.stdout.splitlines()
                         if line.strip().startswith("segments "))
    for name in SEGMENTS:
        members = figure(rf"{name}: (\d+) members", segments_line)
        assert members > 0
        # The same people are in the static segment of that name in Mailchimp.
        assert figure(rf"static segments: .*{name}: (\d+) members", completed.stdout) == members
    assert figure(r"(\d+) audience members", completed.stdout) == unified
    assert figure(r"(\d+) member events", completed.stdout) > 0
    assert figure(r"(\d+) failed operations", completed.stdout) == 0
    # The profile example carries its provenance: which source won each field, and why.
    assert "profile example" in completed.stdout
    assert "crm ranks 1 of" in completed.stdout
    # Sample data or not, no phone number or email address reaches the screen.
    assert not re.search(r"555[-. ]?01\d\d", output)
    assert not re.search(r"[\w.+-]+@example\.(com|org)", output, re.I)
    # --exit: nothing keeps serving; every service stopped by itself with 0.
    assert "press Ctrl-C" not in output
    assert len(re.findall(r"cdp: \w+ exited with 0", completed.stderr)) == 6, output
    assert (data_dir / "cdp-demo").is_file()
