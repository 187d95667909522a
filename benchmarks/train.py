"""Training images per second of the default joint model (`depthseg.model.joint_model`) on this machine (not a test).

    python benchmarks/train.py [--size 224] [--batch-size 16] [--width 1.0] [--steps 4]

Random weights (the speed is the same as from ImageNet's); the demo dataset, one position per pair (128 training composites).
"""
import argparse, os, tempfile, time
from pathlib import Path

import keras, tensorflow as tf

from depthseg.cli import demo
from depthseg.depth import gpu_summary
from depthseg.model import _precision, compile_model, depth_labels, joint_model, pairs


class Clock(keras.callbacks.Callback):
    "Seconds of each epoch."
    def on_train_begin(self, logs=None): self.seconds = []
    def on_epoch_begin(self, epoch, logs=None): self.t = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): self.seconds.append(time.perf_counter() - self.t)


def measure(ds, args) -> str:
    "Images/s of training on the demo dataset built in `ds`, as one line."
    demo(ds, positions=1, progress=False)
    policy = _precision()
    model = compile_model(joint_model(args.size, args.width), depth_labels(ds), steps=2 * args.steps)
    clock = Clock()
    model.fit(pairs(ds, size=args.size, batch_size=args.batch_size).repeat(), steps_per_epoch=args.steps, epochs=2, callbacks=[clock], verbose=0, shuffle=False)
    rate = args.steps * args.batch_size / clock.seconds[1]  # the first epoch traces and warms up
    return (f'train: {rate:.1f} images/s at {args.size}x{args.size}, batch {args.batch_size}, MobileNetV2 width {args.width}, '
          f'{model.count_params():,} parameters, {policy}, {gpu_summary() if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores seen)"}')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--batch-size', type=int, default=16)
    ap.add_argument('--width', type=float, default=1.0)
    ap.add_argument('--steps', type=int, default=4, help='steps timed (after as many to warm up)')
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix='depthseg-train-bench-') as root: print(measure(Path(root)/'dataset', args))


if __name__ == '__main__': main()
