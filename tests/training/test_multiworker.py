"""Two real workers on 127.0.0.1 train one model with MultiWorkerMirroredStrategy."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

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
    epochs, die_after = int(sys.argv[4]), int(sys.argv[5])  # -1: never
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
    class Die(keras.callbacks.Callback):  # a worker killed after its backup
        def on_epoch_end(self, epoch, logs=None):
            if epoch == die_after:
                import os

                os._exit(3)

    clf.fit(data, epochs=epochs, strategy=strategy, verbose=0,
            checkpoint=out + ".best.keras", callbacks=[Die()])
    with open(f"{out}.epochs{index}.txt", "w") as fh:
        fh.write(str(len(clf.history_["loss"])))
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


def run_workers(
    script: Path, root: Path, out: Path, epochs: int, die_after: tuple[int, int]
) -> tuple[list[int | None], str]:
    """Start two workers; return their exit codes and logs. A worker that
    outlives a dead peer (blocked in a collective) is killed, as a cluster
    manager would."""
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
        args = [str(root), str(out), str(index), str(epochs), str(die_after[index])]
        log = open(f"{out}.log{index}", "w")  # noqa: SIM115 - closed below
        workers.append(
            subprocess.Popen(
                [sys.executable, str(script), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        log.close()  # the child holds its own copy
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and all(w.poll() is None for w in workers):
            time.sleep(0.2)
        # One has exited. If it failed, its peer waits for it in vain: 20 s.
        failed = any(w.poll() not in (None, 0) for w in workers)
        for worker in workers:
            try:
                worker.wait(
                    timeout=20 if failed else max(deadline - time.monotonic(), 1)
                )
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    finally:
        for worker in workers:
            worker.kill()
    logs = "\n".join(Path(f"{out}.log{i}").read_text() for i in range(2))
    return [w.returncode for w in workers], logs[-4000:]


@pytest.fixture
def job(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The worker script, a synthetic dataset, and where the model goes."""
    root = make_synthetic(tmp_path / "data", n_per_class=16, image_size=(48, 48))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    (tmp_path / "out").mkdir()
    return script, root, tmp_path / "out" / "model.keras"


def one_model(out: Path) -> Classifier:
    """Both workers ended with the same weights, and the file holds them."""
    first, second = (np.load(f"{out}.weights{i}.npy") for i in range(2))
    np.testing.assert_allclose(first, second, rtol=1e-6, atol=1e-6)
    clf = Classifier.load(out)
    trained = np.concatenate([w.ravel() for w in clf.model_.get_weights()])
    np.testing.assert_allclose(trained, first, rtol=1e-6, atol=1e-6)
    return clf


def test_two_workers_train_one_model(job: tuple[Path, Path, Path]) -> None:
    script, root, out = job
    out_dir = out.parent
    codes, log = run_workers(script, root, out, 2, (-1, -1))
    assert codes == [0, 0], log
    # Each worker read its own half of the batches.
    shards = [(out_dir / f"model.keras.shards{i}.txt").read_text() for i in range(2)]
    assert "('train', (0, 2))" in shards[0] and "('train', (1, 2))" in shards[1]
    # Only the chief wrote: one model file, one checkpoint, no temporary files.
    saves = [int((out_dir / f"model.keras.saves{i}.txt").read_text()) for i in range(2)]
    assert saves[0] >= 2 and saves[1] == 0  # checkpoint(s) and the final file
    keras_files = sorted(p.name for p in out_dir.iterdir() if p.suffix == ".keras")
    assert keras_files == ["model.keras", "model.keras.best.keras"]
    clf = one_model(out)
    images = np.random.default_rng(0).integers(0, 256, (3, 48, 48, 1), dtype=np.uint8)
    assert clf.predict_proba(images).shape == (3, 2)


def test_a_killed_worker_and_its_peer_resume_from_their_backups(
    job: tuple[Path, Path, Path],
) -> None:
    script, root, out = job
    out_dir = out.parent
    # Worker 1 dies after its second epoch; worker 0 is left waiting for it.
    codes, log = run_workers(script, root, out, 3, (-1, 1))
    assert codes[1] == 3 and codes[0] != 0, log
    assert not out.exists()  # the job did not finish
    backups = sorted(p.name for p in out_dir.iterdir() if "backup" in p.name)
    assert backups == [
        "model.keras.best.keras.backup",
        "model.keras.best.keras.backup-worker1",
    ]
    # The same command again on both: each resumes after the second epoch.
    codes, log = run_workers(script, root, out, 3, (-1, -1))
    assert codes == [0, 0], log
    resumed = [
        int((out_dir / f"model.keras.epochs{i}.txt").read_text()) for i in range(2)
    ]
    assert resumed == [1, 1], log  # only the third epoch ran
    one_model(out)
