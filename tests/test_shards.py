"Composites straight into tar shards: the same bytes as files, WebDataset's reader, determinism, resuming after kill -9, hostile shards."
import io, json, os, shutil, subprocess, sys, tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import kill_when
from depthseg.composites import CompositesJob, make_composites
from depthseg.data import load
from depthseg.depth import DepthSpec, make_depth
from depthseg.layout import SHARDS, depth_files
from depthseg.store import ShardedStore, clean, iter_manifest, open_store

JOB, SHARDED = CompositesJob(positions=2), CompositesJob(positions=2, shards=True)


def shard_bytes(ds):
    return {p.name: p.read_bytes() for p in sorted((ds/SHARDS).iterdir())}


@pytest.fixture(scope='module')
def twins(tmp_path_factory, sources):
    "The same dataset made twice, with files and with shards: composites of 4 backgrounds and their exact depth."
    root, out = tmp_path_factory.mktemp('twins'), []
    for name, job in (('files', JOB), ('shards', SHARDED)):
        ds = Path(shutil.copytree(sources, root/name))
        make_composites(ds, job, backgrounds=4, workers=2, progress=False)
        make_depth(ds, DepthSpec('exact', full_precision=True), workers=2, progress=False)
        out.append(ds)
    return out


def test_shards_hold_the_bytes_files_would(twins):
    files, sharded = twins
    assert not (sharded/'bgfg').exists() and not (sharded/'bgfg_depth').exists()
    assert len(list((sharded/SHARDS).iterdir())) == 4
    for name in ('manifest.csv', 'depth_quality.csv'): assert (files/name).read_bytes() == (sharded/name).read_bytes(), name
    figures = [{k: {f: v for f, v in s.items() if f != 'record'} for k, s in json.loads((ds/'stage_stats.json').read_bytes()).items()} for ds in twins]
    assert figures[0] == figures[1]  # the records they were made from differ: composites.json says shards
    store, n = open_store(sharded), 0
    assert isinstance(store, ShardedStore)
    for r in iter_manifest(store):
        for f in (r['image'], r['mask'], *depth_files(r['bg'], r['id'])): assert store.read(f) == (files/f).read_bytes(), f; n += 1
    assert n == 4 * 10 * 4 * 4


def test_webdataset_reads_the_shards(twins):
    import webdataset as wds
    _, sharded = twins
    rows = {r['id']: r for r in iter_manifest(open_store(sharded))}
    samples = list(wds.WebDataset(str(sharded/SHARDS/'bg_001.tar'), shardshuffle=False))
    assert len(samples) == 40 and [s['__key__'] for s in samples] == [i for i in rows if i.startswith('bg_001_')]
    for s in samples:
        assert set(s) - {'__key__', '__url__', '__local_path__'} == {'jpg', 'json', 'mask.png', 'depth.png', 'depth16.png'}
        assert json.loads(s['json']) == {k: int(v) if v.isdigit() else v for k, v in rows[s['__key__']].items()}


def test_loader_reads_shards_in_place(twins):
    files, sharded = twins
    for split in ('train', 'all'):
        a, b = (list(load(ds, split, batch_size=None, shuffle=False, uint8=True, normalize=False, targets=('mask', 'depth')).as_numpy_iterator()) for ds in twins)
        assert len(a) == len(b) > 0
        for x, y in zip(a, b): assert all(np.array_equal(u, v) for u, v in zip(_leaves(x), _leaves(y), strict=True))


def _leaves(x) -> list:
    "The arrays of a nested example, in a fixed order."
    if isinstance(x, dict): return [v for k in sorted(x) for v in _leaves(x[k])]
    if isinstance(x, (tuple, list)): return [v for e in x for v in _leaves(e)]
    return [x]


def test_same_shards_for_any_workers_and_after_kill(sources, tmp_path):
    one = Path(shutil.copytree(sources, tmp_path/'one'))
    make_composites(one, CompositesJob(positions=10, shards=True), workers=1, progress=False)
    killed = Path(shutil.copytree(sources, tmp_path/'killed'))
    cmd = [sys.executable, '-m', 'depthseg.cli', 'composites', str(killed), '--positions', '10', '--shards', '--workers', '2']
    kill_when(cmd, lambda: (killed/SHARDS).exists() and len(list((killed/SHARDS).glob('*.tar'))) >= 2)
    assert not (killed/'manifest.csv').exists(), 'the run finished before it could be killed'
    done = {p: p.stat().st_ino for p in (killed/SHARDS).glob('*.tar')}
    report = make_composites(killed, CompositesJob(positions=10, shards=True), workers=2, wait=True, progress=False)
    assert report.written == report.total - 200 * len(done)  # 10 foregrounds x 20 per background
    assert all(p.stat().st_ino == ino for p, ino in done.items()), 'finished shards were made again'
    assert not list(killed.rglob('.*.tmp'))
    assert shard_bytes(killed) == shard_bytes(one) and (killed/'manifest.csv').read_bytes() == (one/'manifest.csv').read_bytes()


