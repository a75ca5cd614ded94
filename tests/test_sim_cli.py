"""`healthcard sim` commands and the vpcd server, against a stand-in vpcd (no pcscd needed)."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from healthcard_apdu.crypto import sm2_decode_public, sm2_public_key
from healthcard_apdu.sim import SimCard, SimSam, load_image
from healthcard_apdu.sim.cli import sim
from healthcard_apdu.sim.server import serve
from sim_issuance import sam_key_file


def test_new_card_writes_a_blank_image(tmp_path: Path) -> None:
    path = tmp_path / "card.json"
    runner = CliRunner()
    result = runner.invoke(sim, ["new-card", str(path), "--serial", "0011223344556677",
                                 "--protocol", "T=0"])
    assert result.exit_code == 0, result.output
    image = load_image(path)
    assert image.serial.hex() == "0011223344556677"
    assert image.protocol == "T=0" and not image.issued and not image.mf.children
    again = runner.invoke(sim, ["new-card", str(path), "--serial", "0011223344556677"])
    assert again.exit_code != 0 and "exists" in again.output
    bad = runner.invoke(sim, ["new-card", str(tmp_path / "x.json"), "--serial", "0011"])
    assert bad.exit_code != 0 and "8 bytes" in bad.output


def test_new_card_realism_options(tmp_path: Path) -> None:
    """The knobs of a real card family end up in the image and in the card's behaviour."""
    path = tmp_path / "real.json"
    result = CliRunner().invoke(sim, [
        "new-card", str(path), "--serial", "0081866B00001015", "--protocol", "T=0",
        "--mf-bare-9000", "--ddf1-no-a5", "--record-le00", "--without-rk-keys",
        "--without-internal-key"])
    assert result.exit_code == 0, result.output
    assert "0081866B00001015484301" in result.output  # factor first, then 5 bytes
    image = load_image(path)
    assert image.quirks.bare_select == {0x3F00} and image.quirks.fci_without_a5 == {0xDDF1}
    assert image.quirks.record_le00
    assert image.quirks.absent_external_keys == {0x04, 0x84}
    assert image.quirks.absent_internal_keys == {0x00, 0x04}
    saved = json.loads(path.read_text())
    assert saved["quirks"]["bare_select"] == ["3F00"]
    legacy = tmp_path / "legacy.json"
    result = CliRunner().invoke(sim, ["new-card", str(legacy), "--serial", "0081866B00001015",
                                      "--atr-layout", "factor-last"])
    assert result.exit_code == 0 and SimCard.open(legacy).atr()[3:13] == bytes.fromhex(
        "48430081866B00001015")
    explicit = tmp_path / "explicit.json"
    result = CliRunner().invoke(sim, ["new-card", str(explicit), "--serial", "0081866B00001015",
                                      "--historical", "AABBCC"])
    assert result.exit_code == 0 and SimCard.open(explicit).atr()[3:6] == b"\xaa\xbb\xcc"
    bad = CliRunner().invoke(sim, ["new-card", str(tmp_path / "b.json"), "--serial",
                                   "0081866B00001015", "--historical", "zz"])
    assert bad.exit_code != 0 and "not hex" in bad.output


