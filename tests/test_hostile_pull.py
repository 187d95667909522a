"Pull from sources an attacker controls: hostile indexes, archives and HTTP servers are refused in one line, nothing lands outside DEST."
import errno, gzip, http.server, io, json, os, signal, socket, subprocess, sys, tarfile, threading, time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

import depthseg.pack
from depthseg.core import BadInput, file_sha256
from depthseg.layout import SHARD_INDEX, pull_state
from depthseg.pack import INDEX_FORMAT, pull, read_index

CLI = [sys.executable, '-m', 'depthseg.cli', 'pull']


def shard_bytes(members) -> bytes:
    "An uncompressed tar of `members`: (name, data) pairs."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def seal(folder: Path, index: dict) -> dict:
    "Write `index` into `folder`, each shard's `bytes` and `sha256` made those of its file there (if any): an index that vouches for hostile shards."
    for s in index['shards']:
        if (folder/s['name']).is_file(): s.update(bytes=(folder/s['name']).stat().st_size, sha256=file_sha256(folder/s['name']))
    (folder/SHARD_INDEX).write_text(json.dumps(index))
    return index


def make_shards(folder: Path, shards: int = 3, per: int = 4, size: int = 20_000) -> dict:
    "`shards` consistent shards of `per` files `bg/bg_NNN.jpg` of `size` bytes each in `folder`, with their index."
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k in range(shards):
        files = {f'bg/bg_{k * per + i:03d}.jpg': bytes([k * per + i]) * size for i in range(per)}
        (folder/f'set-{k:05d}.tar').write_bytes(shard_bytes(files.items()))
        entries.append(dict(name=f'set-{k:05d}.tar', files=list(files), sizes=[size] * per))
    return seal(folder, dict(format=INDEX_FORMAT, dataset='set', files=shards * per, made_from={}, shards=entries))


def tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    "SHA-256 of every file under `root` ('dir' for folders), those under `skip` left out."
    return {p.relative_to(root).as_posix(): file_sha256(p) if p.is_file() else 'dir' for p in sorted(root.rglob('*'))
            if skip is None or (p != skip and skip not in p.parents)}


class Handler(http.server.BaseHTTPRequestHandler):
    "Files of `server.root` (or `server.bodies[name]`), with ranges; `server.status[name]` an error instead; `server.moved[name]` a redirect; `server.drop` names cut once halfway; `server.delay` seconds per 16 KiB."
    def log_message(self, *args): pass

    def do_GET(self):
        srv, name = self.server, self.path.lstrip('/')
        if name in srv.status: return self.send_error(srv.status[name])
        if name in srv.moved: self.send_response(302); self.send_header('Location', srv.moved[name]); self.end_headers(); return
        body = srv.bodies.get(name) or ((srv.root/name).read_bytes() if (srv.root/name).is_file() else None)
        if body is None: return self.send_error(404)
        start = int(self.headers['Range'].split('=')[1].split('-')[0]) if self.headers.get('Range') else 0
        self.send_response(206 if start else 200)
        if start: self.send_header('Content-Range', f'bytes {start}-{len(body) - 1}/{len(body)}')
        self.send_header('Content-Length', str(len(body) - start)); self.end_headers()
        end = start + (len(body) - start) // 2 if name in srv.drop else len(body)
        srv.drop.discard(name)
        for i in range(start, end, 16384):
            self.wfile.write(body[i:min(i + 16384, end)]); srv.served[name] += min(16384, end - i)
            if srv.delay: time.sleep(srv.delay)
        if end < len(body): self.close_connection = True


@pytest.fixture
def web(tmp_path):
    "A server on 127.0.0.1 and its URL."
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.root, srv.bodies, srv.status, srv.moved, srv.drop, srv.delay, srv.served = tmp_path/'www', {}, {}, {}, set(), 0, Counter()
    srv.root.mkdir(); srv.handle_error = lambda request, address: None  # a client that hangs up is no error here
    threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
    yield srv, f'http://127.0.0.1:{srv.server_port}'
    srv.shutdown(); srv.server_close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(depthseg.pack, 'WAITS', (0, 0))


def refused(source, dest: Path, around: Path, named) -> BadInput:
    "The `BadInput` pull raises for `source`, naming `named`, in one line, having changed nothing under `around` and written no file in `dest`."
    before = tree(around, dest)
    with pytest.raises(BadInput) as e: pull(source, dest, progress=False)
    assert e.value.source == str(named) and '\n' not in str(e.value)
    assert tree(around, dest) == before and not [p for p in dest.rglob('*') if p.is_file()]
    return e.value


