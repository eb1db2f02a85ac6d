"""Benchmark: XLA (`jit_compile=True`) against TensorFlow's graph, on this machine.

In one process, each with and without XLA, from the same initial weights and
on the same batches:

- the paper's CNN (`build_cnn`, 256 x 256 x 1, batch 32): training steps,
  as `Classifier.fit` compiles it (binary cross-entropy, accuracy and AUC);
- a frozen backbone's head on cached features (MobileNetV2 at 160 x 160,
  random weights; the paper's head on its pooled 2 x 2 x 1,280 features, as
  `FeatureCache` gives them), trained 32 steps per call as `fit` does;
- prediction: the paper's CNN on a batch of 32 and on one image, and the
  frozen MobileNetV2 on the 15 images a `FeatureCache` call runs on; each a
  `tf.function` with and without `jit_compile`.

Prints the time of each (the best of a few rounds, taken in turns), the
speed-up of XLA, and how far the two results are apart: for training, the
loss and the largest weight difference after the same steps of the same
models without dropout (XLA draws other dropout masks from the same seed);
for prediction, the largest difference of the outputs. Run by hand:
    python benchmarks/bench_xla.py [--steps 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from covidxray import build_cnn, build_pretrained
from covidxray.features import pool_into_features
from covidxray.models.split import split_at_backbone
from covidxray.training.losses import loss_and_metrics

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=10, help="timed CNN training steps")
parser.add_argument("--rounds", type=int, default=2)
args = parser.parse_args()
rng = np.random.default_rng(0)


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def trained(
    model: keras.Model, start: list[np.ndarray], jit: bool, steps_per_execution: int
) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(start)
    loss, metrics = loss_and_metrics(clone.output_shape[-1])
    clone.compile(
        optimizer=keras.optimizers.Adam(1e-3), loss=loss, metrics=metrics,
        jit_compile=jit, steps_per_execution=steps_per_execution,
    )  # fmt: skip
    return clone


def training(
    name: str, model: keras.Model, twin: keras.Model, x: np.ndarray,
    y: np.ndarray, batch: int, steps_per_execution: int = 1, epochs: int = 1,
    agree_steps: int | None = None,
) -> None:  # fmt: skip
    """Time `epochs` passes of fit over (x, y) with and without XLA, taking
    turns; then train `twin` (the same model without dropout, whose masks XLA
    draws differently) both ways from the same start over the same
    `agree_steps` batches, and compare the losses and weights."""
    start = model.get_weights()
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).cache()
    steps = len(x) // batch * epochs
    timings: dict[bool, list[float]] = {False: [], True: []}
    models = {
        jit: trained(model, start, jit, steps_per_execution) for jit in (False, True)
    }
    for m in models.values():  # warm-up: tracing and compiling
        m.fit(data.take(steps_per_execution * 2), epochs=1, verbose=0)
    for _ in range(args.rounds):
        for jit, m in models.items():
            timings[jit].append(
                best(lambda m=m: m.fit(data, epochs=epochs, verbose=0), 1)
            )
    plain, xla = min(timings[False]), min(timings[True])
    few = data.take(agree_steps) if agree_steps else data
    twins = [
        trained(twin, twin.get_weights(), jit, steps_per_execution)
        for jit in (False, True)
    ]
    losses = [m.fit(few, epochs=epochs, verbose=0).history["loss"][-1] for m in twins]
    diff = max(
        float(np.max(np.abs(u - v)))
        for u, v in zip(twins[0].get_weights(), twins[1].get_weights(), strict=True)
    )
    scale = max(float(np.max(np.abs(u))) for u in twins[0].get_weights())
    done = (agree_steps or len(x) // batch) * epochs
    print(
        f"{name:34}{plain / steps * 1e3:10.2f}{xla / steps * 1e3:10.2f}"
        f"{plain / xla:8.2f}   without dropout, after {done} steps: loss "
        f"{losses[0]:.6f} / {losses[1]:.6f}, max |dw| {diff:.1e} (max |w| {scale:.2f})"
    )


def predicting(name: str, model: keras.Model, x: np.ndarray, calls: int) -> None:
    spec = tf.TensorSpec((None, *x.shape[1:]), tf.float32)
    fns = {
        jit: tf.function(
            lambda t: model(t, training=False),
            input_signature=[spec],
            jit_compile=jit,
        )  # fmt: skip
        for jit in (False, True)
    }
    t = tf.constant(x)
    outs = {jit: fn(t).numpy() for jit, fn in fns.items()}  # warm-up
    timings: dict[bool, list[float]] = {False: [], True: []}

    def run(fn: Callable[[tf.Tensor], tf.Tensor]) -> None:
        for _ in range(calls):
            fn(t).numpy()

    for _ in range(args.rounds):
        for jit, fn in fns.items():
            timings[jit].append(best(lambda fn=fn: run(fn), 1))
    plain, xla = min(timings[False]) / calls, min(timings[True]) / calls
    diff = float(np.max(np.abs(outs[False] - outs[True])))
    print(
        f"{name:34}{plain * 1e3:10.2f}{xla * 1e3:10.2f}{plain / xla:8.2f}   "
        f"max |d output| {diff:.2e}"
    )


print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, CPU only")
print(f"{'ms per step or call':34}{'graph':>10}{'XLA':>10}{'speed-up':>8}")

keras.utils.set_random_seed(0)
cnn = build_cnn((256, 256, 1))
cnn_twin = build_cnn((256, 256, 1), dropout=0.0)
images = rng.random((32 * args.steps, 256, 256, 1), dtype=np.float32)
labels = rng.integers(0, 2, len(images)).astype(np.int32)
training(
    "paper CNN, train step (batch 32)", cnn, cnn_twin, images, labels, 32,
    agree_steps=5,
)  # fmt: skip

keras.utils.set_random_seed(0)
mobilenet = build_pretrained("mobilenetv2", input_shape=(160, 160, 1), weights=None)
features, head = pool_into_features(*split_at_backbone(mobilenet))
_, head_twin = pool_into_features(
    *split_at_backbone(
        build_pretrained(
            "mobilenetv2", input_shape=(160, 160, 1), weights=None, dropout=0.0
        )
    )
)
cached = rng.random((2048, *head.input_shape[1:]), dtype=np.float32)
targets = rng.integers(0, 2, len(cached)).astype(np.int32)
training(
    "head on cached features (batch 32)", head, head_twin, cached, targets, 32,
    steps_per_execution=32, epochs=5,
)  # fmt: skip

predicting("paper CNN, predict 32 images", cnn, images[:32], calls=20)
predicting("paper CNN, predict 1 image", cnn, images[:1], calls=50)
predicting("MobileNetV2 features, 15 images", features, rng.random(
    (15, 160, 160, 1), dtype=np.float32), calls=5)  # fmt: skip
