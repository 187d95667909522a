"`depthseg collect` against a web server on 127.0.0.1 serving good, broken, slow, redirecting, oversized, HTML and duplicate answers."
import http.server, io, json, os, re, signal, subprocess, sys, threading, time
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

import depthseg.pack
from depthseg.cli import main
from depthseg.collect import collect, fetch_image, read_url_list, url_key, Entry
from depthseg.core import read_csv, sha256
from depthseg.samples import draw_room

from conftest import ROOT


def jpeg(im, **kw) -> bytes:
    buf = io.BytesIO(); im.save(buf, 'JPEG', **kw); return buf.getvalue()


GOOD = {f'/good/{i}.jpg': jpeg(draw_room(i, (320, 240)), quality=90) for i in range(4)}
BODIES = {
    **GOOD,
    '/copy.jpg': GOOD['/good/0.jpg'],  # the same bytes under another name
    '/resized.jpg': jpeg(Image.open(io.BytesIO(GOOD['/good/1.jpg'])).resize((300, 225)), quality=70),  # a near-duplicate
    '/page.jpg': b'<!DOCTYPE html>\n<html><head><title>Access denied</title></head></html>',
    '/broken.jpg': GOOD['/good/2.jpg'][:3000],  # cut short: a truncated JPEG
    '/noise.jpg': b'GIF89a' + bytes(range(256)) * 4,  # a known signature, no image
    '/tiny.jpg': jpeg(draw_room(5, (120, 90))),
    '/huge.png': b'\x89PNG' + bytes(300_000),  # over --max-bytes
    '/flaky.jpg': jpeg(draw_room(6, (320, 240))),  # busy (503) on its first request
    '/slow.jpg': jpeg(draw_room(7, (320, 240))),  # answers after the timeout
}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args): pass

    def do_GET(self):
        srv = self.server
        with srv.lock: srv.requests[self.path] += 1; n = srv.requests[self.path]
        time.sleep(srv.delay)
        if self.path == '/slow.jpg': time.sleep(1.5)
        if self.path == '/redirect': self.send_response(302); self.send_header('Location', '/good/3.jpg'); self.end_headers(); return
        if self.path == '/to-ftp': self.send_response(302); self.send_header('Location', srv.ftp); self.end_headers(); return
        if self.path == '/drip.jpg': return self.drip()
        if self.path == '/flaky.jpg' and n == 1: return self.send_error(503)
        if (body := BODIES.get(self.path)) is None: return self.send_error(404)
        self.send_response(200); self.send_header('Content-Type', 'image/jpeg'); self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        try: self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError): pass  # the client stopped reading: over its size limit


    def drip(self):
        "An image's header, then a byte every 0.1 s: each read is answered in time, the whole never."
        body = GOOD['/good/0.jpg']
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        try:
            for i in range(100): self.wfile.write(body[i:i + 1]); self.wfile.flush(); time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError): pass


@pytest.fixture
def web():
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    srv.requests, srv.lock, srv.delay, srv.ftp = Counter(), threading.Lock(), 0, 'ftp://127.0.0.1:1/x.jpg'
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv, f'http://127.0.0.1:{srv.server_port}'
    srv.shutdown(); srv.server_close()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(depthseg.pack, 'WAITS', (0.1,))  # one more try, soon


PATHS = ['/good/0.jpg', '/good/1.jpg', '/good/2.jpg', '/redirect', '/copy.jpg', '/resized.jpg', '/page.jpg', '/broken.jpg',
         '/noise.jpg', '/tiny.jpg', '/huge.png', '/missing.jpg', '/flaky.jpg', '/slow.jpg']
REASONS = {  # line -> reason
    6: 'duplicate of line 2 (same SHA-256)',
    8: 'the server returned a web page, not the image (Drive does for a quota or virus-scan notice)',
    10: 'corrupt image: its format is known but its data cannot be decoded',
    11: 'too small: 120x90, shorter side under 224 px',
    12: 'the server sent more than the 100,000 bytes expected of the image',
    13: '404 for the image',
    16: 'not an http(s) URL',
    17: 'the same URL as line 2',
}


def url_list(tmp_path, base) -> Path:
    rows = ['url,licence,credit'] + [f'{base}{p},CC-BY 4.0,Ann {i}' for i, p in enumerate(PATHS)] + ['file:///etc/passwd,,', f'{base}/good/0.jpg,,']
    (tmp_path/'urls.csv').write_text('\n'.join(rows) + '\n')
    return tmp_path/'urls.csv'


