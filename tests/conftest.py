import os, shutil, signal, socket, subprocess, threading, time
from pathlib import Path

import pytest

from depthseg.backgrounds import prepare_backgrounds
from depthseg.foregrounds import prepare_foregrounds
from depthseg.samples import sample_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def sources(tmp_path_factory):
    "A dataset folder holding the sample backgrounds and foregrounds, prepared once per session."
    ds = tmp_path_factory.mktemp('sources')/'dataset'
    prepare_backgrounds(sample_dir('backgrounds'), ds, progress=False)
    prepare_foregrounds(sample_dir('foregrounds'), ds, progress=False)
    return ds


@pytest.fixture
def dataset(sources, tmp_path):
    "A fresh copy of `sources` to build on."
    return Path(shutil.copytree(sources, tmp_path/'dataset'))


def kill_when(cmd: list, ready, timeout: float = 120):
    "Run `cmd` in a session of its own and kill it with SIGKILL, its workers too, once `ready()` (or after `timeout` seconds)."
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and not ready(): time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()


@pytest.fixture
def ftp_listener():
    "An FTP-like listener on 127.0.0.1: its port, and the bytes each client that connected sent (none, if no client came)."
    srv, heard = socket.create_server(('127.0.0.1', 0)), []
    srv.settimeout(0.1)
    def serve():
        while srv.fileno() != -1:
            try: conn, _ = srv.accept()
            except OSError: continue
            with conn:
                conn.settimeout(1); conn.sendall(b'220 ready\r\n')
                try: heard.append(conn.recv(1024))
                except OSError: heard.append(b'')
    threading.Thread(target=serve, daemon=True).start()
    yield srv.getsockname()[1], heard
    srv.close()
