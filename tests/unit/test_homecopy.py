"""The two halves of a home move, on loopback: every file, link and mode arrives; the receiver's stale
copy is replaced; a broken stream fails the receiver."""

import os
import socket
import subprocess
import sys
import threading

from gpuhub import homecopy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_home_arrives_whole_and_replaces_a_stale_copy(tmp_path):
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "work" / "deep").mkdir(parents=True)
    (src / "work" / "deep" / "model.pt").write_bytes(os.urandom(300_000))
    (src / ".bashrc").write_text("export A=1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o750)
    (src / "latest").symlink_to("work/deep/model.pt")
    dst.mkdir()
    (dst / "stale.txt").write_text("from an earlier move")
    port = free_port()
    result = {}
    receiver = threading.Thread(target=lambda: result.setdefault("rc", homecopy.receive(str(dst), port, 30)))
    receiver.start()
    assert homecopy.send(str(src), f"127.0.0.1:{port}", 30) == 0
    receiver.join(30)
    assert result["rc"] == 0
    assert not (dst / "stale.txt").exists()
    assert (dst / "work" / "deep" / "model.pt").read_bytes() == (src / "work" / "deep" / "model.pt").read_bytes()
    assert (dst / ".bashrc").read_text() == "export A=1\n"
    assert (dst / "run.sh").stat().st_mode & 0o777 == 0o750
    assert os.readlink(dst / "latest") == "work/deep/model.pt"


def test_a_broken_stream_fails_the_receiver(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    port = free_port()
    code = f"import sys; sys.path.insert(0, 'platform'); from gpuhub import homecopy; sys.exit(homecopy.receive({str(dst)!r}, {port}, 30))"
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"this is not a tar stream" * 40)
            break
        except OSError:
            import time

            time.sleep(0.1)
    assert proc.wait(30) != 0
    assert "tar" in proc.stderr.read().lower()