def test_new_sam_completes_a_key_file(tmp_path: Path) -> None:
    spec = sam_key_file()
    del spec["sm2_private_key"]
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps(spec))
    out = tmp_path / "sam.json"
    result = CliRunner().invoke(sim, ["new-sam", str(keys), str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    private = int(written["sm2_private_key"], 16)
    sam = SimSam.from_key_file(out)
    assert sam.state.sm2_private == private
    assert sm2_decode_public(sam.state.files["EF1C"][11:76]) == sm2_public_key(private)
    assert {k["role"] for k in written["keys"]} == {k["role"] for k in spec["keys"]}
    # master keys, the SM2 key and the PIN in clear: owner only, written atomically
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "sam.json"]


def test_new_card_image_is_0600_and_new_sam_refuses_a_bad_key_file(tmp_path: Path) -> None:
    image = tmp_path / "card.json"
    made = CliRunner().invoke(sim, ["new-card", str(image), "--serial", "0011223344556677"])
    assert made.exit_code == 0, made.output
    assert image.stat().st_mode & 0o777 == 0o600
    bad = tmp_path / "keys.json"
    bad.write_text("[" * 100_000)
    refused = CliRunner().invoke(sim, ["new-sam", str(bad), str(tmp_path / "sam.json")])
    assert refused.exit_code == 1 and "nested too deeply" in refused.output
    assert not (tmp_path / "sam.json").exists()


class FakeVpcd:
    """Listens like vpcd on ``port`` and ``port + 1`` and drives the card side."""

    def __init__(self, port: int) -> None:
        self.servers: list[socket.socket] = []
        for slot in range(2):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port + slot))
            s.listen(1)
            self.servers.append(s)

    @staticmethod
    def _recv(conn: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            assert chunk, "card side closed"
            buf += chunk
        return buf

    def exchange(self, conn: socket.socket, payload: bytes) -> bytes:
        conn.sendall(struct.pack(">H", len(payload)) + payload)
        (size,) = struct.unpack(">H", self._recv(conn, 2))
        return self._recv(conn, size)

    def close(self) -> None:
        for s in self.servers:
            s.close()


@pytest.fixture
def images(tmp_path: Path) -> tuple[Path, Path]:
    card = tmp_path / "card.json"
    SimCard.blank(bytes.fromhex("0102030405060708"), path=card)
    sam = tmp_path / "sam.json"
    sam.write_text(json.dumps(sam_key_file()))
    return card, sam


def _two_free_ports() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports")


def test_serve_connects_card_and_sam_to_vpcd_slots(images: tuple[Path, Path]) -> None:
    port = _two_free_ports()
    vpcd = FakeVpcd(port)
    servers = vpcd.servers
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=images, kwargs={
        "base_port": port, "stop": stop}, daemon=True)
    thread.start()
    conns: list[socket.socket] = []
    try:
        card_conn, _ = servers[0].accept()
        sam_conn, _ = servers[1].accept()
        conns += [card_conn, sam_conn]
        card_atr = vpcd.exchange(card_conn, b"\x04")
        assert card_atr[3:11] == bytes.fromhex("0102030405060708")  # the factor first
        sam_atr = vpcd.exchange(sam_conn, b"\x04")
        assert sam_atr[1] & 0xF0 == 0  # T=0 SAM
        card_conn.sendall(b"\x00\x01\x01")  # power on
        assert vpcd.exchange(card_conn, bytes.fromhex("00A40000023F00"))[-2:] == b"\x90\x00"
        sam_conn.sendall(b"\x00\x01\x01")
        assert vpcd.exchange(sam_conn, bytes.fromhex("00A4000002DF01"))[:1] == b"\x61"
    finally:
        stop.set()
        thread.join(10)
        for conn in conns:
            conn.close()
        vpcd.close()
    assert not thread.is_alive()


def test_serve_stops_cleanly_on_sigterm(images: tuple[Path, Path]) -> None:
    card, sam = images
    port = _two_free_ports()  # nothing listens: the links keep retrying until SIGTERM
    code = (
        "from healthcard_apdu.sim.cli import sim; "
        f"sim(['serve', '--card', {str(card)!r}, '--sam', {str(sam)!r}, '--port', '{port}'])"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    # The pipe is read with os.read on its descriptor, never with the buffered
    # proc.stderr.readline(): a buffered read may take both "serving ..." lines at once
    # (likely when the machine is loaded), and select() would then wait on an empty pipe
    # with the awaited line sitting in Python's buffer. ``with`` closes the pipe in any case.
    with subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        seen = b""
        try:
            deadline = time.monotonic() + 30
            while b"serving SimSam" not in seen:  # handlers are installed before this is logged
                assert time.monotonic() < deadline, seen.decode()
                ready, _, _ = select.select([proc.stderr], [], [], 0.5)
                if ready:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, f"serve exited early: {seen.decode()}"
                    seen += chunk
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
            err = seen + err
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err.decode()
    assert b"signal 15" in err
