"A dataset with its composites in background shards (`composites --shards`) through pack, push and pull, and read in place by the loader."
import io, json, shutil, subprocess, sys, tarfile
from pathlib import Path

import numpy as np
import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadInput, file_sha256, read_csv
from depthseg.data import _shard_members, load
from depthseg.depth import DepthSpec, make_depth
from depthseg.layout import SHARD_INDEX, background_shard, depth_files, shard_member
from depthseg.pack import INDEX_FORMAT, pack, pull, push
from depthseg.store import ShardedStore, open_store, write_tar
from test_pack import RangeHandler, files, server  # noqa: F401 (a fixture: the HTTP server with ranges)


def build(sources: Path, out: Path, shards: bool) -> Path:
    "The sample sources with 3 backgrounds' composites (in shards or not) and their exact depth."
    ds = Path(shutil.copytree(sources, out))
    make_composites(ds, CompositesJob(positions=2, shards=shards), backgrounds=3, workers=1, progress=False)
    make_depth(ds, DepthSpec('exact'), workers=1, progress=False)
    return ds


@pytest.fixture(scope='module')
def datasets(sources, tmp_path_factory):
    "The same dataset twice: its composites in background shards, and in folders."
    root = tmp_path_factory.mktemp('sharded')
    return build(sources, root/'sharded', True), build(sources, root/'plain', False)


@pytest.fixture(scope='module')
def packed(datasets, tmp_path_factory):
    "The sharded dataset packed into pack shards of about 1 MB (each background shard is about 0.8 MB)."
    out = tmp_path_factory.mktemp('packed')/'shards'
    index = pack(datasets[0], out, shard_size=1_000_000, progress=False)
    return out, index


def test_the_dataset_is_sharded_and_its_files_those_of_the_folders(datasets):
    sharded, plain = datasets
    assert sorted(p.name for p in (sharded/'shards').iterdir()) == [Path(background_shard(f'bg_00{i}')).name for i in range(3)]
    assert not (sharded/'bgfg').exists() and (sharded/'manifest.csv').read_bytes() == (plain/'manifest.csv').read_bytes()
    store, rows = open_store(sharded), read_csv(plain/'manifest.csv')
    assert isinstance(store, ShardedStore) and len(rows) == 3 * 10 * 4
    for r in rows:
        for rel in (r['image'], r['mask'], depth_files(r['bg'], r['id'])[0]): assert store.read(rel) == (plain/rel).read_bytes(), rel


def test_pack_holds_the_background_shards_whole(datasets, packed):
    sharded, _ = datasets
    out, index = packed
    listed = {f: s['name'] for s in index['shards'] for f in s['files']}
    for i in range(3):
        shard = background_shard(f'bg_00{i}')
        with tarfile.open(out/listed[shard]) as t: assert t.extractfile(shard).read() == (sharded/shard).read_bytes()


def pulled_ok(source, dest: Path, sharded: Path):
    "Pull `source` into `dest`: every file byte-identical to `sharded`'s, and its shards read in place."
    report = pull(source, dest, workers=2, progress=False)
    assert report.ok, report
    assert files(dest) == files(sharded)
    store, plain = open_store(dest), open_store(sharded)
    assert isinstance(store, ShardedStore)
    for r in read_csv(dest/'manifest.csv')[::7]:
        for rel in (r['image'], r['mask'], depth_files(r['bg'], r['id'])[0]): assert store.read(rel) == plain.read(rel)


def test_round_trip_through_a_folder(datasets, packed, tmp_path):
    out, _ = packed
    push(out, tmp_path/'drive', progress=False)
    pulled_ok(tmp_path/'drive', tmp_path/'local', datasets[0])


def test_round_trip_over_http(datasets, packed, server, tmp_path):
    out, index = packed
    www, url = server
    push(out, www, progress=False)
    pulled_ok(url, tmp_path/'local', datasets[0])
    assert set(RangeHandler.served) == {SHARD_INDEX, *(s['name'] for s in index['shards'])}


