"Untrusted source folders: forged and cut images, duplicates, links out of the folder, nothing usable, sources under later stages."
import hashlib, io, struct, subprocess, sys, zlib
from pathlib import Path

import pytest
from PIL import Image

from depthseg.backgrounds import prepare_backgrounds
from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadArgument, BadInput, Busy, read_csv
from depthseg.foregrounds import prepare_foregrounds
from depthseg.layout import BG, STAGES, rejects_table, sources_table
from depthseg.samples import sample_dir

ROOMS = sorted(sample_dir('backgrounds').iterdir())


def depthseg(*args):
    return subprocess.run([sys.executable, '-m', 'depthseg.cli', *map(str, args)], capture_output=True, text=True)


def tree(folder: Path) -> dict[str, str]:
    "SHA-256 of every file under `folder`, by relative path."
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack('>I', len(body)) + kind + body + struct.pack('>I', zlib.crc32(kind + body))


def forged_png(w: int, h: int, idat: bytes) -> bytes:
    "An 8-bit RGB PNG of `w` x `h` pixels whose one IDAT chunk holds `idat`, valid checksums and all."
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', idat) + chunk(b'IEND', b''))


def rows(n: int, w: int = 300) -> bytes:
    "`n` unfiltered rows of `w` light-gray RGB pixels."
    return (b'\x00' + bytes([200]) * 3 * w) * n


