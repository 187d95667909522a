"Backgrounds and foregrounds stages end to end through the CLI: bad input, --strict, idempotence, the demo."
import io, subprocess, sys

import pytest
from PIL import Image

from depthseg.core import read_csv
from depthseg.samples import sample_dir


def depthseg(*args):
    return subprocess.run([sys.executable, '-m', 'depthseg.cli', *map(str, args)], capture_output=True, text=True)


def _jpeg(im):
    b = io.BytesIO(); im.save(b, 'JPEG'); return b.getvalue()


def bad_files(folder):
    "One file of each kind of bad input, and the words its reason must contain."
    folder.mkdir(parents=True, exist_ok=True)
    good = _jpeg(Image.effect_noise((120, 90), 60).convert('RGB'))
    (folder/'corrupt.jpg').write_bytes(b'\xff\xd8\xff\xe0' + bytes(range(256)) * 8)
    (folder/'truncated.jpg').write_bytes(good[:len(good) // 2])
    (folder/'empty.png').write_bytes(b'')
    (folder/'notes.txt').write_text('not a picture')
    Image.new('RGB', (16, 16), 'red').save(folder/'tiny.png')
    Image.new('1', (8000, 8000)).save(folder/'bomb.png')  # 64 Mpixels in a few kB
    return {'corrupt.jpg': 'corrupt', 'truncated.jpg': 'truncated', 'empty.png': 'empty file', 'notes.txt': 'not an image',
            'tiny.png': 'too small', 'bomb.png': 'decompression-bomb'}


def test_backgrounds_bad_input(tmp_path):
    src = tmp_path/'photos'
    expected = bad_files(src)
    for p in sorted(sample_dir('backgrounds').iterdir())[:3]: (src/p.name).write_bytes(p.read_bytes())
    r = depthseg('backgrounds', src, tmp_path/'ds')
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path/'ds/bg').iterdir()) == ['bg_000.jpg', 'bg_001.jpg', 'bg_002.jpg']
    rejects = {row['source']: row['reason'] for row in read_csv(tmp_path/'ds/bg_rejects.csv')}
    assert rejects.keys() == expected.keys()
    for name, words in expected.items(): assert words in rejects[name], (name, rejects[name])
    assert f'{len(expected)} rejected' in r.stdout and 'rejected tiny.png: too small' in r.stdout


def test_foregrounds_bad_input(tmp_path):
    src = tmp_path/'cutouts'
    expected = bad_files(src)
    Image.new('RGB', (80, 120), 'blue').save(src/'no_alpha.jpg')
    Image.new('RGBA', (80, 120), (0, 0, 0, 0)).save(src/'clear.png')
    expected |= {'no_alpha.jpg': 'no alpha channel', 'clear.png': 'fully transparent'}
    (src/'person.png').write_bytes((sample_dir('foregrounds')/'person_01.png').read_bytes())
    r = depthseg('foregrounds', src, tmp_path/'ds')
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path/'ds/fg').iterdir()] == ['fg_000.png']
    assert [p.name for p in (tmp_path/'ds/fg_mask').iterdir()] == ['fg_mask_000.png']
    rejects = {row['source']: row['reason'] for row in read_csv(tmp_path/'ds/fg_rejects.csv')}
    assert rejects.keys() == expected.keys()
    for name, words in expected.items(): assert words in rejects[name], (name, rejects[name])


@pytest.mark.parametrize('stage', ['backgrounds', 'foregrounds'])
def test_strict_writes_nothing(tmp_path, stage):
    src = tmp_path/'src'
    bad_files(src)
    r = depthseg(stage, src, tmp_path/'ds', '--strict')
    assert r.returncode == 1 and 'nothing written' in r.stderr and 'bomb.png' in r.stderr
    assert not (tmp_path/'ds').exists()


def test_same_inputs_same_bytes(tmp_path):
    def build(out):
        for stage, kind in (('backgrounds', 'backgrounds'), ('foregrounds', 'foregrounds')):
            assert depthseg(stage, sample_dir(kind), out).returncode == 0
        return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob('*')) if p.is_file()}
    first = build(tmp_path/'a')
    assert first == build(tmp_path/'b')
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path/'a').rglob('*.*') if p.parent.name in ('bg', 'fg', 'fg_mask')}
    assert build(tmp_path/'a') == first  # again in place: same bytes, and no image rewritten
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_demo(tmp_path):
    r = depthseg('demo', tmp_path/'demo', '--positions', '1')
    assert r.returncode == 0, r.stderr
    for folder in ('bg', 'fg', 'fg_mask', 'bgfg', 'bgfg_mask'): assert any((tmp_path/'demo'/folder).iterdir()), folder
    for table in ('bg_rejects.csv', 'fg_rejects.csv', 'bg_sources.csv', 'fg_sources.csv', 'manifest.csv'):
        assert (tmp_path/'demo'/table).exists(), table
    assert len(read_csv(tmp_path/'demo/manifest.csv')) == 10 * 10 * 2


def test_every_command_has_help():
    for cmd in ('backgrounds', 'foregrounds', 'composites', 'demo'):
        r = depthseg(cmd, '--help')
        assert r.returncode == 0 and 'usage: depthseg ' + cmd in r.stdout
