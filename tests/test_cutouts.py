"`depthseg cutouts`: on composites of the sample data an oracle segmenter gives back each pasted cut-out; a tiny random KerasHub DeepLabV3 runs the whole path."
import os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from depthseg.backgrounds import prepare_backgrounds
from depthseg.cli import main
from depthseg.composites import CompositesJob, Placement, compose, make_composites
from depthseg.core import read_csv
import depthseg.cutouts
from depthseg.cutouts import make_cutouts
from depthseg.foregrounds import prepare_foregrounds
from depthseg.samples import sample_dir
from depthseg.testing import tiny_deeplab_preset

from conftest import ROOT


@pytest.fixture(scope='module')
def composites(tmp_path_factory):
    "Photos (composites of the sample data, as PNG) with the true mask and place of the cut-out pasted in each."
    ds, photos = tmp_path_factory.mktemp('ds'), tmp_path_factory.mktemp('photos')
    prepare_backgrounds(sample_dir('backgrounds'), ds, progress=False); prepare_foregrounds(sample_dir('foregrounds'), ds, progress=False)
    make_composites(ds, CompositesJob(positions=1, flip=False), backgrounds=3, workers=1, progress=False)
    truth = {}
    for row in sorted((r for r in read_csv(ds/'manifest.csv')), key=lambda r: r['id']):
        photo, mask = Image.open(ds/row['image']).convert('RGB'), np.asarray(Image.open(ds/row['mask'])) > 127
        photo.save(photos/f"{row['id']}.png")
        truth[photo.tobytes()] = (f"{row['id']}.png", mask)
    bg, fg, fg_mask = (Image.open(ds/f) for f in ('bg/bg_001.jpg', 'fg/fg_003.png', 'fg_mask/fg_mask_003.png'))
    photo, mask = compose(bg, fg, fg_mask, Placement('bg_001', 'fg_003', False, 0, bg.width - fg.width // 2, 30, *fg.size))
    photo.save(photos/'half_out.png')  # half of the person outside the frame
    truth[photo.tobytes()] = ('half_out.png', np.asarray(mask) > 127)
    return photos, truth


def test_the_oracle_gives_back_every_pasted_cut_out(composites, tmp_path):
    photos, truth = composites
    report = make_cutouts(photos, tmp_path/'out', model=lambda photo: truth[photo.tobytes()][1].astype(float), min_height=100, progress=False)
    masks = dict(truth.values())
    near_frame = {n for n, m in masks.items() if m[:2].any() or m[-2:].any() or m[:, :2].any() or m[:, -2:].any()}
    assert {s for s, _ in report.refused} == near_frame >= {'half_out.png'} and all('cut by the frame at the right edge' in r for _, r in report.refused)
    assert len(report.kept) == len(masks) - len(near_frame) >= 25
    ious = []
    for row in read_csv(tmp_path/'out/cutouts_sources.csv'):
        x, y = int(row['left']), int(row['top'])
        alpha = np.asarray(Image.open(tmp_path/'out'/row['file']).getchannel('A')) > 127
        got = np.zeros_like(masks[row['source']]); got[y:y + alpha.shape[0], x:x + alpha.shape[1]] = alpha
        ious.append((got & masks[row['source']]).sum() / (got | masks[row['source']]).sum())
    assert min(ious) >= 0.99, min(ious)
    assert sorted(p.name for p in (tmp_path/'out/preview').iterdir()) == [f'sheet_{i:03d}.png' for i in range(-(-len(masks) // 6))]
    assert prepare_foregrounds(tmp_path/'out/images', tmp_path/'ds', progress=False).ids[-1] == f'fg_{len(report.kept) - 1:03d}'


def test_a_tiny_random_deeplab_runs_the_whole_path_from_the_command_line(composites, tmp_path, capsys):
    photos, truth = composites
    some = tmp_path/'photos'; some.mkdir()
    for p in sorted(photos.iterdir())[:3]: (some/p.name).write_bytes(p.read_bytes())
    (some/'notes.jpg').write_text('<html>not a photo</html>')
    preset = tiny_deeplab_preset(tmp_path/'deeplab')
    code = main(['cutouts', str(some), str(tmp_path/'out'), '--preset', str(preset)])
    refused = {r['source']: r['reason'] for r in read_csv(tmp_path/'out/cutouts_rejects.csv')}
    kept = read_csv(tmp_path/'out/cutouts_sources.csv')
    assert len(refused) + len(kept) == 4 and refused['notes.jpg'] == 'not an image (format not recognised)'
    assert code == (0 if kept else 1) and 'cutouts: ' in capsys.readouterr().out
    assert (tmp_path/'out/preview/sheet_000.png').is_file()

    import keras_hub  # the same model saved as one .keras file
    keras_hub.models.DeepLabV3ImageSegmenter.from_preset(str(preset)).save(tmp_path/'deeplab.keras')
    main(['cutouts', str(some), str(tmp_path/'out2'), '--weights', str(tmp_path/'deeplab.keras')])
    assert read_csv(tmp_path/'out2/cutouts_rejects.csv') == read_csv(tmp_path/'out/cutouts_rejects.csv')

    assert main(['cutouts', str(some), str(tmp_path/'out3'), '--preset', str(preset), '--person', '30']) == 2
    assert capsys.readouterr().err.strip().endswith('classes 0 to 20, no class 30')
    assert main(['cutouts', str(some), str(tmp_path/'out3')]) == 2  # no model


def test_bad_photos_or_model_fail_in_one_line_before_loading_or_writing_anything(composites, tmp_path, capsys, monkeypatch):
    photos, truth = composites
    with monkeypatch.context() as m:
        m.setattr(depthseg.cutouts, 'keras_segmenter', lambda *args: pytest.fail('the model was loaded'))
        (tmp_path/'empty').mkdir()
        for where, why in [(tmp_path/'nowhere', 'no such folder or zip file'), (tmp_path/'empty', 'no photos in it')]:
            assert main(['cutouts', str(where), str(tmp_path/'out'), '--preset', 'deeplab_v3_plus_resnet50_pascalvoc']) == 2
            assert capsys.readouterr().err == f'depthseg cutouts: error: {where}: {why}\n'
    for option, value, why in [('--preset', str(tmp_path/'nonexistent'), 'no such preset folder'), ('--weights', str(tmp_path/'no.keras'), 'no such .keras file'),
                               ('--preset', 'no_such_model', 'not a KerasHub DeepLabV3 preset (Unknown preset identifier)')]:
        assert main(['cutouts', str(photos), str(tmp_path/'out'), option, value]) == 2
        assert capsys.readouterr().err == f'depthseg cutouts: error: {value}: {why}\n'
    with pytest.raises(ValueError, match='the segmenter gave'): make_cutouts(photos, tmp_path/'out', model=lambda photo: np.zeros((2, 2)), progress=False)
    assert not (tmp_path/'out').exists()


def box_model(photo, pause: float = 0) -> np.ndarray:
    "A segmenter that sees a person in the middle of every photo, after `pause` seconds."
    time.sleep(pause); p = np.zeros(photo.size[::-1]); h, w = p.shape; p[h // 4:3 * h // 4, w // 3:2 * w // 3] = 1; return p


RUN = """import sys; from functools import partial; sys.path.insert(0, sys.argv[4]); from test_cutouts import box_model
from depthseg.cutouts import make_cutouts; make_cutouts(sys.argv[1], sys.argv[2], model=partial(box_model, pause=float(sys.argv[3])), min_height=50, progress=False)"""


def folder(path) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob('*')) if p.is_file()}


def test_killed_and_run_again_skips_what_was_recorded_and_gives_the_same_bytes(composites, tmp_path):
    photos, truth = composites
    env, run = dict(os.environ, PYTHONPATH=str(ROOT)), lambda out, pause: [sys.executable, '-c', RUN, photos, tmp_path/out, str(pause), ROOT/'tests']
    subprocess.run(run('whole', 0), env=env, check=True)
    proc = subprocess.Popen(run('cut', 0.15), env=env)
    while len(list((tmp_path/'cut/.cutouts').glob('*.json'))) < 2 and proc.poll() is None: time.sleep(0.05)
    proc.send_signal(signal.SIGKILL); proc.wait()
    done, sheets = len(list((tmp_path/'cut/.cutouts').glob('*.json'))), len(list((tmp_path/'whole/.cutouts').glob('*.json')))
    assert 2 <= done < sheets  # cut short
    seen = []
    report = make_cutouts(photos, tmp_path/'cut', model=lambda photo: seen.append(photo) or box_model(photo), min_height=50, progress=False)
    assert len(seen) == len(truth) - 6 * done and folder(tmp_path/'cut') == folder(tmp_path/'whole') and len(report.kept) >= 25


def test_adding_a_photo_renames_no_cut_out(composites, tmp_path):
    photos, truth = composites
    some = tmp_path/'photos'; some.mkdir()
    for p in sorted(photos.iterdir())[:8]: shutil.copy(p, some/p.name)
    before = dict(make_cutouts(some, tmp_path/'out', model=box_model, min_height=50, progress=False).kept)
    shutil.copy(sorted(photos.iterdir())[9], some/'0_first.png')  # sorts before all the others
    after = dict(make_cutouts(some, tmp_path/'out', model=box_model, min_height=50, progress=False).kept)
    assert after == before | {'0_first.png': after['0_first.png']} and len(before) == 8
    assert sorted(p.name for p in (tmp_path/'out/images').iterdir()) == sorted(Path(f).name for f in after.values())
