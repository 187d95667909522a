"""Depth stage throughput in one run (not a test): the stage's own capacity, then a real model alone against the whole stage.

1. Capacity: `make_depth` with `null_backend` (a model that does no work) end to end (read, decode, label, quality
   figures, encode, write, statistics), beside the in-run limits of its parts on the same composites, each on all cores.
2. A model: the model alone on in-memory batches, `make_depth` end to end, their ratio. `--model tiny` (default) is the
   tiny random-weight Depth Anything (CPU-sized); `--model densedepth` is DenseDepth with random weights saved as nyu.h5
   was (same network, same arithmetic as the real weights); `--model depth_anything_small` is Depth Anything V2 Small's
   architecture at 518x518 with random weights: the figures to measure on a GPU, e.g.
   `python benchmarks/depth.py --model densedepth --resolution 480x640`, again with `--xla` and with `--full-precision`.
The machine's load average is printed with the figures: on a shared machine they are low and noisy; compare ratios.

    python benchmarks/depth.py [--shards] [--images 2048] [--model tiny|densedepth] [--model-images 128] [--resolution 224x224] [--batch-size N] [--xla] [--full-precision]
"""
import argparse, os, shutil, tempfile, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from composites import make_sources  # benchmarks/composites.py: procedural sources, prepared by the first two stages

from depthseg.composites import CompositesJob, make_composites
from depthseg.depth import (DepthSpec, _read_batch, composite_quality, default_batch_size, depth_backend,
                            encode_maps, gpu_summary, make_depth, null_backend)
from depthseg.layout import DEPTH, DEPTH_QUALITY, DEPTH_RECORD, SHARDS, background_shard, depth_files
from depthseg.store import ShardedStore, iter_manifest, open_store
from depthseg.testing import reference_nyu_h5, tiny_depth_anything

SOURCES = 4  # backgrounds and foregrounds each: 16 pairs, 32 composites per position


def load(): return 'load average {:.1f}, {:.1f}, {:.1f} (1, 5, 15 min) on {} cores'.format(*os.getloadavg(), os.cpu_count())


def clear(ds):
    "Remove what the depth stage wrote in `ds`."
    open_store(ds).remove(DEPTH)  # the folder, or the maps out of the shards
    for f in (DEPTH_RECORD, DEPTH_QUALITY): (ds/f).unlink(missing_ok=True)


def rate(fn, items, n):
    "Maps per second of `fn` over `items` (covering `n` maps) on all cores."
    with ThreadPoolExecutor(os.cpu_count()) as pool:
        t = time.perf_counter(); list(pool.map(fn, items)); return n / (time.perf_counter() - t)


def capacity(root, ds, n):
    "The null backend end to end on `n` composites, and the in-run limits of its parts."
    store, model, spec = open_store(ds), null_backend(), DepthSpec()
    rows = list(iter_manifest(store))[:n]
    size = spec.batch_size or default_batch_size(model.resolution)
    batches = [rows[i:i + size] for i in range(0, len(rows), size)]
    make_depth(ds, spec, model, limit=size, progress=False); clear(ds)  # warm up: trace, the backgrounds' maps
    t = time.perf_counter(); make_depth(ds, spec, model, limit=n, progress=False); stage = n / (time.perf_counter() - t)
    read = rate(lambda b: _read_batch(b, spec, store, set()), batches, n)
    read_batches = [_read_batch(b, spec, store, set()) for b in batches]
    label = rate(lambda b: model.label(b.rows, b.images, store), read_batches, n)
    maps = [(d, b.masks[i], model.background(store, b.rows[i]['bg'])) for b in read_batches for i, d in enumerate(model.label(b.rows, b.images, store))]
    quality = rate(lambda m: composite_quality(m[0][..., 0], m[2], m[1]), maps, n)
    figures = composite_quality(maps[0][0][..., 0], maps[0][2], maps[0][1])  # one composite's: the text chunk's size
    encode = rate(lambda m: encode_maps(m[0], 'png', False, figures), maps, n)
    encoded = [encode_maps(m[0], 'png', False, figures)[0] for m in maps]
    (root/'scratch').mkdir(exist_ok=True); scratch = open_store(root/'scratch')
    if isinstance(store, ShardedStore):  # each shard written again with its maps, as the stage does
        shards = {}
        for r, e in zip(rows, encoded): shards.setdefault(r['bg'], []).append((depth_files(r['bg'], r['id'])[0], e))
        sharded = ShardedStore(root/'scratch'); sharded.makedirs(SHARDS)
        for bg in shards: shutil.copy(ds/background_shard(bg), sharded.path(background_shard(bg)))
        def write_shard(maps):
            for f, e in maps: sharded.write(f, e)
            sharded.flush()
        write = rate(write_shard, list(shards.values()), n)
    else: write = rate(lambda i: scratch.write(f'{i}.png', encoded[i]), range(n), n)
    parts = dict(read_decode=read, label=label, quality=quality, encode=encode, write=write)
    return stage, parts, float(np.mean([len(e) for e in encoded]))


