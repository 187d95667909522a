"Label quality: figures that are 0 for exact labels and large for a flawed labeller, stored with the maps, summed up in the card."
import io, json, subprocess, sys

import numpy as np
import pytest
from PIL import Image

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadInput, read_csv
from depthseg.depth import DepthSpec, FOOT_GAP, encode_maps, exact_backend, make_depth, read_quality, read_quality_table
from depthseg.layout import DEPTH_QUALITY, depth_files
from depthseg.stats import write_card
from depthseg.store import FolderStore, clean
from depthseg.testing import PerturbedBackend


@pytest.fixture
def composites(dataset):
    make_composites(dataset, CompositesJob(positions=1), backgrounds=3, progress=False)
    return dataset


def figures(ds) -> dict[str, np.ndarray]:
    rows = list(read_quality_table(FolderStore(ds)))
    return {k: np.array([r[k] for r in rows if r[k] is not None]) for k in ('flip', 'background', 'foot_gap')} | {
        'flags': [r['flag'] for r in rows if r['flag']], 'ids': [r['id'] for r in rows]}


def relabel(ds, model, **spec):
    clean(ds, 'depth', progress=False)
    make_depth(ds, DepthSpec('exact', **spec), model=model, progress=False)
    return figures(ds)


def test_exact_labels_score_zero_and_flawed_ones_do_not(composites):
    ds = composites
    exact = relabel(ds, None, flip_check=1)
    assert sorted(exact['ids']) == sorted(r['id'] for r in read_csv(ds/'manifest.csv'))
    assert all(len(exact[k]) == 60 for k in ('flip', 'background', 'foot_gap'))
    assert all(not exact[k].any() for k in ('flip', 'background', 'foot_gap')) and not exact['flags']
    noisy = relabel(ds, PerturbedBackend(noise=0.02), flip_check=1)  # 0.02 of the range: 5.1 levels
    assert 4 < np.median(noisy['flip']) < 8 and 4 < np.median(noisy['background']) < 8
    shifted = relabel(ds, PerturbedBackend(jitter=0.1), flip_check=1)
    assert np.median(shifted['background']) > 5 and shifted['flags']  # a scale and shift per image moves persons off the ground
    assert np.abs(shifted['foot_gap']).max() > FOOT_GAP


def test_flip_check_measures_one_in_n_and_flip_average_stores_the_mean(composites, tmp_path):
    ds = composites
    assert 1 <= len(relabel(ds, None)['flip']) < 20  # one in 8 of 60, by id
    assert len(relabel(ds, None, flip_check=0)['flip']) == 0
    model = PerturbedBackend(noise=0.05)
    relabel(ds, model, flip_average=True)
    record = json.loads((ds/'depth.json').read_text())
    assert record['flip_average'] and 'average' in record['labels']['averaged']
    r = read_csv(ds/'manifest.csv')[7]
    store, image = FolderStore(ds), [np.asarray(Image.open(ds/r['image']))]
    expected = (model.label([r], image, store) + model.label_mirrored([r], image, store)) / 2
    stored = np.asarray(Image.open(ds/depth_files(r['bg'], r['id'])[0]))
    assert np.array_equal(stored, np.rint(np.clip(expected[0, ..., 0], 0, 1) * 255).astype(np.uint8))


def test_figures_travel_with_each_map_and_resume_reads_them(composites):
    ds = composites
    relabel(ds, PerturbedBackend(noise=0.02), flip_check=1)
    table = (ds/DEPTH_QUALITY).read_bytes()
    (ds/DEPTH_QUALITY).unlink()
    make_depth(ds, DepthSpec('exact', flip_check=1), model=PerturbedBackend(noise=0.02), progress=False)  # every map there: read back
    assert (ds/DEPTH_QUALITY).read_bytes() == table
    r = read_csv(ds/'manifest.csv')[0]
    q = read_quality((ds/depth_files(r['bg'], r['id'])[0]).read_bytes())
    assert q == {k: v for k, v in next(x for x in read_quality_table(FolderStore(ds)) if x['id'] == r['id']).items() if k != 'id'}


def test_jpeg_maps_carry_their_figures_too():
    q = dict(flip=1.25, background=None, foot_gap=-3.5, flag='')
    data = encode_maps(np.full((8, 8, 1), 0.3, np.float32), 'jpg', quality=q)[0]
    assert Image.open(io.BytesIO(data)).format == 'JPEG' and read_quality(data) == q


def test_the_card_sums_up_the_quality_and_a_forged_table_is_refused(composites):
    ds = composites
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(ds), '--backend', 'exact', '--flip-check', '2'],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert 'label quality, in levels: flip median 0.00' in r.stdout
    card = write_card(ds, recompute=False, progress=False)
    q = card['depth_quality']
    assert q['composites'] == 60 and q['flags'] == dict(behind=0, floats=0) and q['background']['p95'] == 0
    assert sorted(q['per_background']) == ['bg_000', 'bg_001', 'bg_002']
    text = (ds/'DATASET.md').read_text()
    assert '## Label quality' in text and '1 level = 0.039 m' in text and (ds/'card'/'quality.png').is_file()
    rows = (ds/DEPTH_QUALITY).read_text().splitlines()
    (ds/DEPTH_QUALITY).write_text('\n'.join(rows[:3] + [rows[3].rsplit(',', 1)[0] + ',inside'] + rows[4:]) + '\n')
    with pytest.raises(BadInput, match=r'depth_quality.csv line 4'):
        write_card(ds, recompute=False, progress=False)
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'stats', str(ds)], capture_output=True, text=True)
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1 and last.startswith('depthseg stats: error: ') and 'depth_quality.csv line 4' in last


def test_a_bare_background_is_labelled_once_per_backend(composites):
    model, store = exact_backend(), FolderStore(composites)
    first = model.background(store, 'bg_001')
    assert model.background(store, 'bg_001') is first and list(model.backgrounds) == [store.path('bg/bg_001.jpg')]  # keyed by file: one backend, several datasets


def test_a_partial_run_leaves_the_table_and_averaging_does_not_halve_the_flip(composites):
    ds = composites
    checked = relabel(ds, PerturbedBackend(noise=0.02), flip_check=1)
    table = (ds/DEPTH_QUALITY).read_bytes()
    make_depth(ds, DepthSpec('exact', flip_check=1), model=PerturbedBackend(noise=0.02), limit=10, progress=False)
    assert (ds/DEPTH_QUALITY).read_bytes() == table  # --limit labels part of the dataset: the table still covers all of it
    averaged = relabel(ds, PerturbedBackend(noise=0.02), flip_average=True)
    assert len(averaged['flip']) == 60 and abs(np.median(averaged['flip']) / np.median(checked['flip']) - 1) < 0.1


def test_a_table_that_does_not_cover_the_manifest_is_refused(composites):
    ds = composites
    relabel(ds, None)
    rows = (ds/DEPTH_QUALITY).read_text().splitlines()
    (ds/DEPTH_QUALITY).write_text('\n'.join(rows[:-1]) + '\n')
    with pytest.raises(BadInput, match='has figures of 59 of the 60 composites'):
        write_card(ds, recompute=False, progress=False)
    from depthseg.data import flagged
    with pytest.raises(BadInput, match='has figures of 59'):
        flagged(ds)
    (ds/DEPTH_QUALITY).unlink()
    with pytest.raises(BadInput, match='not there; run `depthseg depth'):
        flagged(ds)
