"Loading for training: exact epochs, leak-free splits, folder and TFRecord agree, and a Keras model trains on it."
import numpy as np
import pytest

from depthseg.cli import demo
from depthseg.core import read_csv
from depthseg.data import SPLITS, load, split_sources, to_tfrecord
from depthseg.pack import pack


@pytest.fixture(scope='module')
def demo_ds(tmp_path_factory):
    ds = tmp_path_factory.mktemp('data')/'dataset'
    demo(ds, positions=1, progress=False)  # with the sample scenes' exact depth maps
    return ds


@pytest.mark.parametrize('by', ['bg', 'fg'])
def test_every_example_once_and_no_leak(demo_ds, by):
    rows = read_csv(demo_ds/'manifest.csv')
    seen = {s: [x['id'].numpy().decode() for x in load(demo_ds, s, by=by, batch_size=None, depth=False)] for s in SPLITS}
    everything = [i for s in SPLITS for i in seen[s]]
    assert sorted(everything) == sorted(r['id'] for r in rows)  # each example exactly once per epoch
    col = {r['id']: r[by] for r in rows}
    owners = {s: {col[i] for i in seen[s]} for s in SPLITS}
    assert not owners['train'] & owners['test'] and not owners['train'] & owners['val'] and not owners['val'] & owners['test']
    assert all(seen[s] for s in SPLITS)


def test_splits_stable_and_seeded(demo_ds):
    assert split_sources(demo_ds, seed=0) == split_sources(demo_ds, seed=0)
    assert split_sources(demo_ds, seed=0) != split_sources(demo_ds, seed=1)


def test_folder_shards_and_tfrecord_agree(demo_ds, tmp_path):
    to_tfrecord(demo_ds, tmp_path/'tfr', examples_per_shard=50, progress=False)
    pack(demo_ds, tmp_path/'packed', shard_size=2_000_000, progress=False)
    def by_id(source, path):
        return {x['id'].numpy(): x for x in load(path, 'test', batch_size=None, source=source)}
    a = by_id('folder', demo_ds)
    for other in (by_id('tfrecord', tmp_path/'tfr'), by_id('shards', tmp_path/'packed')):
        assert a.keys() == other.keys() and a
        for k in a:
            for f in ('bg', 'image', 'mask', 'depth'): np.testing.assert_array_equal(a[k][f].numpy(), other[k][f].numpy())


def test_plain_tensorflow_reads_the_shards(demo_ds, tmp_path):
    import tensorflow as tf
    paths = to_tfrecord(demo_ds, tmp_path/'tfr', examples_per_shard=1000, progress=False)
    spec = {k: tf.io.FixedLenFeature([], tf.string) for k in ('id', 'image', 'mask', 'depth')}
    ex = next(iter(tf.data.TFRecordDataset([str(p) for p in paths]).map(lambda x: tf.io.parse_single_example(x, spec))))
    assert tf.io.decode_jpeg(ex['image']).shape == (224, 224, 3) and tf.io.decode_png(ex['depth']).shape == (224, 224, 1)


def test_keras_fit_one_epoch(demo_ds):
    import keras
    bg, image = keras.Input((64, 64, 3), name='bg'), keras.Input((64, 64, 3), name='image')
    x = keras.layers.Conv2D(8, 3, padding='same', activation='relu')(keras.layers.Concatenate()([bg, image]))
    model = keras.Model([bg, image], {'mask': keras.layers.Conv2D(1, 1, activation='sigmoid', name='mask')(x),
                                       'depth': keras.layers.Conv2D(1, 1, name='depth')(x)})
    model.compile('adam', loss={'mask': 'binary_crossentropy', 'depth': 'mae'})
    train = load(demo_ds, 'train', batch_size=16, size=(64, 64), inputs=('bg', 'image'), targets=('mask', 'depth'))
    history = model.fit(train, epochs=1, verbose=0, shuffle=False)  # the dataset shuffles itself
    assert np.isfinite(history.history['loss'][0])


def test_on_the_fly_equals_stored(demo_ds, tmp_path):
    import shutil
    lean = shutil.copytree(demo_ds, tmp_path/'lean', ignore=shutil.ignore_patterns('bgfg', 'bgfg_mask'))
    stored = {x['id'].numpy(): x for x in load(demo_ds, 'val', batch_size=None, normalize=False)}
    fly = {x['id'].numpy(): x for x in load(lean, 'val', batch_size=None, normalize=False, source='on_the_fly')}
    assert fly.keys() == stored.keys() and fly
    for k in stored:
        np.testing.assert_array_equal(fly[k]['mask'].numpy(), stored[k]['mask'].numpy())
        np.testing.assert_array_equal(fly[k]['depth'].numpy(), stored[k]['depth'].numpy())
        assert np.abs(fly[k]['image'].numpy() - stored[k]['image'].numpy()).mean() < 2 / 255  # JPEG error only