def by_id(path, source: str) -> dict:
    return {x['id'].numpy(): x for x in load(path, 'all', batch_size=None, shuffle=False, normalize=False, uint8=True, source=source)}


def test_shards_source_reads_the_same_examples_as_the_folder(datasets, packed):
    _, plain = datasets
    out, _ = packed
    shards, folder = by_id(out, 'shards'), by_id(plain, 'folder')
    assert shards.keys() == folder.keys() and len(folder) == 120
    for k in folder:
        assert shards[k].keys() == folder[k].keys() == {'id', 'bg_id', 'fg_id', 'bg', 'image', 'mask', 'depth'}
        for f in folder[k]: np.testing.assert_array_equal(shards[k][f].numpy(), folder[k][f].numpy())


def test_shard_members_are_the_files_of_the_background_shards(datasets, packed):
    sharded, _ = datasets
    out, _ = packed
    members, store = _shard_members(out), open_store(sharded)
    inner = {rel: at for rel, at in members.items() if shard_member(rel)}
    assert len(inner) == 120 * 3  # composite, mask, depth map; the manifest rows (`ID.json`) have no path
    for rel, (path, offset, size) in inner.items():
        with open(path, 'rb') as f: f.seek(offset); assert f.read(size) == store.read(rel), rel


def tar_of(*members) -> bytes:
    f = io.BytesIO(); write_tar(f, members); return f.getvalue()


MINE = 'bg_000_fg_000_orig_00'


@pytest.mark.parametrize('inner, why', [
    (tar_of((f'{MINE}.jpg', b'j'), ('../x.jpg', b'pwned')), "member '../x.jpg' is no file of a composite"),
    (tar_of((f'{MINE}.jpg', b'j'), ('bg_001_fg_000_orig_00.jpg', b'j')), "member 'bg_001_fg_000_orig_00.jpg' belongs to another background"),
    (tar_of((f'{MINE}.jpg', b'j'), (f'{MINE}.jpg', b'k')), f"member '{MINE}.jpg' is there twice"),
    (tar_of((f'{MINE}.jpg', b'j' * 5000))[:2048], f"member '{MINE}.jpg' runs past the end of the shard"),
], ids=['climbs-out', 'other-background', 'twice', 'truncated'])
def test_a_hostile_background_shard_is_refused_naming_it(tmp_path, inner, why):
    src = tmp_path/'src'; src.mkdir()
    good, shard = tar_of(('bg_001_fg_000_orig_00.jpg', b'j')), background_shard('bg_000')
    (src/'set-00000.tar').write_bytes(tar_of(('bg/bg_000.jpg', b'b' * 10), (background_shard('bg_001'), good)))
    (src/'set-00001.tar').write_bytes(tar_of((shard, inner)))
    entries = [dict(name='set-00000.tar', files=['bg/bg_000.jpg', background_shard('bg_001')], sizes=[10, len(good)]),
               dict(name='set-00001.tar', files=[shard], sizes=[len(inner)])]
    for s in entries: s.update(bytes=(src/s['name']).stat().st_size, sha256=file_sha256(src/s['name']))
    (src/SHARD_INDEX).write_text(json.dumps(dict(format=INDEX_FORMAT, dataset='x', files=3, made_from={}, shards=entries)))  # an index that vouches for it

    report = pull(src, tmp_path/'dest', workers=1, progress=False)
    assert report.damaged == {'set-00001.tar': f"refused: in 'shards/bg_000.tar', {why}"} and report.extracted == ['set-00000.tar']
    assert not (tmp_path/'dest'/shard).exists() and not (tmp_path/'x.jpg').exists() and not list(tmp_path.rglob('x.jpg'))
    with pytest.raises(BadInput) as e: load(src, source='shards')  # read in place: the same refusal, before anything is read
    assert str(e.value) == f"{src/'set-00001.tar'}: refused: in 'shards/bg_000.tar', {why}"

    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'pull', str(src), str(tmp_path/'again')], capture_output=True, text=True)
    assert r.returncode != 0 and f"  damaged set-00001.tar: refused: in 'shards/bg_000.tar', {why}" in r.stdout.splitlines()
