"""Depth stage throughput in one run (not a test): model alone on in-memory batches vs the whole stage.

Uses DenseDepth with random weights saved as the reference saved nyu.h5 (real weights cannot be downloaded here;
the network and so the arithmetic are the same). Prints images/s for the model alone, for `make_depth` end to end
(read, decode, model, encode, write), and their ratio.

    python benchmarks/depth.py [--resolution 224x224] [--batch-size 8] [--images 64]
"""
import argparse, tempfile, time
from pathlib import Path

import numpy as np

from composites import make_sources  # benchmarks/composites.py: procedural sources, prepared by the first two stages

from depthseg.composites import CompositesJob, make_composites
from depthseg.depth import DepthSpec, depth_backend, gpu_summary, make_depth
from depthseg.testing import reference_nyu_h5  # a Keras 2 nyu.h5 with random weights

SOURCES = 4  # backgrounds and foregrounds each: 16 pairs, 32 composites per position


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--resolution', default='224x224', help='inference size HxW (the reference: 480x640)')
    ap.add_argument('--batch-size', type=int, default=8)
    ap.add_argument('--images', type=int, default=64)
    args = ap.parse_args()
    import tensorflow as tf
    root = Path(tempfile.mkdtemp(prefix='depthseg-depth-bench-'))
    reference_nyu_h5(root/'nyu.h5')
    n = max(1, args.images // args.batch_size)
    needed = (n + 1) * args.batch_size  # a warm-up batch, then n timed ones
    ds = make_sources(root, SOURCES)
    make_composites(ds, CompositesJob(positions=-(-needed // (2 * SOURCES ** 2))), progress=False)
    spec = DepthSpec(weights=root/'nyu.h5', resolution=args.resolution, batch_size=args.batch_size)
    backend = depth_backend(spec)  # the model `make_depth` builds from `spec`
    run = backend.compiled()
    batch = tf.constant(np.random.default_rng(0).integers(0, 256, (args.batch_size, 224, 224, 3), dtype=np.uint8))
    run(batch).numpy()  # warm up: trace and compile
    t = time.perf_counter()
    for _ in range(n): run(batch).numpy()
    model_rate = n * args.batch_size / (time.perf_counter() - t)
    make_depth(ds, spec, backend, limit=args.batch_size, progress=False)  # warm up
    t = time.perf_counter()
    make_depth(ds, spec, backend, limit=needed, progress=False)
    stage_rate = n * args.batch_size / (time.perf_counter() - t)
    print(f'\nDenseDepth (42.8M parameters) at {args.resolution}, batch {args.batch_size}, {n * args.batch_size} images; {gpu_summary()}')
    print(f'  model only, in-memory batches   {model_rate:8.2f} images/s')
    print(f'  make_depth end to end            {stage_rate:8.2f} images/s  (read, decode, model, encode, write)')
    print(f'  ratio                            {stage_rate / model_rate:8.0%}')


if __name__ == '__main__': main()
