"The card of a dataset made straight into shards: the same figures and pictures as the same dataset in folders, and its untrusted members named."
import json, re, shutil, struct, subprocess, sys, zlib
from pathlib import Path

import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadInput
from depthseg.depth import DepthSpec, make_depth
from depthseg.geometry import make_geometry
from depthseg.layout import CARD, CARD_JSON, COMPOSITES, DEPTH, MASKS, SHARDS, background_shard, composite_id, depth_files
from depthseg.stats import _map_pixels, _sample_rows, _sample_sheet, dataset_stats, write_card
from depthseg.store import ShardedStore, iter_manifest, open_store, write_tar


def build(sources: Path, dest: Path, job: CompositesJob, spec: DepthSpec, geometry: bool = False) -> Path:
    "The sample backgrounds and foregrounds of `sources` copied to `dest`, composited by `job` and labelled by `spec`."
    ds = Path(shutil.copytree(sources, dest))
    if geometry: make_geometry(ds, DepthSpec('exact'), progress=False)
    make_composites(ds, job, workers=2, progress=False)
    make_depth(ds, spec, progress=False)
    return ds


def twins(sources, tmp_path, spec: DepthSpec, geometry=False, **job):
    "The same dataset made into folders and into shards."
    return [build(sources, tmp_path/name, CompositesJob(positions=2, shards=shards, **job), spec, geometry) for name, shards in (('folders', False), ('shards', True))]


def figures(stats): return {n: s.to_json() for n, s in stats.items()}


def test_a_sharded_dataset_gets_the_card_of_its_folder_twin(sources, tmp_path):
    folders, sharded = twins(sources, tmp_path, DepthSpec('exact', fmt='jpg', full_precision=True))  # `KEY.depth.jpg` and `KEY.depth16.png` (no set) too
    assert isinstance(open_store(sharded), ShardedStore) and not any((sharded/f).exists() for f in (COMPOSITES, MASKS, DEPTH))
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'stats', str(sharded), '--workers', '2'], capture_output=True, text=True)  # as a user makes it
    assert r.returncode == 0, r.stderr
    cards = [write_card(folders, workers=2, progress=False), json.loads((sharded/CARD_JSON).read_text())]
    assert cards[1]['sets'] == cards[0]['sets']  # count, dimensions, bytes, mean and std of every set
    assert write_card(sharded, recompute=False, progress=False)['sets'] == cards[0]['sets']  # from what the stages counted as they wrote the shards
    assert {n: s['images'] for n, s in cards[1]['sets'].items() if n.startswith('bgfg')} == {'bgfg': 400, 'bgfg_mask': 400, 'bgfg_depth': 400}
    store = open_store(sharded)
    assert {n.split('.', 1)[1] for s in store.list(SHARDS, '*.tar') for n in store.members(s)} == {'jpg', 'json', 'mask.png', 'depth.jpg', 'depth16.png'}
    jpegs = [size for s in store.list(SHARDS, '*.tar') for n, (_, size) in store.members(s).items() if n.count('.') == 1 and n.endswith('.jpg')]  # `KEY.jpg`
    assert len(jpegs) == 400 and cards[1]['sets']['bgfg']['bytes'] == sum(jpegs)  # a member's size: what it holds
    assert figures(dataset_stats(sharded, workers=1, progress=False)) == figures(dataset_stats(folders, workers=2, progress=False))
    text = [(ds/'DATASET.md').read_text().split('\n', 1) for ds in (folders, sharded)]
    assert text[1][0] == '# Dataset card: shards' and text[1][1] == text[0][1] and '## Label quality' in text[1][1]  # all but the name
    for p in sorted((folders/CARD).iterdir()): assert (sharded/CARD/p.name).read_bytes() == p.read_bytes(), p.name  # the same pictures, byte for byte

    rows = _sample_rows(store, 400)
    fig = _sample_sheet(sharded, rows, tmp_path/'samples.png')
    assert len(fig.axes) == 6 * len(rows) and all(ax.images for ax in fig.axes) and not [t for ax in fig.axes for t in ax.texts]  # every file shown: none 'missing'


