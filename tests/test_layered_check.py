"Layered depth against the backgrounds' model (issue 17): a model whose truth is known gives the figures it should; the model must be the one geometry.json names; the card shows floor placement and the check, refuses a hostile table and drops stale pictures."
import json, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadArgument, BadInput
from depthseg.depth import DepthSpec, ExactBackend, _compare_layered, _composite_mask, exact_backend, make_depth, read_layered_check
from depthseg.geometry import make_geometry
from depthseg.layout import CARD_PICTURES, GEOMETRY_RECORD, LAYERED_CHECK, model_depth_file
from depthseg.stats import write_card
from depthseg.store import FolderStore, iter_manifest


@pytest.fixture(scope='module')
def floor_dataset(sources, tmp_path_factory):
    "The sample sources with their exact geometry, one floor composite per pair and side, layered depth checked on 16."
    ds = Path(shutil.copytree(sources, tmp_path_factory.mktemp('check')/'dataset'))
    make_geometry(ds, DepthSpec('exact'), progress=False)
    make_composites(ds, CompositesJob(positions=1, placement='floor', occlusion=True), workers=2, progress=False)
    make_depth(ds, DepthSpec('layered'), progress=False)
    return ds


class Behind(ExactBackend):
    "The exact depth with every person `shift` metres farther than its feet: a model whose disagreement with layered depth is known."
    shift: float = 0.5

    def label(self, rows, images, store):
        out = super().label(rows, images, store)
        for i, r in enumerate(rows):
            if 'mask' in r: out[i, _composite_mask(store, r)] += self.shift / self.far_limit
        return out


def test_exact_model_agrees_everywhere(floor_dataset):
    rows = read_layered_check(FolderStore(floor_dataset))
    assert len(rows) == 16 and all(r['person_m'] == 0 and r['scene_m'] == 0 for r in rows)
    assert all((floor_dataset/model_depth_file(r['id'])).is_file() for r in rows)


def test_known_disagreement(floor_dataset, tmp_path):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds'))
    store = FolderStore(ds)
    base = exact_backend()
    model = Behind(base.name, None, None, base.weights_sha256, 'metric', far_limit=10.0)
    figures = _compare_layered(store, list(iter_manifest(store)), DepthSpec('layered', compare=8), model)
    assert len(figures) == 8 and [r['id'] for r in figures] == [r['id'] for r in read_layered_check(store)]
    for r in figures:  # half a metre behind its feet, within the stored scale's rounding; the room untouched
        assert abs(r['person_m'] - 0.5) < 0.03 and r['scene_m'] == 0, r


def test_the_check_needs_the_geometry_model(floor_dataset, tmp_path):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds'))
    record = json.loads((ds/GEOMETRY_RECORD).read_text())
    (ds/GEOMETRY_RECORD).write_text(json.dumps(record | dict(backend='densedepth')))
    with pytest.raises(BadArgument, match=r"checked against the backgrounds' model, densedepth .*give the --weights or --preset that `depthseg geometry` ran, or --compare 0"):
        make_depth(ds, DepthSpec('layered'), progress=False)
    make_depth(ds, DepthSpec('layered', compare=0), progress=False)  # no check asked for: no model needed
    (ds/GEOMETRY_RECORD).write_text(json.dumps(record | dict(weights_sha256='0' * 64)))
    with pytest.raises(BadArgument, match='not those that made the backgrounds'):
        make_depth(ds, DepthSpec('layered'), progress=False)


def test_cli_says_what_is_missing_in_one_line(floor_dataset, tmp_path):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds'))
    record = json.loads((ds/GEOMETRY_RECORD).read_text())
    (ds/GEOMETRY_RECORD).write_text(json.dumps(record | dict(backend='densedepth')))
    run = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(ds), '--backend', 'layered'], capture_output=True, text=True)
    lines = [l for l in run.stderr.splitlines() if 'depthseg' in l]
    assert run.returncode != 0 and len(lines) == 1 and '--compare 0' in lines[0], run.stderr


def test_card_shows_floor_placement_and_the_check(floor_dataset, tmp_path):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds'))
    card = write_card(ds, workers=1, progress=False)
    text = (ds/'DATASET.md').read_text()
    assert card['floor']['composites'] == 200 and card['layered_check']['n'] == 16 and card['layered_check']['model'] == 'exact'
    assert '## Floor placement' in text and '## Layered depth against the model' in text and 'Placed on the floor' in text
    for k in ('floor', 'layered'): assert (ds/CARD_PICTURES[k]).is_file() and f'![{k}]({CARD_PICTURES[k]})' in text
    (ds/LAYERED_CHECK).unlink()  # no check: its section and picture go
    write_card(ds, recompute=False, progress=False)
    assert not (ds/CARD_PICTURES['layered']).exists() and '## Layered depth against the model' not in (ds/'DATASET.md').read_text()


@pytest.mark.parametrize('row, why', [('{id},nan,0', 'not a finite'), ('{id},0', 'not a row'), ('../../etc/passwd,0,0', "not one of the manifest's"),
                                      ('{id},1,1\n{id},1,1', 'comes twice')])
def test_card_refuses_a_hostile_table(floor_dataset, tmp_path, row, why):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds'))
    first = next(iter_manifest(FolderStore(ds)))['id']
    (ds/LAYERED_CHECK).write_text('id,person_m,scene_m\n' + row.format(id=first) + '\n')
    with pytest.raises(BadInput, match=why) as e: write_card(ds, recompute=False, progress=False)
    assert LAYERED_CHECK in str(e.value)


