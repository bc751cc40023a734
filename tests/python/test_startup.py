"""Start-up is deterministic: many starts in a row (two at a time, 2 shards each) all serve a
new session within a bound, and none re-executes itself. tests/tools/start_stress.py does the
work; run it by hand for longer runs (e.g. --starts 200 --parallel 4 --burners 2)."""

import os
import subprocess
import sys

import pytest

import servers
from conftest import require

TOOL = os.path.join(servers.REPO_ROOT, "tests", "tools", "start_stress.py")


@pytest.mark.timeout(300)
def test_forty_starts_in_a_row_all_serve():
    require("corezk")
    p = subprocess.run([sys.executable, TOOL, "--binary", servers.corezk_bin(), "--starts", "40",
                        "--parallel", "2", "--cores", "2", "--limit", "10"],
                       capture_output=True, text=True, timeout=280)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    assert "starts=40" in out and "failed=0 reexecuted=0" in out, out