def test_floor_placement_and_layered_depth_in_shards(sources, tmp_path):
    folders, sharded = twins(sources, tmp_path, DepthSpec('layered'), geometry=True, placement='floor')
    cards = [write_card(ds, workers=2, progress=False) for ds in (folders, sharded)]
    assert cards[1]['sets'] == cards[0]['sets'] and cards[1]['sets']['bgfg_depth']['images'] == 400
    assert cards[1]['floor'] == cards[0]['floor'] and cards[1]['layered_check'] == cards[0]['layered_check']
    for name in ('floor', 'layered', 'samples'): assert (sharded/CARD/f'{name}.png').read_bytes() == (folders/CARD/f'{name}.png').read_bytes(), name

    r = next(iter_manifest(open_store(sharded))); bg, shape = r['bg'], (224, 224)
    maps = [_map_pixels(open_store(ds), depth_files(bg, r['id'])[0], shape) for ds in (folders, sharded)]  # the layered picture's checked reads
    assert maps[0].shape == shape and (maps[0] == maps[1]).all()
    with pytest.raises(BadInput, match=re.escape(f"{bg}.tar member {r['id']}.depth.png: a L image of 224x224, not an 8-bit map of 1x1")): _map_pixels(open_store(sharded), depth_files(bg, r['id'])[0], (1, 1))
    gone = composite_id(bg, 'fg_009', True, 99)
    with pytest.raises(BadInput, match=re.escape(f'{bg}.tar member {gone}.depth.png: missing')): _map_pixels(open_store(sharded), depth_files(bg, gone)[0], shape)
    link = folders/depth_files(bg, r['id'])[0]; link.unlink(); link.symlink_to(folders/r['mask'])
    with pytest.raises(BadInput, match=re.escape(f'{link}: missing, or not a file')): _map_pixels(open_store(folders), depth_files(bg, r['id'])[0], shape)


def bomb() -> bytes:
    "A PNG header declaring 20,000 x 20,000 pixels, with no pixels behind it."
    chunk = lambda kind, data: struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 20000, 20000, 8, 0, 0, 0, 0)) + chunk(b'IEND', b'')


def spoiled(sources, dest, member: str, data: bytes) -> Path:
    "A small dataset made into shards whose `member` of the shard of `bg_001` holds `data` instead."
    ds = Path(shutil.copytree(sources, dest))
    make_composites(ds, CompositesJob(positions=2, shards=True), backgrounds=2, foregrounds=3, workers=1, progress=False)
    store, shard = open_store(ds), background_shard('bg_001')
    with open(ds/shard, 'rb') as f: members = [(n, data if n == member else (f.seek(o), f.read(size))[1]) for n, (o, size) in store.members(shard).items()]
    assert member in dict(members)
    with open(ds/shard, 'wb') as f: write_tar(f, members)
    return ds


@pytest.mark.parametrize('member, data, why', [('bg_001_fg_002_orig_01.jpg', b'not a JPEG', 'cannot identify image file'),
                                                ('bg_001_fg_002_orig_01.mask.png', bomb(), 'decompression bomb')], ids=['corrupt', 'bomb'])
def test_a_bad_member_is_named_with_its_shard(sources, tmp_path, member, data, why):
    ds = spoiled(sources, tmp_path/'ds', member, data)
    for workers in (1, 2):
        with pytest.raises(BadInput, match=re.escape(f'{SHARDS}/bg_001.tar member {member}: not an image (') + f'.*{why}'):
            dataset_stats(ds, workers=workers, progress=False)


def test_the_stats_command_names_a_bad_member_in_one_line(sources, tmp_path):
    ds = spoiled(sources, tmp_path/'ds', 'bg_001_fg_000_flip_00.mask.png', b'\x89PNG\r\n\x1a\n')
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'stats', str(ds), '--workers', '1'], capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.startswith('depthseg ')]
    assert r.returncode == 1 and 'Traceback' not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith(f'depthseg stats: error: {ds/SHARDS}/bg_001.tar member bg_001_fg_000_flip_00.mask.png: not an image'), lines[0]
    assert not (ds/CARD_JSON).exists()