def jpeg(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO(); im.convert('RGB').save(b, 'JPEG', **kw); return b.getvalue()


def copy_rooms(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for p in ROOMS[:n]: (folder/p.name).write_bytes(p.read_bytes())
    return folder


def hostile(folder: Path) -> dict[str, str]:
    "Forged and cut images in `folder`, and the words their reason must hold."
    folder.mkdir(parents=True, exist_ok=True)
    full = zlib.compress(rows(300))
    (folder/'short.png').write_bytes(forged_png(300, 300, zlib.compress(rows(10))))  # a finished stream of 10 rows of 300
    (folder/'cut.png').write_bytes(forged_png(300, 300, full[:len(full) // 2]))  # a stream cut in the middle
    (folder/'tiny.png').write_bytes(forged_png(6000, 6000, zlib.compress(rows(1, 6000))))
    room = jpeg(Image.open(ROOMS[0]))
    (folder/'cut.jpg').write_bytes(room[:len(room) * 3 // 4])
    return {'short.png': 'image data incomplete (9,010 of 270,300 bytes', 'cut.png': 'image data incomplete',
            'tiny.png': f"declares 6000x6000 pixels in {(folder/'tiny.png').stat().st_size} bytes: out of proportion",
            'cut.jpg': 'truncated'}


def test_pillow_alone_would_decode_them_to_black(tmp_path):
    "Why the checks are needed: Pillow decodes a PNG whose finished stream stops early, filling the rest with black."
    hostile(tmp_path)
    im = Image.open(tmp_path/'short.png'); im.load()
    assert im.size == (300, 300) and im.getpixel((0, 299)) == (0, 0, 0) and im.getpixel((0, 0)) == (200, 200, 200)
    assert (tmp_path/'tiny.png').stat().st_size < 100


@pytest.mark.parametrize('prepare', [prepare_backgrounds, prepare_foregrounds])
def test_forged_and_cut_images_are_refused(tmp_path, prepare):
    expected = hostile(tmp_path/'src')
    report = prepare(tmp_path/'src', tmp_path/'ds', progress=False)
    assert not report.ok and report.ids == []
    why = dict(report.rejects)
    assert why.keys() == expected.keys()
    for name, words in expected.items(): assert words in why[name], (name, why[name])
    assert sorted(tree(tmp_path/'ds')) == [rejects_table(report.stage)]  # no black image, no sources table


def test_forged_images_among_good_ones(tmp_path):
    expected = hostile(copy_rooms(tmp_path/'src', 2))
    report = prepare_backgrounds(tmp_path/'src', tmp_path/'ds', progress=False)
    assert report.ok and [r['source'] for r in read_csv(tmp_path/'ds'/sources_table(BG))] == [p.name for p in ROOMS[:2]]
    assert sorted((tmp_path/'ds/bg').iterdir()) == [tmp_path/'ds/bg/bg_000.jpg', tmp_path/'ds/bg/bg_001.jpg']
    assert {r['source'] for r in read_csv(tmp_path/'ds'/rejects_table(BG))} == expected.keys()


def test_exact_duplicates_are_kept_once(tmp_path):
    src = tmp_path/'src'; src.mkdir()
    for name in ('d.jpg', 'b.jpg', 'c/a.jpg', 'e.jpeg'):
        (src/name).parent.mkdir(exist_ok=True); (src/name).write_bytes(ROOMS[0].read_bytes())
    report = prepare_backgrounds(src, tmp_path/'ds', progress=False)
    table = read_csv(tmp_path/'ds'/sources_table(BG))
    assert [(r['id'], r['source']) for r in table] == [('bg_000', 'b.jpg')]  # the first by name
    assert list(table[0]) == ['id', 'source', 'sha256', 'phash'] and len(table[0]['phash']) == 16
    assert table[0]['sha256'] == hashlib.sha256(ROOMS[0].read_bytes()).hexdigest()
    assert report.rejects == [(n, 'duplicate of b.jpg (same SHA-256)') for n in ('c/a.jpg', 'd.jpg', 'e.jpeg')]


def near_copies(src: Path) -> Path:
    "Two rooms, and the first again resized to two thirds and saved as JPEG at quality 60."
    copy_rooms(src, 2)
    room = Image.open(ROOMS[0])
    (src/'z_copy.jpg').write_bytes(jpeg(room.resize((room.width * 2 // 3, room.height * 2 // 3)), quality=60))
    return src


def test_near_duplicates_are_reported_and_kept(tmp_path, capsys):
    report = prepare_backgrounds(near_copies(tmp_path/'src'), tmp_path/'ds')
    assert report.ids == ['bg_000', 'bg_001', 'bg_002'] and report.rejects == []
    assert [(s, o) for s, o, _ in report.near] == [('z_copy.jpg', ROOMS[0].name)]
    assert f'near-duplicate z_copy.jpg of {ROOMS[0].name}' in capsys.readouterr().out
    assert [r['source'] for r in read_csv(tmp_path/'ds'/sources_table(BG))][-1] == 'z_copy.jpg'


def test_near_duplicates_are_dropped_on_demand(tmp_path):
    r = depthseg('backgrounds', near_copies(tmp_path/'src'), tmp_path/'ds', '--drop-near-duplicates')
    assert r.returncode == 0, r.stderr
    assert [x['source'] for x in read_csv(tmp_path/'ds'/sources_table(BG))] == [p.name for p in ROOMS[:2]]
    [reject] = read_csv(tmp_path/'ds'/rejects_table(BG))
    assert reject['source'] == 'z_copy.jpg' and reject['reason'].startswith(f'near-duplicate of {ROOMS[0].name} (perceptual hashes ')
    r = depthseg('backgrounds', tmp_path/'src', tmp_path/'ds2', '--near-bits', 0, '--drop-near-duplicates')
    assert r.returncode == 0 and len(read_csv(tmp_path/'ds2'/sources_table(BG))) == 3  # not that near


def test_links_out_of_the_folder_are_not_followed(tmp_path):
    src = copy_rooms(tmp_path/'src', 1)
    (tmp_path/'private.jpg').write_bytes(ROOMS[1].read_bytes())  # an image the link would copy into the dataset
    (src/'escape.jpg').symlink_to(tmp_path/'private.jpg')
    (src/'sub').mkdir(); (src/'sub/up.jpg').symlink_to('../../private.jpg')
    (src/'same.jpg').symlink_to(ROOMS[0].name)  # within the folder: read, and a duplicate of its target
    report = prepare_backgrounds(src, tmp_path/'ds', progress=False)
    assert report.ids == ['bg_000']
    assert dict(report.rejects) == {'escape.jpg': 'symbolic link to a file outside the folder: not followed',
                                    'same.jpg': f'duplicate of {ROOMS[0].name} (same SHA-256)',
                                    'sub/up.jpg': 'symbolic link to a file outside the folder: not followed'}


def test_nothing_usable_is_a_failure(tmp_path):
    src = tmp_path/'src'; hostile(src); (src/'notes.txt').write_text('not a picture')
    report = prepare_backgrounds(src, tmp_path/'ds', progress=False)
    assert not report.ok and str(report).startswith(f'bg: no usable image in {src}')
    assert len(read_csv(tmp_path/'ds'/rejects_table(BG))) == 5 and not (tmp_path/'ds'/sources_table(BG)).exists()
    r = depthseg('backgrounds', src, tmp_path/'ds')
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert [l for l in r.stdout.splitlines() if 'no usable image' in l] == [f'bg: no usable image in {src}, nothing written to {tmp_path/"ds"}, '
                                                                            f'5 rejected (listed in {tmp_path/"ds"/rejects_table(BG)})']
    (tmp_path/'empty').mkdir()
    assert depthseg('foregrounds', tmp_path/'empty', tmp_path/'ds').returncode == 1


def test_a_failed_run_keeps_the_last_good_one(tmp_path):
    prepare_backgrounds(copy_rooms(tmp_path/'src', 2), tmp_path/'ds', progress=False)
    before = {k: v for k, v in tree(tmp_path/'ds').items() if k != rejects_table(BG)}
    hostile(tmp_path/'bad')
    assert not prepare_backgrounds(tmp_path/'bad', tmp_path/'ds', progress=False).ok
    assert {k: v for k, v in tree(tmp_path/'ds').items() if k != rejects_table(BG)} == before


@pytest.mark.parametrize('where', ['same', 'out inside', 'src in bg'])
def test_source_and_dataset_must_not_overlap(tmp_path, where):
    src = copy_rooms(tmp_path/('ds/bg/new' if where == 'src in bg' else 'photos'), 2)
    out = {'same': src, 'out inside': src/'ds', 'src in bg': tmp_path/'ds'}[where]
    before = tree(tmp_path)
    with pytest.raises(BadArgument, match='read its own outputs back'): prepare_backgrounds(src, out, progress=False)
    assert tree(tmp_path) == before
    r = depthseg('backgrounds', src, out)
    assert r.returncode == 2 and 'read its own outputs back' in r.stderr and tree(tmp_path) == before  # a mistake in the options


def test_sources_under_composites_are_not_replaced(dataset):
    make_composites(dataset, CompositesJob(positions=1), workers=1, progress=False)
    before = tree(dataset)
    assert prepare_backgrounds(sample_dir('backgrounds'), dataset, progress=False).ok  # the same again: nothing changes
    assert prepare_foregrounds(sample_dir('foregrounds'), dataset, progress=False).ok
    assert tree(dataset) == before
    fewer = copy_rooms(dataset.parent/'fewer', 9)
    for run in (lambda: prepare_backgrounds(fewer, dataset, progress=False), lambda: prepare_backgrounds(sample_dir('backgrounds'), dataset, size=128, progress=False)):
        with pytest.raises(BadInput, match=f'the composites there were made from its backgrounds.*depthseg clean {dataset} backgrounds'): run()
        assert tree(dataset) == before
    r = depthseg('foregrounds', sample_dir('foregrounds'), dataset, '--height', 100)
    [line] = [l for l in r.stderr.splitlines() if l.startswith('depthseg ')]  # not the progress bar
    assert r.returncode == 1 and line.startswith('depthseg foregrounds: error: ') and f'depthseg clean {dataset} foregrounds' in line
    assert tree(dataset) == before
    (dataset/STAGES['composites'].record).unlink()  # no later stage left: the backgrounds may change
    assert prepare_backgrounds(fewer, dataset, progress=False).ids == [f'bg_00{i}' for i in range(9)]


def test_a_second_writer_is_refused(tmp_path):
    src, out = copy_rooms(tmp_path/'src', 1), tmp_path/'ds'
    holder = subprocess.Popen([sys.executable, '-c', f"from depthseg.core import dataset_lock\nwith dataset_lock({str(out)!r}, 'composites'): print('held', flush=True); input()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == 'held\n'
        with pytest.raises(Busy, match='`depthseg composites`'): prepare_backgrounds(src, out, progress=False)
        assert not (out/'bg').exists()
    finally:
        holder.communicate('\n')
    assert prepare_backgrounds(src, out, wait=True, progress=False).ok
