"Pack, push and pull end to end: byte-for-byte round trips through a folder and HTTP (gdown), resume, damage, hostility."
import functools, http.server, io, json, subprocess, sys, tarfile, threading
from pathlib import Path

import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import file_sha256
from depthseg.pack import INDEX, pack, pull, push


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    "Static files with `Range: bytes=N-` support; `cut[name] = n` sends only the first n bytes of a file, then hangs up."
    cut: dict = {}
    served: dict = {}

    def log_message(self, *args): pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file(): return self.send_error(404)
        data = path.read_bytes()
        start = int(self.headers['Range'].split('=')[1].split('-')[0]) if self.headers.get('Range') else 0
        self.send_response(206 if start else 200)
        self.send_header('Content-Length', str(len(data) - start))
        if start: self.send_header('Content-Range', f'bytes {start}-{len(data) - 1}/{len(data)}')
        self.send_header('Accept-Ranges', 'bytes'); self.end_headers()
        body = data[start:start + self.cut.pop(path.name)] if path.name in self.cut else data[start:]
        self.served[path.name] = self.served.get(path.name, 0) + len(body)
        self.wfile.write(body)
        if len(body) < len(data) - start: self.close_connection = True


@pytest.fixture
def server(tmp_path):
    root = tmp_path/'www'; root.mkdir()
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(RangeHandler, directory=str(root)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    RangeHandler.cut, RangeHandler.served = {}, {}
    yield root, f'http://127.0.0.1:{srv.server_port}'
    srv.shutdown(); srv.server_close()


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file() and '.depthseg-pull' not in p.parts}


@pytest.fixture
def packed(dataset, tmp_path):
    make_composites(dataset, CompositesJob(positions=1), progress=False)
    index = pack(dataset, tmp_path/'shards', shard_size=1_500_000, progress=False)
    assert len(index['shards']) >= 3
    return dataset, tmp_path/'shards', index


def test_round_trip_through_a_folder(packed, tmp_path):
    dataset, shards, _ = packed
    push(shards, tmp_path/'drive', progress=False)
    report = pull(tmp_path/'drive', tmp_path/'local', progress=False)
    assert report.ok and files(tmp_path/'local') == files(dataset)


def test_round_trip_over_http_with_a_resumed_download(packed, server, tmp_path):
    dataset, shards, index = packed
    www, url = server
    push(shards, www, progress=False)
    second = index['shards'][1]
    RangeHandler.cut[second['name']] = second['bytes'] // 3  # the connection drops a third of the way
    first = pull(url, tmp_path/'local', progress=False)
    assert not first.ok and second['name'] in first.missing + list(first.damaged)
    assert len(first.extracted) == len(index['shards']) - 1  # the others are kept
    report = pull(url, tmp_path/'local', progress=False)
    assert report.ok and files(tmp_path/'local') == files(dataset)
    assert RangeHandler.served[second['name']] < 1.5 * second['bytes']  # resumed, not downloaded twice


def test_damaged_shard_is_named_and_the_rest_extracted(packed, tmp_path):
    dataset, shards, index = packed
    victim = shards/index['shards'][0]['name']
    data = bytearray(victim.read_bytes()); data[5000] ^= 0xFF; victim.write_bytes(bytes(data))
    (shards/index['shards'][-1]['name']).unlink()
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'pull', str(shards), str(tmp_path/'local')], capture_output=True, text=True)
    assert r.returncode == 1
    assert f"damaged {victim.name}: checksum differs" in r.stdout and f"missing {index['shards'][-1]['name']}" in r.stdout
    good = [f for s in index['shards'][1:-1] for f in s['files']]
    assert all((tmp_path/'local'/f).read_bytes() == (dataset/f).read_bytes() for f in good)


def test_hostile_archives_write_nothing_outside(tmp_path):
    src = tmp_path/'src'; src.mkdir()
    with tarfile.open(src/'slip-00000.tar', 'w') as t:
        for name in ('ok.txt', '../../outside.txt'):
            info = tarfile.TarInfo(name); info.size = 3; t.addfile(info, io.BytesIO(b'bad'))
    with tarfile.open(src/'abs-00001.tar', 'w') as t:
        info = tarfile.TarInfo(str(tmp_path/'abs.txt')); info.size = 3; t.addfile(info, io.BytesIO(b'bad'))
    with tarfile.open(src/'dev-00002.tar', 'w') as t:
        info = tarfile.TarInfo('null'); info.type = tarfile.CHRTYPE; t.addfile(info)
    with tarfile.open(src/'hard-00003.tar', 'w') as t:
        info = tarfile.TarInfo('h'); info.type, info.linkname = tarfile.LNKTYPE, '/etc/passwd'; t.addfile(info)
    names = sorted(p.name for p in src.glob('*.tar'))
    shards = [dict(name=n, bytes=(src/n).stat().st_size, sha256=file_sha256(src/n), files=[]) for n in names]
    (src/INDEX).write_text(json.dumps(dict(format='depthseg-shards/1', dataset='x', files=0, shards=shards)))
    report = pull(src, tmp_path/'dest', progress=False)
    assert sorted(report.damaged) == names, report
    assert 'absolute path' in report.damaged['abs-00001.tar'] and 'special file' in report.damaged['dev-00002.tar']
    assert not (tmp_path/'outside.txt').exists() and not (tmp_path/'abs.txt').exists()
    assert not (tmp_path/'dest/ok.txt').exists()  # a refused shard writes nothing at all


def test_pack_is_deterministic(packed, tmp_path):
    dataset, shards, index = packed
    again = pack(dataset, tmp_path/'again', shard_size=1_500_000, progress=False)
    assert again == index
    assert all((tmp_path/'again'/s['name']).read_bytes() == (shards/s['name']).read_bytes() for s in index['shards'])
    with tarfile.open(shards/index['shards'][0]['name']) as t:
        assert {(m.mtime, m.uid, m.uname) for m in t.getmembers()} == {(0, 0, '')}
