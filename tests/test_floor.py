"Floor placement and layered depth (issue 17): random placement unchanged byte for byte; on the exact sample scenes every foot on the floor, every person f H / Z pixels high, layered depth equal to the truth; same bytes for any worker count, resumed after kill -9; refusals."
import hashlib, json, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from conftest import kill_when
from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadArgument
from depthseg.depth import DepthSpec, make_depth, quantize, scene_depth
from depthseg.floor import focal_px, sample_floor, scaled
from depthseg.geometry import make_geometry
from depthseg.layout import FG_HEIGHTS, STAGES, depth_files, fg_files, geometry_files
from depthseg.store import FolderStore, iter_manifest

FLOOR = CompositesJob(positions=2, placement='floor', occlusion=True)


def tree_sum(root, skip=()) -> str:
    "One SHA-256 over every file under `root` (hidden ones and `skip` left out): relative path and SHA-256 of each, in order."
    h = hashlib.sha256()
    for p in sorted(root.rglob('*')):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and not p.name.startswith('.') and rel not in skip: h.update(f'{rel} {hashlib.sha256(p.read_bytes()).hexdigest()}\n'.encode())
    return h.hexdigest()


def test_random_placement_is_unchanged(dataset):
    "Recorded from main (commit 01eb346) before floor placement existed: the same job gives the same manifest and record; with that Pillow, the same tree."
    make_composites(dataset, CompositesJob(positions=3, seed=7), workers=1, progress=False)
    sums = {f: hashlib.sha256((dataset/f).read_bytes()).hexdigest() for f in ('manifest.csv', 'composites.json')}
    assert sums == {'manifest.csv': '8292834e02a0fe6af05feb719aee39a84eae5800a70d6393fed8b19d184a8df0',
                    'composites.json': '71f75aa4fa7eb28d13a448d7f16250bbe476bc51701e1c7772c2208f36636527'}
    if PIL.__version__ == '13.0.0':  # JPEG and PNG bytes depend on the codecs Pillow ships with
        assert tree_sum(dataset) == '00fbd28faebce0e3c34c283c1ef113969bc3751ce37109fa00077478a66a72da'


@pytest.fixture(scope='module')
def floor_dataset(sources, tmp_path_factory):
    "The sample sources with their exact geometry, floor composites with occlusion, and layered depth."
    ds = Path(shutil.copytree(sources, tmp_path_factory.mktemp('floor')/'dataset'))
    make_geometry(ds, DepthSpec('exact'), progress=False)
    make_composites(ds, FLOOR, workers=2, progress=False)
    make_depth(ds, DepthSpec('layered'), progress=False)
    return ds


def test_feet_on_the_floor_people_f_h_over_z_high(floor_dataset):
    ds, store = floor_dataset, FolderStore(floor_dataset)
    rows, focal = list(iter_manifest(store)), json.loads((ds/'geometry.json').read_text())['focal_px']
    assert len(rows) == 10 * 10 * 4 and len({(r['bg'], r['foot_x'], r['foot_y']) for r in rows}) > 300
    assert abs(focal['bg_000'] - focal_px(60, 224)) < .1 and abs(focal['bg_001'] - focal_px(46.8, 224)) < .5  # room_01: portrait, centre-cropped
    for r in rows:
        f = focal[r['bg']]
        fx, fy = int(r['foot_x']), int(r['foot_y'])
        floor = scene_depth(store, r['bg'], (224, 224), of=sample_floor) > .5
        assert floor[fy, fx], r['id']  # the foot point on the true floor of the scene
        assert float(r['foot_depth_m']) == round(float(scene_depth(store, r['bg'], (224, 224))[fy, fx]), 3)
        person = np.asarray(scaled(Image.open(ds/fg_files(r['fg'])[1]), (int(r['width']), int(r['height'])), r['flip'] == '1'))
        ys, xs = np.nonzero(person)
        assert abs(ys.max() - ys.min() + 1 - f * float(r['height_m']) / float(r['foot_depth_m'])) <= 1, r['id']
        assert (int(r['x']) + int(round(xs[ys == ys.max()].mean())), int(r['y']) + ys.max()) == (fx, fy)  # the mask's foot point
        shown = np.asarray(Image.open(ds/r['mask'])) > 0
        assert not shown[:, :int(r['x'])].any() and shown.sum() <= (person > 0).sum()  # the visible part of the person, in place