@pytest.mark.parametrize('via', ['folder', 'url'])
@pytest.mark.parametrize('name', ['../evil-00000.tar', '/tmp/evil-00000.tar', 'a/../../evil-00000.tar', '..', ''])
def test_shard_names_that_leave_the_folder_are_refused(tmp_path, web, via, name):
    srv, url = web
    index = make_shards(srv.root)
    (tmp_path/'evil-00000.tar').write_bytes(shard_bytes([('bg/bg_000.jpg', b'pwned')]))  # what '../' would reach
    index['shards'][0]['name'] = name
    seal(srv.root, index)  # for '../evil-00000.tar', its size and SHA-256 are those of the file it reaches
    e = refused(url if via == 'url' else srv.root, tmp_path/'dest', tmp_path, f'{url}/{SHARD_INDEX}' if via == 'url' else srv.root/SHARD_INDEX)
    assert 'not a shard file name' in e.reason and set(srv.served) <= {SHARD_INDEX}


@pytest.mark.parametrize('member', ['../escape.jpg', '/etc/cron.d/evil', 'bg/../../escape.jpg', 'C:/evil.jpg', 'bg/bg_000.jpg/../../x'])
def test_member_names_that_leave_dest_are_refused(tmp_path, member):
    index = make_shards(tmp_path/'src')
    (tmp_path/'src/set-00000.tar').write_bytes(shard_bytes([(member, b'pwned')]))
    index['shards'][0].update(files=[member], sizes=[5])
    seal(tmp_path/'src', index)
    e = refused(tmp_path/'src', tmp_path/'dest', tmp_path, tmp_path/'src'/SHARD_INDEX)
    assert 'shard set-00000.tar' in e.reason and repr(member) in e.reason


def test_a_gzip_bomb_posing_as_a_tar_is_refused(tmp_path):
    index = make_shards(tmp_path/'src')
    zeros = 4 * 2**20
    bomb = gzip.compress(shard_bytes([('bg/bg_000.jpg', bytes(zeros))]))
    assert len(bomb) < 20_000
    (tmp_path/'src/set-00000.tar').write_bytes(bomb)
    index['shards'][0].update(files=['bg/bg_000.jpg'], sizes=[zeros])
    seal(tmp_path/'src', index)
    report = pull(tmp_path/'src', tmp_path/'dest', workers=1, progress=False)
    assert report.damaged['set-00000.tar'].startswith('not an uncompressed tar (compressed data?)')
    assert report.extracted == ['set-00001.tar', 'set-00002.tar'] and not (tmp_path/'dest/bg/bg_000.jpg').exists()
    assert sum(p.stat().st_size for p in (tmp_path/'dest').rglob('*') if p.is_file()) < 1_000_000


@pytest.mark.parametrize('members, why', [
    ([('bg/bg_000.jpg', b'a' * 10), ('bg/bg_000.jpg', b'b' * 10)], "member 'bg/bg_000.jpg' comes twice"),
    ([('bg/bg_000.jpg', b'a' * 10), ('bg/bg_999.jpg', b'b' * 10)], "member 'bg/bg_999.jpg' is not in the index"),
    ([('bg/bg_000.jpg', b'a' * 10_000)], "member 'bg/bg_000.jpg' has 10,000 bytes, the index says 10"),
    ([], "no member 'bg/bg_000.jpg', listed in the index"),
], ids=['duplicate', 'unlisted', 'size', 'absent'])
def test_a_shard_must_hold_exactly_what_the_index_lists(tmp_path, members, why):
    index = make_shards(tmp_path/'src')
    (tmp_path/'src/set-00000.tar').write_bytes(shard_bytes(members))
    index['shards'][0].update(files=['bg/bg_000.jpg'], sizes=[10])
    seal(tmp_path/'src', index)
    report = pull(tmp_path/'src', tmp_path/'dest', workers=2, progress=False)
    assert report.damaged == {'set-00000.tar': f'refused: {why}'}
    assert not (tmp_path/'dest/bg/bg_000.jpg').exists() and not (tmp_path/'dest/bg/bg_999.jpg').exists()
    assert len([p for p in (tmp_path/'dest/bg').iterdir()]) == 8  # the other shards extracted


def change(path: str, value):
    "Set the field at `path` (keys and indexes, '.'-separated) of an index to `value`, or delete it if `value` is `del`."
    def apply(index):
        *up, last = [int(k) if k.isdigit() else k for k in path.split('.')]
        for k in up: index = index[k]
        if value is del_: del index[last]
        else: index[last] = value
    return apply