def folder(path: Path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


def test_collect_keeps_each_good_image_once_and_says_why_of_the_rest(tmp_path, web):
    srv, base = web
    report = collect(url_list(tmp_path, base), tmp_path/'out', workers=4, timeout=0.5, max_bytes=100_000, progress=False)
    kept = read_csv(tmp_path/'out/collect_sources.csv')
    assert [r['line'] for r in kept] == ['2', '3', '4', '5', '14']  # the three good ones, the redirect's target, the flaky one
    assert [r['sha256'] for r in kept] == [sha256(BODIES[p]) for p in ['/good/0.jpg', '/good/1.jpg', '/good/2.jpg', '/good/3.jpg', '/flaky.jpg']]
    assert kept[3]['url'] == f'{base}/redirect' and kept[0]['licence'] == 'CC-BY 4.0' and kept[4]['credit'] == 'Ann 12'
    assert sorted((tmp_path/'out/images').iterdir()) == sorted(tmp_path/'out'/r['file'] for r in kept)
    assert all(sha256((tmp_path/'out'/r['file']).read_bytes()) == r['sha256'] and len(r['phash']) == 16 for r in kept)
    refused = {int(r['line']): r['reason'] for r in read_csv(tmp_path/'out/collect_rejects.csv')}
    assert {k: refused[k] for k in REASONS} == REASONS
    assert refused[7].startswith('near-duplicate of line 3 (perceptual hashes ')
    assert refused[9].startswith('truncated or corrupt image data')
    assert refused[15] == 'cannot reach the server (timed out)'
    assert set(refused) | {2, 3, 4, 5, 14} == set(range(2, 18))  # every line accounted for
    assert srv.requests['/flaky.jpg'] == 2 and srv.requests['/slow.jpg'] == 2  # tried again within the run
    assert str(report).count('\n') == len({re.sub(r'\d+', 'N', why) for why in refused.values()})  # a line per reason

    before = Counter(srv.requests)  # a rerun asks again only what may pass by itself: the slow one
    again = collect(tmp_path/'urls.csv', tmp_path/'out', workers=4, timeout=0.5, max_bytes=100_000, progress=False)
    assert srv.requests - before == Counter({'/slow.jpg': 2}) and again.downloaded == 1
    assert [e.line for e in again.kept] == [2, 3, 4, 5, 14]
    assert not [p for p in (tmp_path/'out').rglob('*') if p.name.endswith('.tmp') or p.name == '.depthseg.lock']


def test_a_later_run_fetches_a_kept_image_lost_from_the_folder(tmp_path, web):
    srv, base = web
    (tmp_path/'urls.txt').write_text(f'{base}/good/0.jpg\n{base}/good/1.jpg\n')
    collect(tmp_path/'urls.txt', tmp_path/'out', progress=False)
    lost = tmp_path/'out/images'/f'web_{url_key(base + "/good/1.jpg")}.jpg'
    lost.write_bytes(b'damaged')
    assert collect(tmp_path/'urls.txt', tmp_path/'out', progress=False).downloaded == 1
    assert lost.read_bytes() == BODIES['/good/1.jpg'] and srv.requests['/good/0.jpg'] == 1


RUN = "import sys; from depthseg.collect import collect; collect(sys.argv[1], sys.argv[2], workers=2, min_side=100, progress=False)"


def test_killed_and_run_again_gives_the_same_folder(tmp_path, web):
    srv, base = web
    many = {f'/many/{i}.jpg': jpeg(draw_room(i, (160, 120))) for i in range(10, 34)}
    BODIES.update(many)
    (tmp_path/'urls.txt').write_text(''.join(f'{base}{p}\n' for p in many) + f'{base}/page.jpg\n{base}/many/10.jpg\n')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    srv.delay = 0.05
    subprocess.run([sys.executable, '-c', RUN, tmp_path/'urls.txt', tmp_path/'whole'], env=env, check=True)
    srv.delay = 0.3
    proc = subprocess.Popen([sys.executable, '-c', RUN, tmp_path/'urls.txt', tmp_path/'cut'], env=env)
    while len(list((tmp_path/'cut/.collect').glob('*.json'))) < 5 and proc.poll() is None: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait()
    done = len(list((tmp_path/'cut/.collect').glob('*.json')))
    assert 5 <= done < len(many)  # cut short
    srv.delay, before = 0, Counter(srv.requests)
    subprocess.run([sys.executable, '-c', RUN, tmp_path/'urls.txt', tmp_path/'cut'], env=env, check=True)
    assert folder(tmp_path/'cut') == folder(tmp_path/'whole')
    assert sum((srv.requests - before).values()) == len(many) + 1 - done  # only the URLs without a record (the page's included)
    assert len(read_csv(tmp_path/'whole/collect_sources.csv')) == len(many)


def test_the_command_line(tmp_path, web, capsys):
    srv, base = web
    (tmp_path/'urls.txt').write_text(f'{base}/good/0.jpg\n')
    assert main(['collect', str(tmp_path/'urls.txt'), str(tmp_path/'out'), '--workers', '2']) == 0
    assert 'collect: 1 images kept in' in capsys.readouterr().out
    assert main(['collect', str(tmp_path/'nothing.txt'), str(tmp_path/'out')]) == 2
    assert capsys.readouterr().err.strip() == f'depthseg collect: error: {tmp_path}/nothing.txt: no such file of URLs'
    (tmp_path/'other').mkdir(); (tmp_path/'other/notes.txt').write_text('mine')
    assert main(['collect', str(tmp_path/'urls.txt'), str(tmp_path/'other')]) == 2
    assert "holds 'notes.txt', which collect did not write" in capsys.readouterr().err


def test_a_redirect_to_another_scheme_is_refused_unopened_and_not_retried(tmp_path, web, ftp_listener):
    (srv, base), (port, heard) = web, ftp_listener
    srv.ftp = f'ftp://127.0.0.1:{port}/x.jpg'
    (tmp_path/'urls.txt').write_text(f'{base}/to-ftp\n{base}/good/0.jpg\n')
    report = collect(tmp_path/'urls.txt', tmp_path/'out', progress=False)
    assert report.refused == [(Entry(1, f'{base}/to-ftp'), f'redirected to a non-http(s) URL ftp://127.0.0.1:{port}/x.jpg')]
    time.sleep(0.3); assert heard == []  # nobody connected to the FTP port
    assert collect(tmp_path/'urls.txt', tmp_path/'out', progress=False).downloaded == 0 and srv.requests['/to-ftp'] == 1


def test_a_server_dripping_bytes_is_given_up_on_at_the_deadline(tmp_path, web):
    srv, base = web
    record, data = fetch_image(f'{base}/drip.jpg', timeout=5, deadline=0.5)
    assert data is None and record == dict(url=f'{base}/drip.jpg', reason='the image took over 0.5 s to download (a slow server)', retry=True)
    (tmp_path/'urls.txt').write_text(f'{base}/drip.jpg\n')
    report = collect(tmp_path/'urls.txt', tmp_path/'out', timeout=5, deadline=0.5, progress=False)
    assert [why for _, why in report.refused] == ['the image took over 0.5 s to download (a slow server)']


@pytest.mark.parametrize('text, lines', [
    ('# my rooms\nurl,licence\n# from the first search\n{base}/good/0.jpg,CC0\n  # an aside\n{base}/good/1.jpg,CC0\n', [4, 6]),
    ('# my rooms\n{base}/good/0.jpg\n#{base}/good/2.jpg\n{base}/good/1.jpg\n', [2, 4]),
])
def test_comment_lines_are_skipped_in_both_formats(tmp_path, web, text, lines):
    srv, base = web
    (tmp_path/'urls.txt').write_text(text.format(base=base))
    assert [(e.line, e.url) for e in read_url_list(tmp_path/'urls.txt')] == [(lines[0], f'{base}/good/0.jpg'), (lines[1], f'{base}/good/1.jpg')]
    assert [e.line for e in collect(tmp_path/'urls.txt', tmp_path/'out', progress=False).kept] == lines


def test_urls_are_encoded_as_browsers_do_and_credentials_refused_unshown(tmp_path, web, capsys):
    srv, base = web
    BODIES.update({'/caf%C3%A9.jpg': GOOD['/good/1.jpg'], '/my%20room.jpg': GOOD['/good/2.jpg']})
    secret = base.replace('http://', 'http://ann:hunter2@') + '/good/3.jpg'
    (tmp_path/'urls.txt').write_text(f"{base}/café.jpg\n{base}/my room.jpg\n{base.replace('http', 'HTTP')}/good/0.jpg\n{secret}\n", encoding='utf-8')
    report = collect(tmp_path/'urls.txt', tmp_path/'out')
    assert [e.line for e in report.kept] == [1, 2, 3]
    assert report.refused[0][1].startswith('a user name or password in the URL') and srv.requests['/good/3.jpg'] == 0
    written = ''.join(p.read_text() for p in (tmp_path/'out').rglob('*') if p.suffix in ('.csv', '.json'))
    assert 'hunter2' not in written + capsys.readouterr().out and 'http://***@127.0.0.1' in written


def test_hostile_urls_are_escaped_cut_short_and_summarised(tmp_path, web, capsys):
    srv, base = web
    evil = [f'{base}/missing/{i}\x1b[2J\u202egpj.exe?' + 'x' * 500 for i in range(40)] + [f'{base}/good/0.jpg']
    (tmp_path/'urls.txt').write_text('\n'.join(evil) + '\n', encoding='utf-8')
    report = collect(tmp_path/'urls.txt', tmp_path/'out')
    out = capsys.readouterr().out
    assert len(report.refused) == 40 and out.count('\n') == 2, out  # the summary and one line for the 40 alike
    assert '40 x 404 for the image, e.g. line 1' in out and 'collect_rejects.csv' in out
    table = (tmp_path/'out/collect_rejects.csv').read_text()
    assert not any(c in out + table for c in '\x1b\u202e') and '\\x1b[2J\\u202egpj' in table
    assert max(len(r['url']) for r in read_csv(tmp_path/'out/collect_rejects.csv')) == 200 and max(map(len, out.splitlines())) < 400