def test_layered_depth_is_the_true_depth(floor_dataset):
    ds, store = floor_dataset, FolderStore(floor_dataset)
    hidden = 0
    for r in iter_manifest(store):
        truth = scene_depth(store, r['bg'], (224, 224)).copy()
        mask = np.asarray(Image.open(ds/r['mask'])) > 0
        truth[mask] = truth[int(r['foot_y']), int(r['foot_x'])]
        stored = np.asarray(Image.open(ds/depth_files(r['bg'], r['id'])[0]), np.int16)
        assert np.abs(stored - quantize(truth / 10).astype(np.int16)).max() <= 1, r['id']
        hidden += mask.sum() < np.asarray(scaled(Image.open(ds/fg_files(r['fg'])[1]), (int(r['width']), int(r['height'])))).astype(bool).sum()
    assert hidden > 0  # some people stand behind furniture: occlusion was exercised
    rec = json.loads((ds/'depth.json').read_text())
    assert rec['backend'] == 'layered' and rec['labels']['kind'] == 'metric z-depth' and 'geometry.json' in rec['labels']['labeller']['model']


def test_floor_bytes_do_not_depend_on_workers_and_resume_after_kill(floor_dataset, sources, tmp_path):
    one = Path(shutil.copytree(sources, tmp_path/'one'))
    make_geometry(one, DepthSpec('exact'), progress=False)
    make_composites(one, FLOOR, workers=1, progress=False)
    made_by_depth = [p.relative_to(floor_dataset).as_posix() for out in STAGES['depth'].outputs for p in [floor_dataset/out, *(floor_dataset/out).rglob('*')]]
    skip = ('stage_stats.json', *made_by_depth)  # the depth stage ran in floor_dataset only
    assert tree_sum(one, skip) == tree_sum(floor_dataset, skip)
    killed = Path(shutil.copytree(sources, tmp_path/'killed'))
    make_geometry(killed, DepthSpec('exact'), progress=False)
    cmd = [sys.executable, '-m', 'depthseg.cli', 'composites', str(killed), '--positions', '2', '--placement', 'floor', '--occlusion', '--workers', '2']
    kill_when(cmd, lambda: (killed/'bgfg').exists() and sum(1 for _ in (killed/'bgfg').rglob('*.jpg')) > 100)
    assert not (killed/'manifest.csv').exists(), 'the run finished before it could be killed'
    assert make_composites(killed, FLOOR, workers=2, wait=True, progress=False).written < 400  # wait: the killed workers may hold the lock a moment longer
    assert not list(killed.rglob('.*.tmp'))
    assert tree_sum(killed) == tree_sum(one)


def test_fitted_floors_of_the_sample_scenes(dataset):
    make_geometry(dataset, DepthSpec('exact'), floor='fit', progress=False)
    store = FolderStore(dataset)
    from depthseg.geometry import exact_floor
    for bg in (f'bg_{i:03d}' for i in range(10)):
        fitted = np.asarray(Image.open(dataset/geometry_files(bg)[1])) > 0
        true = exact_floor(store, bg, (224, 224))
        assert (fitted & true).sum() / (fitted | true).sum() > .9, bg


def test_refusals(dataset):
    floor = CompositesJob(positions=1, placement='floor')
    with pytest.raises(BadArgument, match='run `depthseg geometry'): make_composites(dataset, floor, progress=False)
    make_geometry(dataset, DepthSpec('exact'), progress=False)
    make_composites(dataset, floor, backgrounds=2, progress=False)
    heights = (dataset/FG_HEIGHTS).read_text()
    (dataset/FG_HEIGHTS).write_text(heights.replace('1.7,', '1.2,', 1))  # a user corrects a height: the composites are stale
    with pytest.raises(ValueError, match=r'other parameters \(geometry changed\)'): make_composites(dataset, floor, backgrounds=2, progress=False)
    (dataset/FG_HEIGHTS).write_text(heights.replace('1.7,', '17,', 1))
    with pytest.raises(ValueError, match='fg_heights.csv line'): make_composites(dataset, floor, backgrounds=2, progress=False)
    (dataset/FG_HEIGHTS).write_text(heights)
    with pytest.raises(ValueError, match='placement must be one of'): CompositesJob(placement='wall')


def test_layered_needs_floor_composites(dataset):
    make_composites(dataset, CompositesJob(positions=1), backgrounds=1, foregrounds=1, progress=False)
    with pytest.raises(BadArgument, match='--placement floor'): make_depth(dataset, DepthSpec('layered'), progress=False)


def test_command_line(dataset):
    run = lambda *a: subprocess.run([sys.executable, '-m', 'depthseg.cli', *a], capture_output=True, text=True)
    r = run('geometry', str(dataset), '--backend', 'exact', '--floor', 'exact')
    assert r.returncode == 0 and 'geometry: depth and floor of 10 backgrounds' in r.stdout, r.stderr
    r = run('composites', str(dataset), '--positions', '1', '--placement', 'floor', '--fov', '55', '--backgrounds', '2')
    assert r.returncode == 0, r.stderr
    assert json.loads((dataset/'composites.json').read_text())['fov'] == 55
    r = run('geometry', str(dataset), '--floor', 'wall')
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and "floor must be one of ('auto', 'exact', 'fit')" in r.stderr