del_ = object()

MALFORMED = {
    'not-json': (b'{"format": "depthseg-shards/2", "shards": [', 'no readable shard index (Expecting'),
    'not-utf8': (b'\xff\xfe\x00{', 'no readable shard index'),
    'a-list': (b'[]', 'not a JSON object'),
    'deep': (b'[' * 100_000 + b']' * 100_000, 'no readable shard index'),
    'old-format': (change('format', 'depthseg-shards/1'), "format 'depthseg-shards/1', not 'depthseg-shards/2'"),
    'no-shards': (change('shards', []), 'the index lists no shards'),
    'shards-not-a-list': (change('shards', {'a': 1}), 'the index lists no shards'),
    'shard-not-an-object': (change('shards.1', 'set-00001.tar'), 'shard 1 is not a JSON object'),
    'no-bytes': (change('shards.0.bytes', del_), "shard set-00000.tar: 'bytes' is None, not a number of bytes"),
    'bytes-text': (change('shards.0.bytes', '40960'), "shard set-00000.tar: 'bytes' is '40960'"),
    'bytes-negative': (change('shards.1.bytes', -1), "shard set-00001.tar: 'bytes' is -1"),
    'bytes-bool': (change('shards.1.bytes', True), "'bytes' is True"),
    'bytes-float': (change('shards.1.bytes', 1e3), "'bytes' is 1000.0"),
    'sha-short': (change('shards.2.sha256', 'abc'), "shard set-00002.tar: 'sha256' is 'abc', not 64 hexadecimal digits"),
    'sha-not-hex': (change('shards.2.sha256', 'z' * 64), "'sha256' is 'zzzz"),
    'no-name': (change('shards.0.name', del_), 'shard 0: name None is not a shard file name'),
    'name-with-slash': (change('shards.0.name', 'sub/set-00000.tar'), "shard 0: name 'sub/set-00000.tar' is not a shard file name"),
    'tfrecord-name': (change('shards.0.name', 'data-00000-of-00001.tfrecord'), 'is not a shard file name'),
    'same-shard-twice': (change('shards.1.name', 'set-00000.tar'), 'shard set-00000.tar is listed twice'),
    'no-sizes': (change('shards.0.sizes', del_), "shard set-00000.tar: no lists 'files' and 'sizes' of the same length"),
    'sizes-short': (change('shards.0.sizes', [1]), "no lists 'files' and 'sizes' of the same length"),
    'files-not-a-list': (change('shards.0.files', 'bg/bg_000.jpg'), "no lists 'files' and 'sizes'"),
    'size-text': (change('shards.0.sizes.2', '20000'), "shard set-00000.tar: the size of 'bg/bg_002.jpg' is '20000', not a number of bytes"),
    'file-twice-in-a-shard': (change('shards.0.files.1', 'bg/bg_000.jpg'), "shard set-00000.tar: 'bg/bg_000.jpg' is listed twice"),
    'file-twice-across-shards': (change('shards.2.files.0', 'bg/bg_000.jpg'), "shard set-00002.tar: 'bg/bg_000.jpg' is listed twice"),
    'file-not-a-name': (change('shards.0.files.0', 7), 'shard set-00000.tar: 7 is not a file name'),
    'file-outside-layout': (change('shards.0.files.0', 'notes.txt'), "'notes.txt' is no file of a depthseg dataset"),
    'made-from-not-sums': (change('made_from', {'composites.json': 'x'}), "'made_from' is no table of SHA-256 sums"),
    'huge-value': (change('shards.0.bytes', 'x' * 10_000), "'bytes' is 'xxxxxxxx"),
}


@pytest.mark.parametrize('case', MALFORMED)
def test_a_malformed_index_is_one_line_naming_it(tmp_path, case):
    bad, why = MALFORMED[case]
    index = make_shards(tmp_path/'src')
    if callable(bad): bad(index); (tmp_path/'src'/SHARD_INDEX).write_text(json.dumps(index))
    else: (tmp_path/'src'/SHARD_INDEX).write_bytes(bad)
    e = refused(tmp_path/'src', tmp_path/'dest', tmp_path, tmp_path/'src'/SHARD_INDEX)
    assert why in e.reason and len(str(e)) < 300, e
    with pytest.raises(BadInput, match='^' + str(tmp_path/'src'/SHARD_INDEX)): read_index(tmp_path/'src')


