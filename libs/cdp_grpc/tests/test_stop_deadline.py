from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from cdp_grpc.lifecycle import STUCK_SHUTDOWN_EXIT_CODE

# A service whose shutdown hangs on a peer that is gone: after the stop signal it never ends.
STUCK_SERVICE = textwrap.dedent("""
    import asyncio, logging, sys
    from cdp_grpc.lifecycle import run_main, stop_on_signals

    async def serve() -> None:
        stop = stop_on_signals(deadline=1.0)
        print("ready", flush=True)
        await stop.wait()
        await asyncio.Event().wait()  # draining a broker that will never answer

    logging.basicConfig(stream=sys.stderr)
    run_main(serve())
""")


def test_a_shutdown_stuck_past_its_deadline_exits_naming_what_it_was_stuck_in() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", STUCK_SERVICE],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == STUCK_SHUTDOWN_EXIT_CODE
    assert "shutdown did not finish within 1 s" in errors
    assert "still running at the shutdown deadline" in errors and "serve" in errors