def test_beam_makes_the_same_floor_composites_and_layered_depth(sources, tmp_path):
    pytest.importorskip('apache_beam')
    from depthseg.beam import make_beam
    single, beam = (Path(shutil.copytree(sources, tmp_path/name)) for name in ('single', 'beam'))
    for ds in (single, beam): make_geometry(ds, DepthSpec('exact'), progress=False)
    make_composites(single, FLOOR, backgrounds=2, foregrounds=3, progress=False)
    make_depth(single, DepthSpec('layered'), progress=False)
    make_beam(beam, ['--runner=DirectRunner', '--direct_num_workers=2', '--direct_running_mode=multi_threading'], FLOOR,
              DepthSpec('layered'), backgrounds=2, foregrounds=3, progress=False)
    skip = ('stage_stats.json', 'dataset.json', 'DATASET.md', *(f'card/{p.name}' for p in (beam/'card').glob('*')))
    assert tree_sum(beam, skip) == tree_sum(single, skip)


def test_loader_makes_floor_examples_on_the_fly(floor_dataset, tmp_path):
    from depthseg.data import load
    lean = Path(shutil.copytree(floor_dataset, tmp_path/'lean', ignore=shutil.ignore_patterns('bgfg', 'bgfg_mask', 'bgfg_depth')))
    by_id = lambda path, src: {ex['id'].numpy().decode(): ex for ex in load(path, 'val', source=src, batch_size=None, normalize=False, shuffle=False)}
    fly, stored = by_id(lean, 'on_the_fly'), by_id(floor_dataset, 'folder')
    assert fly.keys() == stored.keys() and len(fly) > 10
    for k, ex in stored.items():
        assert np.array_equal(fly[k]['mask'].numpy(), ex['mask'].numpy()), k
        assert np.allclose(fly[k]['depth'].numpy(), ex['depth'].numpy(), atol=1e-6), k  # the same 8-bit levels
        assert np.abs(fly[k]['image'].numpy() - ex['image'].numpy()).mean() < 2 / 255, k  # the stored one is a JPEG


def test_geometry_from_a_model(dataset, tmp_path):
    "DenseDepth (its nyu.h5 layout, random weights) run once per background: metric depth in millimetres, recorded."
    from depthseg.testing import reference_nyu_h5
    nyu = tmp_path/'nyu.h5'; reference_nyu_h5(nyu)
    record = make_geometry(dataset, DepthSpec(weights=nyu, resolution='64x64'), progress=False)
    assert (record['backend'], record['floor'], record['labels']['kind']) == ('densedepth', 'fit', 'metric z-depth')
    depth = np.asarray(Image.open(dataset/geometry_files('bg_004')[0]))
    assert depth.shape == (224, 224) and depth.dtype == np.uint16 and 100 <= depth.min() <= depth.max() <= 10_000  # DenseDepth: 0.1 to 10 m
    with pytest.raises(BadArgument, match='layered backend is made from the geometry'): make_geometry(dataset, DepthSpec('layered'), progress=False)


def test_endless_from_the_sources_and_a_seed(floor_dataset):
    from depthseg.data import endless
    from depthseg.geometry import floor_example
    from depthseg.composites import CompositesPlan, read_sources
    store = FolderStore(floor_dataset)
    got = list(endless(floor_dataset, FLOOR, split='all', batch_size=None).take(3))
    want = list(CompositesPlan(FLOOR, read_sources(store, 'bg'), read_sources(store, 'fg'), store).rows(0, 3))
    assert [x['id'].numpy().decode() for x in got] == [r['id'] for r in want]
    for x, r in zip(got, want):  # epoch 0 is the floor dataset made with the same job: the same masks and depth
        image, mask, depth = floor_example(store, r, occlusion=True)
        assert np.array_equal(x['mask'].numpy()[..., 0] * 255, np.asarray(Image.open(floor_dataset/r['mask'])))
        assert np.allclose(x['depth'].numpy()[..., 0], depth / 255) and np.allclose(x['image'].numpy(), image / 255)
    with pytest.raises(BadArgument, match='placed on the floor'): endless(floor_dataset, CompositesJob())


def test_layered_labels_a_bare_background(floor_dataset):
    from depthseg.depth import layered_backend
    store = FolderStore(floor_dataset)
    got = layered_backend().label([dict(bg='bg_003')], [None], store)[0, ..., 0]
    assert np.array_equal(got, np.minimum(scene_depth(store, 'bg_003', (224, 224)) / np.float32(10), 1))