def test_depth_resumes_and_cleans_in_shards(twins, tmp_path):
    _, sharded = twins
    ds = Path(shutil.copytree(sharded, tmp_path/'ds'))
    assert clean(ds, 'depth', progress=False)[:2] == ['bgfg_depth', 'bgfg_depth16']  # the maps, out of the shards
    store = open_store(ds)
    assert not store.has_files('bgfg_depth') and all(n.endswith(('.jpg', '.json', '.mask.png')) for n in store.members('shards/bg_000.tar'))
    make_depth(ds, DepthSpec('exact', full_precision=True), limit=50, workers=1, progress=False)  # part of the second shard
    assert sum(n.endswith('.depth.png') for n in open_store(ds).members('shards/bg_001.tar')) == 10
    make_depth(ds, DepthSpec('exact', full_precision=True), workers=2, progress=False)
    assert shard_bytes(ds) == shard_bytes(sharded) and not list(ds.rglob('.*.tmp'))


def _hostile(ds, bg, members):
    "Shard of `bg` in `ds` made of `members`: (TarInfo, bytes) pairs."
    with open(ds/SHARDS/f'{bg}.tar', 'wb') as f, tarfile.open(fileobj=f, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for info, data in members: tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _member(name, data=b'x', **kw):
    info = tarfile.TarInfo(name); info.size = len(data) if data is not None else 0
    for k, v in kw.items(): setattr(info, k, v)
    return info, data


@pytest.mark.parametrize('members, why', [
    ([_member('../../evil.jpg')], "'../../evil.jpg' is no file of a composite"),
    ([_member('bg_000_fg_000_orig_00.jpg', None, type=tarfile.SYMTYPE, linkname='/etc/passwd')], 'is not a plain file'),
    ([_member('bg_003_fg_000_orig_00.jpg')], 'belongs to another background'),
    ([_member('bg_000_fg_000_orig_00.jpg'), _member('bg_000_fg_000_orig_00.jpg')], 'is there twice'),
    ([], None)])
def test_hostile_shards_are_refused_in_one_line(twins, tmp_path, members, why):
    _, sharded = twins
    ds = Path(shutil.copytree(sharded, tmp_path/'ds'))
    clean(ds, 'depth', progress=False)
    shard = ds/SHARDS/'bg_000.tar'
    if members: _hostile(ds, 'bg_000', members)
    else: shard.write_bytes(shard.read_bytes()[:5000])  # cut short
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(ds), '--backend', 'exact'], capture_output=True, text=True)
    assert r.returncode != 0 and str(shard) in r.stderr, r.stderr
    assert (why or 'runs past the end') in r.stderr and 'Traceback' not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path/'evil.jpg').exists() and not list(ds.rglob('.*.tmp'))


def test_beam_refuses_shards(twins, sources, tmp_path):
    from depthseg.beam import make_beam
    from depthseg.core import BadArgument
    _, sharded = twins
    with pytest.raises(BadArgument, match='Beam writes a file per composite'): make_beam(sharded, job=SHARDED, progress=False)
    fresh = Path(shutil.copytree(sources, tmp_path/'fresh'))
    with pytest.raises(BadArgument, match='not shards'): make_beam(fresh, job=SHARDED, progress=False)
    assert not (fresh/SHARDS).exists() and not (fresh/'bgfg').exists()


def test_clean_takes_a_killed_first_run_away(sources, tmp_path):
    ds = Path(shutil.copytree(sources, tmp_path/'ds'))
    make_composites(ds, SHARDED, backgrounds=1, progress=False)
    (ds/SHARDS/'bg_000.tar').rename(ds/SHARDS/'.bg_000.tar.x1y2.tmp')  # as a run killed while writing its first shard leaves it
    assert clean(ds, 'composites', progress=False)[0] == 'bgfg' and not (ds/SHARDS).exists()
    assert make_composites(ds, JOB, backgrounds=1, progress=False).written == 40  # a folder dataset again
