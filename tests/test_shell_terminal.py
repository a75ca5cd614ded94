"""``healthcard shell`` in a real terminal: tmux runs it, send-keys types, capture-pane reads the
screen. Covers the prompt, tab completion, the history file and the hidden PIN prompt.

Each test uses its own tmux server (a socket in the test's temp directory) and kills it after.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from healthcard_apdu.security.export import simulator_sam_document
from healthcard_apdu.sim.image import save_image
from test_card_fixtures import SAM_PIN, issued_card, keyset

TIMEOUT = 20.0


class Terminal:
    """One tmux server with one 160x48 window running a command."""

    def __init__(self, socket: Path, command: str) -> None:
        self.socket = socket
        self._tmux("new-session", "-d", "-x", "160", "-y", "48", "-s", "t", command)

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", str(self.socket), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", "t", *keys)

    def type(self, text: str) -> None:
        self._tmux("send-keys", "-t", "t", "-l", text)

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "t")

    def wait_for(self, text: str, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            shown = self.screen()
            if text in shown:
                return shown
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} not on the screen after {timeout:g} s:\n{shown}")
            time.sleep(0.05)

    def line_with(self, prefix: str) -> str:
        """The last screen line starting with ``prefix`` (trailing blanks dropped)."""
        lines = [line.rstrip() for line in self.screen().splitlines() if line.startswith(prefix)]
        return lines[-1] if lines else ""

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", str(self.socket), "kill-server"], capture_output=True)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    image = tmp_path / "card.json"
    save_image(issued_card().image, image, durable=False)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(simulator_sam_document(keyset())))
    return {"image": image, "sam": sam, "history": tmp_path / "history", "dir": tmp_path}


@pytest.fixture
def terminal(files: dict[str, Path]) -> Iterator[object]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is missing: bash scripts/setup.sh installs it")
    opened: list[Terminal] = []

    def start(env: dict[str, str]) -> Terminal:
        shell = " ".join(
            shlex.quote(part)
            for part in (
                sys.executable,
                "-m",
                "healthcard_apdu",
                "shell",
                "--sim-card",
                str(files["image"]),
                "--sim-sam",
                str(files["sam"]),
                "--history-file",
                str(files["history"]),
            )
        )
        variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = f"env -u HEALTHCARD_SAM_PIN {variables} {shell}; echo EXITED $?; sleep 60"
        term = Terminal(files["dir"] / "tmux.sock", command)
        opened.append(term)
        return term

    yield start
    for term in opened:
        term.kill()


def test_type_tab_complete_and_read_the_screen(terminal: object, files: dict[str, Path]) -> None:
    term = terminal({"HEALTHCARD_SAM_PIN": SAM_PIN, "TERM": "xterm"})  # type: ignore[operator]
    term.wait_for("healthcard MF>")
    term.type("rea")
    term.keys("Tab")
    term.wait_for("healthcard MF> read")
    term.type(" hol")
    term.keys("Tab")
    assert term.wait_for("read holder")
    term.keys("Enter")
    screen = term.wait_for("李堃")
    assert "DDF1EF06  11    XM    姓名" in screen

    term.type("cd DF0")
    term.keys("Tab")  # several candidates: a menu shows them
    screen = term.wait_for("DF03")
    assert "DF01" in screen and "DF02" in screen
    term.type("1")
    term.keys("Escape", "Enter")
    term.wait_for("healthcard DF01>")

    term.type("auth RK1_DF0")
    term.keys("Tab")
    term.wait_for("RK1_DF03")
    term.type("2")
    term.keys("Escape", "Enter")
    term.wait_for("RK1_DF02: authenticated in DF02")
    assert term.line_with("healthcard DF02>") == "healthcard DF02>"

    term.type("apdu 0020000003123456")
    term.keys("Enter")
    term.wait_for("> 0020000003******")
    term.type("read nowhere")
    term.keys("Enter")
    term.wait_for("error: no card file 'nowhere'")  # an error does not end the session
    term.type("help rea")
    term.keys("Tab")
    term.wait_for("help read")
    term.keys("Enter")
    term.wait_for("usage: read [-x] [-a] [FILE] [ITEM ...]")
    term.keys("C-d")
    term.wait_for("EXITED 0")

    history = files["history"].read_text(encoding="utf-8")
    assert "+read holder" in history and "+auth RK1_DF02" in history
    assert "123456" not in history and "0020" not in history  # the PIN APDU is not kept
    assert files["history"].stat().st_mode & 0o077 == 0  # private to the user


def test_history_is_offered_again_and_the_pin_prompt_hides_the_pin(
    terminal: object, files: dict[str, Path]
) -> None:
    files["history"].write_text("\n# earlier\n+info\n", encoding="utf-8")
    term = terminal({"TERM": "xterm"})  # type: ignore[operator]
    term.wait_for("PSAM PIN:")
    term.type(SAM_PIN)
    term.keys("Enter")
    screen = term.wait_for("healthcard MF>")
    assert SAM_PIN not in screen
    term.keys("Up")
    term.wait_for("healthcard MF> info")
    term.keys("Enter")
    screen = term.wait_for("in use ")
    assert "security  sim_sam" in screen
    term.type("read holder XM")
    term.keys("Enter")
    screen = term.wait_for("李堃")  # the PIN from the hidden prompt unlocked the SAM
    assert SAM_PIN not in screen
    term.type("quit")
    term.keys("Enter")
    term.wait_for("EXITED 0")
