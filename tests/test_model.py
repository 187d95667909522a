"The baseline model: training lowers the loss, a checkpoint scores fixed numbers that numpy agrees with, a stopped run resumes where it stopped."
import csv, json, shutil

import numpy as np
import pytest

from depthseg import model as M
from depthseg.cli import demo, main
from depthseg.depth import align_disparity
from depthseg.layout import BG, CARD_JSON, FG

SMALL = dict(epochs=3, batch_size=8, size=32, width=0.35, imagenet=False, lr=2e-3, steps_per_epoch=4, progress=False)


@pytest.fixture(scope='session')
def demo_dataset(tmp_path_factory):
    "The demo dataset with one position per pair: 200 composites, exact metric depth, 1 = 10 m."
    ds = tmp_path_factory.mktemp('model')/'dataset'
    demo(ds, positions=1, progress=False)
    return ds


@pytest.fixture(scope='session')
def trained(demo_dataset, tmp_path_factory):
    "A checkpoint folder after a short run, and the run's history."
    out = tmp_path_factory.mktemp('run')/'model'
    return out, M.train(demo_dataset, out, **SMALL)


def epochs_logged(out): return [int(r['epoch']) for r in csv.DictReader(open(out/M.LOG))]


def test_training_lowers_the_loss(trained):
    out, history = trained
    assert history['loss'][-1] < history['loss'][0] and history['depth_loss'][-1] < history['depth_loss'][0]
    assert epochs_logged(out) == [0, 1, 2] and M.latest_checkpoint(out).name == 'epoch_0003.keras'
    assert json.loads((out/M.RUN).read_text())['kind'] == 'metric' and any((out/M.TENSORBOARD).rglob('events.out.tfevents.*'))


def numpy_scores(model, ds, held_out, far_limit=None):
    "IoU, Dice, AbsRel, RMSE and delta < 1.25 computed here from the model's predictions, without depthseg's metric code."
    xs, ys = zip(*M.pairs(ds, 'test', held_out, size=32, shuffle=False))
    pm, pd = (np.concatenate([model.predict(x, verbose=0)[k] for x in xs]).astype(np.float64) for k in ('mask', 'depth'))
    tm, td = (np.concatenate([y[k] for y in ys]).astype(np.float64) for k in ('mask', 'depth'))
    if far_limit is None: pd = np.stack([align_disparity(p, t, t > 0) for p, t in zip(pd, td)])  # relative: aligned, no metres
    p, t = np.clip(pd, 1e-3, None)[td > 0] * (far_limit or 1), td[td > 0] * (far_limit or 1)
    inter, pred, true = np.sum((pm > 0) & (tm > 0.5)), np.sum(pm > 0), np.sum(tm > 0.5)
    return dict(composites=len(tm), iou=inter / (pred + true - inter), dice=2 * inter / (pred + true), abs_rel=np.mean(np.abs(p - t) / t),
                rmse=np.sqrt(np.mean((p - t) ** 2)), delta1=np.mean(np.maximum(p / t, t / p) < 1.25))


def test_evaluating_a_checkpoint_gives_fixed_numbers_that_numpy_agrees_with(demo_dataset, trained):
    out, _ = trained
    first, again = M.evaluate(demo_dataset, out, progress=False), M.evaluate(demo_dataset, M.latest_checkpoint(out), progress=False)
    assert first == again and list(first) == ['backgrounds', 'foregrounds']
    model = M.load_checkpoint(out)
    for name, by in M.HELD_OUT.items():
        assert first[name] == pytest.approx(numpy_scores(model, demo_dataset, by, 10.0), rel=1e-6, abs=1e-9), name
        assert first[name]['composites'] == 16


def test_the_tar_shards_of_a_dataset_score_as_its_folder(demo_dataset, trained, tmp_path):
    from depthseg.pack import pack
    pack(demo_dataset, tmp_path/'packed', progress=False)
    assert M.evaluate(tmp_path/'packed', trained[0], source='shards', progress=False) == M.evaluate(demo_dataset, trained[0], progress=False)


def test_perfect_and_doubled_predictions_score_what_they_must():
    t = np.random.default_rng(0).uniform(0.05, 1, (2, 8, 8, 1)); t[0, 0, 0] = 0  # truth 0: left out
    mask = (t > 0.5).astype(float); logits = 10 * (2 * mask - 1)
    metric = M.DepthLabels('metric', 10.0)
    assert M.scores(M.mask_counts(logits, mask), M.depth_sums(t, t, metric)) == dict(iou=1, dice=1, abs_rel=0, rmse=0, delta1=1)
    doubled = M.scores(M.mask_counts(-logits, mask), M.depth_sums(2 * t, t, metric))
    assert doubled['iou'] == 0 and doubled['delta1'] == 0 and doubled['abs_rel'] == pytest.approx(1)
    assert doubled['rmse'] == pytest.approx(np.sqrt(np.mean((10 * t[t > 0]) ** 2)))  # metres
    assert M.scores(np.ones(3), M.depth_sums(3 * t + 0.5, t, M.DepthLabels('relative')))['abs_rel'] == pytest.approx(0, abs=1e-9)


