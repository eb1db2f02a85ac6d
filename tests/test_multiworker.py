"""Two real workers on 127.0.0.1 train one model with MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from covidxray import Classifier
from covidxray.datasets import make_synthetic

WORKER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    # The strategy must exist before any other TensorFlow work.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

    import keras
    from covidxray import Classifier, build_cnn, load_dataset

    root, out, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
    data = load_dataset(root, image_size=(48, 48), batch_size=8, validation_split=0.25)
    keras.utils.set_random_seed(0)
    clf = Classifier(build_cnn((48, 48, 1)), class_names=data.class_names)
    read = []
    original = type(data).as_tf_dataset

    def spy(self, split, **kwargs):
        read.append((split, kwargs.get("shard")))
        return original(self, split, **kwargs)

    type(data).as_tf_dataset = spy
    saves = []
    real_save = keras.Model.save
    keras.Model.save = lambda self, *a, **k: saves.append(a) or real_save(self, *a, **k)
    clf.fit(data, epochs=2, strategy=strategy, verbose=0, checkpoint=out + ".best.keras")
    weights = np.concatenate([w.ravel() for w in clf.model_.get_weights()])
    np.save(f"{out}.weights{index}.npy", weights)
    clf.save(out)
    with open(f"{out}.shards{index}.txt", "w") as fh:
        fh.write(repr(read))
    with open(f"{out}.saves{index}.txt", "w") as fh:
        fh.write(str(len(saves)))
    """
)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_two_workers_train_one_model(tmp_path: Path) -> None:
    root = make_synthetic(tmp_path / "data", n_per_class=16, image_size=(48, 48))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "model.keras"
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    workers = []
    for index in range(2):
        env = {
            **os.environ,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "CUDA_VISIBLE_DEVICES": "",
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, str(script), str(root), str(out), str(index)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = []
    try:
        for worker in workers:
            logs.append(worker.communicate(timeout=150)[0])
    finally:
        for worker in workers:
            worker.kill()
    assert [w.returncode for w in workers] == [0, 0], "\n".join(logs)[-4000:]
    first, second = (np.load(f"{out}.weights{i}.npy") for i in range(2))
    np.testing.assert_allclose(first, second, rtol=1e-6, atol=1e-6)
    # Each worker read its own half of the batches.
    shards = [(out_dir / f"model.keras.shards{i}.txt").read_text() for i in range(2)]
    assert "('train', (0, 2))" in shards[0] and "('train', (1, 2))" in shards[1]
    # Only the chief wrote: one model file, one checkpoint, no temporary files.
    saves = [int((out_dir / f"model.keras.saves{i}.txt").read_text()) for i in range(2)]
    assert saves[0] >= 2 and saves[1] == 0  # checkpoint(s) and the final file
    keras_files = sorted(p.name for p in out_dir.iterdir() if p.suffix == ".keras")
    assert keras_files == ["model.keras", "model.keras.best.keras"]
    clf = Classifier.load(out)
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1), dtype=np.uint8)
    assert clf.predict_proba(images).shape == (3, 2)
    trained = np.concatenate([w.ravel() for w in clf.model_.get_weights()])
    np.testing.assert_allclose(trained, first, rtol=1e-6, atol=1e-6)