def test_the_command_line_says_what_is_wrong_in_one_line(tmp_path, web):
    srv, url = web
    index = make_shards(tmp_path/'src')
    del index['shards'][1]['bytes']; (tmp_path/'src'/SHARD_INDEX).write_text(json.dumps(index))
    r = subprocess.run(CLI + [str(tmp_path/'src'), str(tmp_path/'dest')], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.count('\n') == 1, r.stderr
    assert r.stderr.startswith(f"depthseg pull: error: {tmp_path/'src'/SHARD_INDEX}: shard set-00001.tar: 'bytes' is None")
    r = subprocess.run(CLI + [url, str(tmp_path/'dest')], capture_output=True, text=True)  # nothing served: 404
    assert r.returncode != 0 and r.stderr == f'depthseg pull: error: {url}/{SHARD_INDEX}: 404 for the shard index\n'


def test_http_errors_are_named_per_shard(tmp_path, web):
    srv, url = web
    index = make_shards(srv.root, shards=4)
    srv.status = {'set-00001.tar': 404, 'set-00002.tar': 500}
    report = pull(url, tmp_path/'dest', progress=False)
    assert report.missing == {'set-00001.tar': '404 for shard set-00001.tar'}
    assert report.damaged == {'set-00002.tar': 'HTTP 500 for shard set-00002.tar'}
    assert report.extracted == ['set-00000.tar', 'set-00003.tar']
    srv.status = {}
    assert pull(url, tmp_path/'dest', progress=False).ok and tree(tmp_path/'dest') == tree(pull_clean(srv.root, tmp_path))
    with pytest.raises(BadInput, match=f'^{url}/nothing/{SHARD_INDEX}: 404 for the shard index$'): pull(f'{url}/nothing', tmp_path/'d2', progress=False)


def test_a_redirect_to_another_scheme_is_refused_unopened(tmp_path, web, ftp_listener):
    (srv, url), (port, heard) = web, ftp_listener
    make_shards(srv.root)
    srv.moved = {'set-00001.tar': f'ftp://127.0.0.1:{port}/set-00001.tar', 'elsewhere/' + SHARD_INDEX: 'file:///etc/passwd'}
    assert pull(url, tmp_path/'dest', progress=False).damaged == {'set-00001.tar': f'redirected to a non-http(s) URL ftp://127.0.0.1:{port}/set-00001.tar'}
    with pytest.raises(BadInput, match=f'^{url}/elsewhere/{SHARD_INDEX}: redirected to a non-http\\(s\\) URL file:///etc/passwd$'):
        pull(f'{url}/elsewhere', tmp_path/'d2', progress=False)
    time.sleep(0.3); assert heard == []  # nobody connected to the FTP port


def pull_clean(source, tmp_path) -> Path:
    "A folder holding an uninterrupted pull of `source`."
    assert pull(source, tmp_path/'clean', progress=False).ok
    return tmp_path/'clean'


def test_an_unreachable_server_is_one_line(tmp_path):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]  # closed at once: nobody listens
    with pytest.raises(ConnectionError) as e: pull(f'http://127.0.0.1:{port}/shards', tmp_path/'dest', progress=False)
    assert str(e.value).startswith(f'cannot reach http://127.0.0.1:{port}/shards/{SHARD_INDEX} (') and '\n' not in str(e.value)
    assert not [p for p in (tmp_path/'dest').rglob('*') if p.is_file()]


def test_a_web_page_instead_of_a_shard_is_named(tmp_path, web):
    srv, url = web
    make_shards(srv.root)
    srv.bodies['set-00001.tar'] = b'\n <!DOCTYPE html><html><body>Google Drive - Quota exceeded</body></html>'
    report = pull(url, tmp_path/'dest', progress=False)
    assert report.damaged == {'set-00001.tar': 'the server returned a web page, not shard set-00001.tar (Drive does for a quota or virus-scan notice)'}
    assert not list((pull_state(tmp_path/'dest')/'download').glob('set-00001*'))  # nothing of it kept


def test_a_web_page_from_google_drive_is_named(tmp_path, monkeypatch):
    import gdown
    folder = tmp_path/'drive'; make_shards(folder)
    (folder/'set-00002.tar').write_text('<html><head><title>Google Drive - Virus scan warning</title></html>')
    def download_folder(url=None, id=None, skip_download=False, **kw):
        assert skip_download
        return [SimpleNamespace(id=p.name, path=p.name, local_path=None) for p in sorted(folder.iterdir())]
    def download(url=None, output=None, id=None, resume=False, **kw):
        if isinstance(output, str): Path(output).write_bytes((folder/id).read_bytes())
        else: output.write((folder/id).read_bytes())
        return output
    monkeypatch.setattr(gdown, 'download_folder', download_folder); monkeypatch.setattr(gdown, 'download', download)
    report = pull('1AbCdEfGhIjKlMnOpQrStUvWxYz012345', tmp_path/'dest', progress=False)
    assert report.damaged == {'set-00002.tar': 'Drive returned a web page (quota or virus-scan notice) for set-00002.tar'}
    assert report.extracted == ['set-00000.tar', 'set-00001.tar']
    assert not (pull_state(tmp_path/'dest')/'download'/'set-00002.tar').exists()  # fetched again next time


