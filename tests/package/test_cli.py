"""The rnn-course command line."""

import subprocess
import sys

from rnn_course.cli import main


def test_info_prints_versions(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "rnn_course 0.1.0" in out and "torch 2.13.0" in out and "device:" in out


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "rnn_course.cli", "info"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout
