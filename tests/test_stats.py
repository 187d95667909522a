"Statistics and card end to end: every set equals NumPy on all its images at once; the card matches the files."
import json, shutil, subprocess, sys

import numpy as np
from PIL import Image

from depthseg.composites import CompositesJob, make_composites
from depthseg.stats import dataset_stats, normalization


def test_every_set_equals_numpy(dataset):
    make_composites(dataset, CompositesJob(positions=2), backgrounds=5, progress=False)
    for src in (dataset/'bgfg_mask').iterdir():  # stand-in depth maps: one-channel PNGs where depth maps go
        shutil.copytree(src, dataset/'bgfg_depth'/src.name)
    stats = dataset_stats(dataset, workers=2, progress=False)
    sets = {'bg': 'bg/*.jpg', 'fg_mask': 'fg_mask/*.png', 'bgfg': 'bgfg/*/*.jpg', 'bgfg_mask': 'bgfg_mask/*/*.png',
            'bgfg_depth': 'bgfg_depth/*/*.png'}
    for name, pattern in sets.items():
        arrays = [np.asarray(Image.open(p)) for p in sorted(dataset.glob(pattern))]
        pixels = np.concatenate([a.reshape(-1, 1 if a.ndim == 2 else a.shape[2]) for a in arrays]) / 255
        np.testing.assert_allclose(stats[name].mean, pixels.mean(0), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(stats[name].std, pixels.std(0), atol=1e-6, err_msg=name)
        assert stats[name].images == len(arrays)
        assert stats[name].nbytes == sum(p.stat().st_size for p in dataset.glob(pattern))
    fg = [np.asarray(Image.open(p)) for p in sorted(dataset.glob('fg/*.png'))]
    opaque = np.concatenate([a[a[..., 3] == 255][:, :3] for a in fg]) / 255
    np.testing.assert_allclose(stats['fg'].mean, opaque.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats['fg'].std, opaque.std(0), atol=1e-6)


def test_stats_command_writes_the_card(dataset):
    make_composites(dataset, CompositesJob(positions=1), progress=False)
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'stats', str(dataset)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    card = json.loads((dataset/'dataset.json').read_text())
    assert card['sets']['bgfg']['images'] == len(list(dataset.glob('bgfg/*/*.jpg'))) == 10 * 10 * 2
    assert card['sets']['bgfg']['dimensions'] == {'224x224x3': 200}
    assert card['composites']['seed'] == 0 and card['versions']['depthseg']
    md = (dataset/'DATASET.md').read_text()
    assert '## Composites (bgfg)' in md and 'Number of images: 200' in md
    for pic in ('samples', 'histograms', 'placements'):
        with Image.open(dataset/f'card/{pic}.png') as im: assert im.format == 'PNG' and im.width > 100
    mean, std = normalization(dataset, 'bgfg')
    assert mean == card['sets']['bgfg']['mean'] and std == card['sets']['bgfg']['std']


def test_stages_count_what_the_files_hold(dataset, tmp_path):
    from depthseg.depth import DepthSpec, make_depth
    from depthseg.pixels import stage_stats
    from depthseg.stats import write_card
    from depthseg.testing import tiny_depth_anything
    make_composites(dataset, CompositesJob(positions=2), backgrounds=3, progress=False)
    assert set(stage_stats(dataset)) == {'bgfg_mask'}
    make_depth(dataset, DepthSpec('depth_anything', weights=tiny_depth_anything(tmp_path/'tiny.keras', size=112), batch_size=16), progress=False)
    recorded = stage_stats(dataset)
    assert set(recorded) == {'bgfg', 'bgfg_mask', 'bgfg_depth'}
    counted = dataset_stats(dataset, workers=2, progress=False)
    for name, st in recorded.items(): assert st.to_json() == counted[name].to_json(), name  # exactly, bytes and shapes too
    assert write_card(dataset, recompute=False, progress=False) == write_card(dataset, progress=False)


def test_card_pictures_read_at_a_glance(dataset, tmp_path):
    "Pictures as wide as DATASET.md shows them, labelled, the same bytes each run; sizes of distinct files; depth missing said."
    from depthseg.stats import _histograms, _sample_rows, _sample_sheet, write_card
    from depthseg.store import FolderStore
    make_composites(dataset, CompositesJob(positions=1), backgrounds=3, progress=False)
    card = write_card(dataset, workers=2, progress=False)
    fg, alpha = card['sets']['fg'], card['sets']['fg_alpha']
    assert fg['bytes'] == sum(p.stat().st_size for p in dataset.glob('fg/*.png')) and 'bytes' not in alpha and alpha['same_files_as'] == 'fg'
    md = (dataset/'DATASET.md').read_text()
    assert md.count('- Size on disk: same files as fg\n') == 1 and md.count('- Size on disk: ') == len(card['sets'])
    pngs = {p.name: p.read_bytes() for p in (dataset/'card').glob('*.png')}
    for name, png in pngs.items():
        with Image.open(dataset/'card'/name) as im: assert 400 <= im.width <= 800 and 'Software' not in im.info, name
    write_card(dataset, workers=2, progress=False)
    assert {p.name: p.read_bytes() for p in (dataset/'card').glob('*.png')} == pngs  # the same dataset, the same bytes

    stats = dataset_stats(dataset, workers=2, progress=False)
    axes = _histograms(stats, tmp_path/'h.png').axes
    assert len(axes) == len(stats) and [ax.get_title() for ax in axes][4] == 'Composites (bgfg)'
    assert all(ax.get_xlabel() == 'pixel value (0-255)' and ax.get_ylabel() == 'fraction of pixels' and ax.get_legend() for ax in axes)
    assert [t.get_text() for t in axes[0].get_legend().get_texts()] == ['red', 'green', 'blue']

    rows = _sample_rows(FolderStore(dataset), len(list(dataset.glob('bgfg/*/*.jpg'))))
    labels = lambda fig: [ax.get_ylabel().split('\n') for ax in fig.axes if ax.get_ylabel()]
    texts = lambda fig: [' '.join(t.get_text().split()) for ax in fig.axes for t in ax.texts]
    fig = _sample_sheet(dataset, rows, tmp_path/'s.png')
    assert [l[:2] for l in labels(fig)] == [[r['bg'], r['fg']] for r in rows] and len(rows) == 4
    assert all(l[3] == f"at x={r['x']}, y={r['y']}" for l, r in zip(labels(fig), rows))
    assert texts(fig) == ['no depth maps: run depthseg depth'] and fig.axes[-1].get_title() == 'depth map\n(bgfg_depth)'
    for src in (dataset/'bgfg_mask').iterdir():  # stand-in depth maps; one of them lost
        shutil.copytree(src, dataset/'bgfg_depth'/src.name)
    (dataset/'bgfg_depth'/rows[0]['bg']/f"{rows[0]['id']}.png").unlink()
    fig = _sample_sheet(dataset, rows, tmp_path/'s.png')
    assert texts(fig) == ['missing'] and len(fig.axes) == 6 * len(rows)
    assert fig.axes[5].get_title() == 'depth map\n(bgfg_depth)' and not fig.axes[5].images and fig.axes[11].images