def test_a_server_sending_more_than_declared_is_stopped(tmp_path, web):
    srv, url = web
    index = make_shards(srv.root)
    declared = index['shards'][0]['bytes']
    srv.bodies['set-00000.tar'] = (srv.root/'set-00000.tar').read_bytes() + bytes(10 * 2**20)
    report = pull(url, tmp_path/'dest', progress=False)
    assert report.damaged == {'set-00000.tar': f'the server sent more than the {declared:,} bytes expected of shard set-00000.tar'}
    assert not list((pull_state(tmp_path/'dest')/'download').glob('set-00000*'))  # nothing of it kept


def test_a_lost_connection_is_resumed_in_the_same_run(tmp_path, web):
    srv, url = web
    index = make_shards(srv.root, shards=2, size=200_000)
    srv.drop = {'set-00001.tar'}
    assert pull(url, tmp_path/'dest', progress=False).ok
    assert srv.served['set-00001.tar'] == index['shards'][1]['bytes']  # half, then the other half


def test_dest_holding_another_dataset_is_refused(tmp_path):
    make_shards(tmp_path/'src'); make_shards(tmp_path/'other', shards=2)
    dest = tmp_path/'dest'; (dest/'bg').mkdir(parents=True); (dest/'bg/bg_000.jpg').write_bytes(b'mine')
    before = tree(dest)
    with pytest.raises(BadInput, match=f"^{dest}: holds 'bg/bg_000.jpg' and more: another dataset"): pull(tmp_path/'src', dest, progress=False)
    assert tree(dest) == before
    done = tmp_path/'done'
    assert pull(tmp_path/'src', done, progress=False).ok
    stamps = {p: p.stat().st_mtime_ns for p in done.rglob('*') if p.is_file()}
    again = pull(tmp_path/'src', done, progress=False)  # the same pull again: nothing to do
    assert again.ok and len(again.extracted) == 3 and stamps == {p: p.stat().st_mtime_ns for p in done.rglob('*') if p.is_file()}
    before = tree(done)
    with pytest.raises(BadInput, match=f'^{done}: holds'): pull(tmp_path/'other', done, progress=False)
    assert tree(done) == before


def downloading(dest: Path) -> bool:
    "Has a pull into `dest` begun writing a download?"
    try: return any(p.stat().st_size for p in pull_state(dest).glob('download/*.part'))
    except FileNotFoundError: return False  # renamed as we looked


def test_kill_9_mid_pull_then_again_is_a_clean_pull(tmp_path, web):
    srv, url = web
    make_shards(srv.root, shards=3, size=400_000)  # shards of 1.6 MB: read by the MiB, so a part is seen half-written
    srv.delay, dest = 0.01, tmp_path/'dest'
    run = subprocess.Popen(CLI + [url, str(dest), '--workers', '1'], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 15
    while not downloading(dest) and time.time() < deadline: time.sleep(0.02)
    os.killpg(run.pid, signal.SIGKILL); run.wait()
    assert run.returncode == -signal.SIGKILL and downloading(dest), 'the pull finished before it was killed'
    (dest/'bg').mkdir(exist_ok=True); (dest/'bg/.bg_000.jpg.99999.tmp').write_bytes(b'half')  # as a kill mid-extraction leaves
    srv.delay = 0
    assert pull(url, dest, progress=False).ok
    assert not list(dest.rglob('.*.tmp')) and not list(dest.rglob('*.part'))
    assert tree(dest) == tree(pull_clean(url, tmp_path)) and len(tree(dest)) == 1 + 12


def test_a_full_disk_is_raised_not_called_damage(tmp_path, monkeypatch):
    make_shards(tmp_path/'src')
    def full(*args, **kw): raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(depthseg.pack, 'atomic_open', full)
    with pytest.raises(OSError, match='No space left'): pull(tmp_path/'src', tmp_path/'dest', workers=1, progress=False)
    assert not list(pull_state(tmp_path/'dest').glob('*.done'))
    monkeypatch.undo()
    assert pull(tmp_path/'src', tmp_path/'dest', workers=1, progress=False).ok