def test_random_dataset_card_has_no_floor_pictures(dataset):
    make_composites(dataset, CompositesJob(positions=1), workers=1, progress=False)
    card = write_card(dataset, workers=1, progress=False)
    assert 'floor' not in card and not (dataset/CARD_PICTURES['floor']).exists() and not (dataset/CARD_PICTURES['layered']).exists()


def test_densedepth_checks_through_its_weights(sources, tmp_path):
    "DenseDepth as published (nyu.h5 layout, random weights here) named by geometry.json: the command line needs its --weights and runs it on the composites."
    from depthseg.depth import depth_backend
    from depthseg.testing import reference_nyu_h5
    ds, nyu = Path(shutil.copytree(sources, tmp_path/'ds')), tmp_path/'nyu.h5'
    reference_nyu_h5(nyu)
    make_geometry(ds, DepthSpec('exact'), progress=False)  # the scenes' floors; their depth recorded as DenseDepth's, as if it had made them
    record = json.loads((ds/GEOMETRY_RECORD).read_text())
    (ds/GEOMETRY_RECORD).write_text(json.dumps(record | dict(backend='densedepth', weights_sha256=depth_backend(DepthSpec(weights=nyu)).weights_sha256, resolution=[64, 64])))
    make_composites(ds, CompositesJob(positions=1, placement='floor'), backgrounds=3, foregrounds=3, progress=False)
    run = lambda *a: subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(ds), '--backend', 'layered', *a], capture_output=True, text=True)
    r = run()
    assert r.returncode == 2 and 'give the --weights or --preset' in r.stderr and not (ds/'depth.json').exists(), r.stderr  # refused before labelling
    r = run('--weights', str(nyu), '--compare', '4')
    assert r.returncode == 0 and 'layered depth against densedepth on 4 composites' in r.stdout, r.stderr
    rows = read_layered_check(FolderStore(ds))
    assert len(rows) == 4 and all(np.isfinite(r['person_m']) and r['scene_m'] >= 0 for r in rows)


@pytest.mark.parametrize('change, why', [(dict(backend=['exact']), "the backgrounds' model is"), (dict(backend='rendered'), "the backgrounds' model is"),
                                         (dict(resolution=[0, 0]), 'the resolution is'), (dict(resolution='64x' * 30000), 'the resolution is'),
                                         (dict(weights_sha256=None), 'no SHA-256')])
def test_a_corrupt_geometry_record_is_refused_before_labelling(floor_dataset, tmp_path, change, why):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds', ignore=shutil.ignore_patterns('bgfg_depth', 'depth.json', 'depth_quality.csv')))
    (ds/GEOMETRY_RECORD).write_text(json.dumps(json.loads((ds/GEOMETRY_RECORD).read_text()) | change))
    with pytest.raises(BadInput, match=why) as e: make_depth(ds, DepthSpec('layered'), progress=False)
    assert len(str(e.value)) < 300 and not (ds/'depth.json').exists()
    (ds/GEOMETRY_RECORD).write_text('{"a": ' + '[' * 100_000 + ']' * 100_000 + '}')
    with pytest.raises(BadInput, match='corrupt JSON'): make_depth(ds, DepthSpec('layered'), progress=False)


def test_small_datasets_and_other_formats(sources, tmp_path):
    "Fewer composites than --compare: each checked once; maps stored as JPEG; a single composite: the card is written."
    ds = Path(shutil.copytree(sources, tmp_path/'ds'))
    make_geometry(ds, DepthSpec('exact'), progress=False)
    make_composites(ds, CompositesJob(positions=1, flip=False, placement='floor'), backgrounds=1, foregrounds=3, progress=False)
    make_depth(ds, DepthSpec('layered', fmt='jpg'), progress=False)
    assert [r['id'] for r in read_layered_check(FolderStore(ds))] == [r['id'] for r in iter_manifest(FolderStore(ds))]  # 3 of 3, once each
    card = write_card(ds, workers=1, progress=False)
    assert card['layered_check']['n'] == 3 and (ds/CARD_PICTURES['layered']).is_file()
    one = Path(shutil.copytree(sources, tmp_path/'one'))
    make_geometry(one, DepthSpec('exact'), progress=False)
    make_composites(one, CompositesJob(positions=1, flip=False, placement='floor'), backgrounds=1, foregrounds=1, progress=False)
    make_depth(one, DepthSpec('layered'), progress=False)
    (one/LAYERED_CHECK).write_text((one/LAYERED_CHECK).read_text().splitlines()[0] + f"\n{next(iter_manifest(FolderStore(one)))['id']},,0.5\n")  # no person in sight
    assert write_card(one, workers=1, progress=False)['floor']['composites'] == 1 and (one/CARD_PICTURES['floor']).is_file()


@pytest.mark.parametrize('column, value, why', [('foot_x', '999999', 'outside its background'), ('foot_y', '-3', 'not a whole number'),
                                                ('foot_depth_m', 'nan', 'not a positive number'), ('height_m', '0', 'not a positive number')])
def test_hostile_floor_columns(floor_dataset, tmp_path, column, value, why):
    ds = Path(shutil.copytree(floor_dataset, tmp_path/'ds', ignore=shutil.ignore_patterns('bgfg_depth', 'depth.json', 'depth_quality.csv')))
    text = (ds/'manifest.csv').read_text().splitlines()
    header = text[0].split(','); row = text[1].split(','); row[header.index(column)] = value
    (ds/'manifest.csv').write_text('\n'.join([text[0], ','.join(row)] + text[2:]) + '\n')
    with pytest.raises(BadInput, match=why) as e: make_depth(ds, DepthSpec('layered', compare=0), progress=False)
    assert 'manifest.csv' in str(e.value)