def depth_anything_v2_small(path):
    "Depth Anything V2 Small's network (DINOv2-S encoder, as the published config) with random weights, saved as a .keras file."
    import keras, keras_hub
    keras.utils.set_random_seed(0)
    enc = keras_hub.models.DINOV2Backbone(patch_size=14, num_layers=12, hidden_dim=384, num_heads=6, intermediate_dim=1536,
                                           image_shape=(518, 518, 3), position_embedding_shape=(518, 518))
    backbone = keras_hub.models.DepthAnythingBackbone(image_encoder=enc, reassemble_factors=[4, 2, 1, 0.5], neck_hidden_dims=[48, 96, 192, 384],
        fusion_hidden_dim=64, head_hidden_dim=32, head_in_index=-1, feature_keys=['stage3', 'stage6', 'stage9', 'stage12'])
    bias = next(w for w in backbone.weights if w.path.endswith('head/conv3/bias'))
    bias.assign(np.ones(bias.shape))  # random outputs below 0 would give 0 everywhere after the head's ReLU
    keras_hub.models.DepthAnythingDepthEstimator(backbone=backbone, depth_estimation_type='relative').save(path)
    return path


def real_model(root, ds, args):
    "Model alone and `make_depth` end to end, as images/s."
    import tensorflow as tf
    if args.model == 'densedepth':
        reference_nyu_h5(root/'nyu.h5')
        spec = DepthSpec(weights=root/'nyu.h5', resolution=args.resolution, batch_size=args.batch_size, flip_check=0, xla=args.xla, full_precision=args.full_precision)
        backend = depth_backend(spec)  # the model `make_depth` builds from `spec`, in mixed precision on a GPU
    else:
        weights = tiny_depth_anything(root/'tiny.keras') if args.model == 'tiny' else depth_anything_v2_small(root/'small.keras')
        spec = DepthSpec('depth_anything', weights=weights, batch_size=args.batch_size, flip_check=0, xla=args.xla, full_precision=args.full_precision)
        backend = depth_backend(spec)
    size = spec.batch_size or default_batch_size(backend.resolution)
    n = max(1, args.model_images // size)
    clear(ds)
    make_depth(ds, spec, backend, limit=size, progress=False)  # warm up: calibrate, trace, compile, the backgrounds' maps
    run = backend.compiled()
    batch = tf.constant(np.random.default_rng(0).integers(0, 256, (size, 224, 224, 3), dtype=np.uint8))
    run(batch).numpy()
    t = time.perf_counter()
    for _ in range(n): run(batch).numpy()
    model_rate = n * size / (time.perf_counter() - t)
    t = time.perf_counter()
    make_depth(ds, spec, backend, limit=(n + 1) * size, progress=False)  # the first batch is there: n batches made
    return backend, spec, size, n * size, model_rate, n * size / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--images', type=int, default=2048, help='composites for the null-backend capacity')
    ap.add_argument('--model', choices=['tiny', 'densedepth', 'depth_anything_small'], default='tiny')
    ap.add_argument('--model-images', type=int, default=128, help='composites for the real model')
    ap.add_argument('--resolution', default='224x224', help='DenseDepth inference size HxW (the reference: 480x640)')
    ap.add_argument('--batch-size', type=int, default=None, help="composites per model call (default: the device's, `default_batch_size`)")
    ap.add_argument('--xla', action='store_true', help='compile the model with XLA')
    ap.add_argument('--full-precision', action='store_true', help='float32 on a GPU (default: mixed precision there)')
    ap.add_argument('--shards', action='store_true', help='composites straight into shards (`depthseg composites --shards`): maps written into them')
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix='depthseg-depth-bench-'))
    ds = make_sources(root, SOURCES)
    make_composites(ds, CompositesJob(positions=-(-max(args.images, args.model_images + 64) // (2 * SOURCES ** 2)), shards=args.shards), progress=False)
    print(f'\n{gpu_summary()}\n{load()}')
    stage, parts, png = capacity(root, ds, args.images)
    print(f'\nCapacity: make_depth with the null backend (no model work), {args.images} composites at 224x224{" in shards" if args.shards else ""}; {load()}')
    print(f'  end to end                       {stage:8.0f} maps/s  (read, decode, label, quality, encode, write, statistics)')
    for k, r in parts.items(): print(f'  limit: {k:25s} {r:8.0f} maps/s  (alone, all cores)')
    serial = 1 / sum(1 / r for r in parts.values())
    print(f'  limit: all parts one after another {serial:6.0f} maps/s; end to end is {stage / serial:.0%} of it')
    print(f'  8-bit PNG maps: {png:,.0f} bytes on average')
    backend, spec, size, n, model_rate, stage_rate = real_model(root, ds, args)
    what = {'densedepth': f'DenseDepth at {args.resolution}', 'tiny': 'tiny Depth Anything (random weights) at 224x224',
            'depth_anything_small': 'Depth Anything V2 Small (random weights) at 518x518'}[args.model]
    precision = 'float32' if args.full_precision or 'CPU only' in gpu_summary() else 'mixed precision'
    print(f'\n{what}, batch {size}, {n} images, {precision}, XLA {"on" if args.xla else "off"}, flip check off; {load()}')
    print(f'  model only, in-memory batches   {model_rate:8.2f} images/s')
    print(f'  make_depth end to end            {stage_rate:8.2f} images/s  (read, decode, model, quality, encode, write, statistics)')
    print(f'  ratio                            {stage_rate / model_rate:8.0%}')
    print(f'  the reference 392,040 composites at this rate: {392_040 / stage_rate / 3600:.1f} hours')
    shutil.rmtree(root)


if __name__ == '__main__': main()
