"Pack, push and pull end to end: byte-for-byte round trips through a folder and HTTP, resume, damage, hostility."
import functools, http.server, io, json, subprocess, sys, tarfile, threading
from pathlib import Path

import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import Busy, file_sha256
from depthseg.layout import STAGES
from depthseg.pack import INDEX, INDEX_FORMAT, pack, pull, push


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
            if p.is_file()}


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


def test_round_trip_over_http_with_a_resumed_download(packed, server, tmp_path, monkeypatch):
    dataset, shards, index = packed
    monkeypatch.setattr('depthseg.pack.WAITS', ())  # no second try within a run: the next run resumes
    www, url = server
    push(shards, www, progress=False)
    second = index['shards'][1]
    RangeHandler.cut[second['name']] = second['bytes'] // 3  # the connection drops a third of the way
    first = pull(url, tmp_path/'local', progress=False)
    assert not first.ok and 'connection closed early' in first.missing[second['name']]
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
    "Each shard's index entry lists one file, bg/bg_00K.jpg of 3 bytes; its archive holds a hostile member besides or instead."
    src = tmp_path/'src'; src.mkdir()
    def member(name, type=tarfile.REGTYPE):
        m = tarfile.TarInfo(name); m.type, m.linkname, m.size = type, '/etc/passwd', 3 if type == tarfile.REGTYPE else 0; return m
    hostile = {'slip-00000.tar': [member('bg/bg_000.jpg'), member('../../outside.txt')],
               'abs-00001.tar': [member('bg/bg_001.jpg'), member(str(tmp_path/'abs.txt'))],
               'dev-00002.tar': [member('bg/bg_002.jpg', tarfile.CHRTYPE)],
               'hard-00003.tar': [member('bg/bg_003.jpg', tarfile.LNKTYPE)]}
    for name, members in hostile.items():
        with tarfile.open(src/name, 'w') as t:
            for m in members: t.addfile(m, io.BytesIO(b'bad') if m.isreg() else None)
    shards = [dict(name=n, bytes=(src/n).stat().st_size, sha256=file_sha256(src/n), files=[f'bg/bg_00{k}.jpg'], sizes=[3])
              for k, n in enumerate(hostile)]
    (src/INDEX).write_text(json.dumps(dict(format=INDEX_FORMAT, dataset='x', files=4, made_from={}, shards=shards)))
    report = pull(src, tmp_path/'dest', progress=False)
    assert sorted(report.damaged) == sorted(hostile), report
    assert 'climbs out' in report.damaged['slip-00000.tar'] and 'absolute path' in report.damaged['abs-00001.tar']
    assert 'special file' in report.damaged['dev-00002.tar'] and 'is a link' in report.damaged['hard-00003.tar']
    assert not (tmp_path/'outside.txt').exists() and not (tmp_path/'abs.txt').exists()
    assert not (tmp_path/'dest/bg').exists()  # a refused shard writes nothing at all


def test_pack_is_deterministic(packed, tmp_path):
    dataset, shards, index = packed
    again = pack(dataset, tmp_path/'again', shard_size=1_500_000, progress=False)
    assert again == index
    assert all((tmp_path/'again'/s['name']).read_bytes() == (shards/s['name']).read_bytes() for s in index['shards'])
    with tarfile.open(shards/index['shards'][0]['name']) as t:
        assert {(m.mtime, m.uid, m.uname) for m in t.getmembers()} == {(0, 0, '')}
    assert all(s['sizes'] == [(dataset/f).stat().st_size for f in s['files']] for s in index['shards'])


def test_pack_takes_only_the_files_of_a_dataset(packed, tmp_path, capsys):
    dataset, _, index = packed
    (dataset/'notes.txt').write_text('mine'); (dataset/'bg'/'extra.txt').write_text('mine'); (dataset/'.hidden').write_text('x')
    again = pack(dataset, tmp_path/'again', shard_size=1_500_000)
    assert again == index
    assert "left out 2 files of no dataset, e.g. 'bg/extra.txt'" in capsys.readouterr().out


def test_packing_again_leaves_only_the_shards_of_its_index(packed):
    "Another shard size or name into the same folder: the earlier pack's shards go, so pull never meets them."
    dataset, shards, index = packed
    again = pack(dataset, shards, shard_size=10**9, name='other', progress=False)
    assert sorted(p.name for p in shards.glob('*.tar')) == [s['name'] for s in again['shards']] == ['other-00000.tar']


def test_pack_records_what_it_was_made_from(packed):
    dataset, _, index = packed
    records = sorted({s.record for s in STAGES.values()} & {p.name for p in dataset.iterdir()})
    assert len(records) == 3 and index['made_from'] == {r: file_sha256(dataset/r) for r in records}


def test_pack_cleans_its_output_and_waits_for_no_writer(packed, tmp_path):
    dataset, shards, index = packed
    (shards/'.dataset-00000.tar.123.tmp').write_bytes(b'stale')
    pack(dataset, shards, shard_size=1_500_000, progress=False)
    assert not list(shards.glob('.*'))
    hold = subprocess.Popen([sys.executable, '-c', 'import sys, time; from depthseg.core import dataset_lock\n'
                             f'with dataset_lock({str(dataset)!r}, "composites"): print("held", flush=True); time.sleep(60)'],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == 'held'
        with pytest.raises(Busy, match='composites'): pack(dataset, tmp_path/'other', progress=False)
    finally: hold.kill(); hold.wait()
