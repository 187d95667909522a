"Composites end to end: counts, exact masks, determinism across workers, and resuming after kill -9."
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from conftest import kill_when
from depthseg.composites import CompositesJob, Placement, compose, make_composites
from depthseg.core import read_csv


def tree(root):
    "Every file under `root` (but the parameters record) by relative path, with its bytes."
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_counts_with_defaults(dataset):
    report = make_composites(dataset, backgrounds=3, foregrounds=2, progress=False)
    rows = read_csv(dataset/'manifest.csv')
    assert report.total == len(rows) == 3 * 2 * 2 * 20
    assert len(list((dataset/'bgfg').rglob('*.jpg'))) == len(list((dataset/'bgfg_mask').rglob('*.png'))) == len(rows)
    assert len({r['id'] for r in rows}) == len(rows)
    assert sum(r['flip'] == '1' for r in rows) == len(rows) // 2
    assert max(len(list(d.iterdir())) for d in (dataset/'bgfg').iterdir()) == 2 * 2 * 20  # one folder per background


def test_masks_and_composites_match_the_manifest(dataset):
    make_composites(dataset, CompositesJob(positions=3), backgrounds=4, progress=False)
    for r in read_csv(dataset/'manifest.csv'):
        x, y, w, h = (int(r[k]) for k in ('x', 'y', 'width', 'height'))
        fg = Image.open(dataset/f"fg/{r['fg']}.png")
        if r['flip'] == '1': fg = ImageOps.mirror(fg)
        want = np.zeros((224, 224), np.uint8)
        want[y:y + h, x:x + w] = np.where(np.asarray(fg)[..., 3] > 127, 255, 0)
        assert np.array_equal(np.asarray(Image.open(dataset/r['mask'])), want), r['id']
        bg = Image.open(dataset/f"bg/{r['bg']}.jpg").convert('RGB')
        p = Placement(r['bg'], r['fg'], r['flip'] == '1', int(r['index']), x, y, w, h)
        exact = np.asarray(compose(bg, fg if r['flip'] == '0' else ImageOps.mirror(fg), Image.fromarray(want[y:y+h, x:x+w]), p)[0])
        stored = np.asarray(Image.open(dataset/r['image']), np.int16)
        assert np.abs(stored - exact).mean() < 2, r['id']  # the stored JPEG is the blend, within JPEG error
        outside = np.ones((224, 224), bool); outside[y:y + h, x:x + w] = False
        assert np.array_equal(np.asarray(compose(bg, fg, Image.fromarray(want[y:y+h, x:x+w]),
                                                 Placement(p.bg, p.fg, False, 0, x, y, w, h))[0])[outside], np.asarray(bg)[outside])


def test_workers_do_not_change_bytes(sources, tmp_path):
    import shutil
    outs = []
    for workers in (1, 2):
        ds = Path(shutil.copytree(sources, tmp_path/f'w{workers}'))
        make_composites(ds, CompositesJob(positions=2), workers=workers, progress=False)
        outs.append(tree(ds))
    assert outs[0] == outs[1]


def test_kill_and_resume_is_byte_identical(sources, tmp_path):
    import shutil
    clean = Path(shutil.copytree(sources, tmp_path/'clean'))
    make_composites(clean, CompositesJob(positions=10), workers=1, progress=False)
    ds = Path(shutil.copytree(sources, tmp_path/'killed'))
    cmd = [sys.executable, '-m', 'depthseg.cli', 'composites', str(ds), '--positions', '10', '--workers', '2']
    kill_when(cmd, lambda: (ds/'bgfg').exists() and sum(1 for _ in (ds/'bgfg').rglob('*.jpg')) > 400)
    assert not (ds/'manifest.csv').exists(), 'the run finished before it could be killed'
    done = {p: p.stat().st_ino for p in (ds/'bgfg').rglob('*.jpg')}
    for p in done: Image.open(p).load()  # a file under its final name is never truncated
    report = make_composites(ds, CompositesJob(positions=10), workers=2, progress=False)
    assert report.written < report.total
    assert all(p.stat().st_ino == ino for p, ino in done.items()), 'finished composites were made again'
    assert not list(ds.rglob('.*.tmp'))
    assert tree(ds) == tree(clean)