def test_relative_labels_are_aligned_and_reported_without_metres(demo_dataset, trained, tmp_path, capsys):
    "The card's kind, not the model, decides the metrics: the same checkpoint on maps declared relative is scored aligned."
    ds = relabelled(demo_dataset, tmp_path/'relative')
    results = M.evaluate(ds, trained[0])
    assert results['foregrounds'] == pytest.approx(numpy_scores(M.load_checkpoint(trained[0]), ds, FG), rel=1e-6, abs=1e-9)
    assert 'RMSE (inverse depth, aligned)' in capsys.readouterr().out


def relabelled(ds, dst):
    "A copy of dataset `ds` whose card declares its maps relative inverse depth."
    ds = shutil.copytree(ds, dst)
    card = json.loads((ds/CARD_JSON).read_text()); card['depth'] |= dict(kind='relative', far_limit=None)
    (ds/CARD_JSON).write_text(json.dumps(card))
    return ds


def test_relative_labels_train_with_the_scale_and_shift_invariant_loss_and_the_background(demo_dataset, tmp_path):
    ds, out = relabelled(demo_dataset, tmp_path/'relative'), tmp_path/'model'
    M.train(ds, out, **SMALL | dict(epochs=1, background=True))
    model = M.load_checkpoint(out)  # the relative loss comes back with the checkpoint
    assert model.loss['depth'] is M.relative_depth_loss and sorted(model.input) == ['bg', 'image']
    assert json.loads((out/M.RUN).read_text())['kind'] == 'relative'
    assert M.evaluate(ds, out, progress=False)['backgrounds']['composites'] == 16


def test_a_stopped_run_resumes_at_the_next_epoch_with_its_optimizer_state(demo_dataset, tmp_path, monkeypatch):
    import keras
    out, callbacks = tmp_path/'model', M._callbacks
    class Disconnect(keras.callbacks.Callback):  # the runtime goes away during the second epoch
        def on_train_batch_begin(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == SMALL['steps_per_epoch'] + 2: raise KeyboardInterrupt
    monkeypatch.setattr(M, '_callbacks', lambda model, out: callbacks(model, out) + [Disconnect()])
    with pytest.raises(KeyboardInterrupt): M.train(demo_dataset, out, **SMALL)
    monkeypatch.setattr(M, '_callbacks', callbacks)
    assert M.latest_checkpoint(out).name == 'epoch_0001.keras' and epochs_logged(out) == [0]
    stopped = M.load_checkpoint(out)
    assert int(stopped.optimizer.iterations) == SMALL['steps_per_epoch']
    history = M.train(demo_dataset, out, **SMALL)
    assert len(history['loss']) == 2 and epochs_logged(out) == [0, 1, 2]  # epochs 2 and 3 only
    assert int(M.load_checkpoint(out).optimizer.iterations) == 3 * SMALL['steps_per_epoch']
    assert not list(out.glob('.*'))  # no temporary checkpoint left


def test_a_resumed_run_starts_from_the_saved_weights(demo_dataset, trained, tmp_path):
    out = shutil.copytree(trained[0], tmp_path/'model')
    saved = M.load_checkpoint(out).get_weights()
    M.train(demo_dataset, out, **SMALL)  # all 3 epochs done: nothing to train
    assert epochs_logged(out) == [0, 1, 2]
    assert all(np.array_equal(a, b) for a, b in zip(saved, M.load_checkpoint(out).get_weights()))
    with pytest.raises(M.BadArgument, match='holds a run with size=32, not 64'): M.train(demo_dataset, out, **SMALL | dict(size=64))


def test_commands(demo_dataset, trained, tmp_path, capsys):
    assert main(['evaluate', str(demo_dataset), str(trained[0])]) == 0
    printed = capsys.readouterr().out
    assert '| backgrounds | 16 |' in printed and '| foregrounds | 16 |' in printed and 'RMSE (m)' in printed and 'metres' in printed
    assert main(['train', str(demo_dataset), '--out', str(tmp_path/'m'), '--size', '100', '--no-imagenet']) == 2
    assert capsys.readouterr().err == 'depthseg train: error: size must be a multiple of 32 (MobileNetV2 halves it five times), not 100\n'
    assert main(['evaluate', str(demo_dataset), str(tmp_path/'none')]) == 1
    assert 'no checkpoint there' in capsys.readouterr().err


def test_imagenet_weights_that_cannot_be_had_are_one_line(monkeypatch):
    import keras
    with pytest.raises(M.BadArgument, match=r'ImageNet weights exist for widths .*, not 0.6'): M.encoder(32, 0.6, imagenet=True)
    def offline(*args, **kw): raise Exception('URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -2] Name or service not known')
    monkeypatch.setattr(keras.applications, 'MobileNetV2', offline)  # what Keras raises without internet
    with pytest.raises(OSError, match=r'could not be downloaded \(URL fetch failure.*--no-imagenet'): M.encoder(96, 0.35, imagenet=True)
    with pytest.raises(Exception, match='URL fetch failure'): M.encoder(96, 0.35)  # random weights: not a download, its own error
