"""The training loop for strategies ``model.fit`` cannot run: ``fit(model, optimizer, loss, batches, …)``.

Keras 3's ``model.fit`` fails under ``tf.distribute.MultiWorkerMirroredStrategy`` (keras-team/keras#20585),
so a multi-worker run (:mod:`edgeseg.distribute`) trains here. The loop does what ``fit`` does for edgeseg
and no more: each step every worker draws the same global batch (batches are seeded by (seed, epoch, index),
so the draw is the one a single device would train on) and each replica takes its slice; the replica's loss
is divided by the replica count and the optimizer sums the replicas' gradients (Keras's TensorFlow optimizer
all-reduces them), so a step is the single-device step on the global batch. The same
``keras.callbacks.Callback`` that ``fit`` drives gets ``on_epoch_begin``, ``on_train_batch_end`` (with the
global mean loss) and ``on_epoch_end``; ``model.stop_training`` stops every worker at once, because the
workers agree on it through one all-reduce per epoch.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def fit(model, optimizer, loss, batches, strategy, epochs: int, initial_epoch: int, callback,
        workers: int = 1) -> None:
    """Train ``model`` for epochs ``initial_epoch`` … ``epochs - 1`` on ``batches`` (a Keras PyDataset of
    global (x, y) batches with ``len`` steps) under ``strategy``, driving ``callback`` like ``model.fit``
    does. ``workers`` threads draw batches ahead of the step (at most that many waiting)."""
    import tensorflow as tf

    replicas = strategy.num_replicas_in_sync

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=True)) / replicas
        grads = tape.gradient(value, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return value

    @tf.function
    def step(x, y):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica_step, args=(x, y)), axis=None)

    @tf.function
    def anyone(flag):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.identity(flag)), axis=None)

    with strategy.scope():
        optimizer.build(model.trainable_variables)
    callback.set_model(model)
    model.stop_training = False
    for epoch in range(initial_epoch, epochs):
        callback.on_epoch_begin(epoch)
        values = []
        for index, (x, y) in enumerate(_drawn(batches, workers)):
            value = float(step(_split(strategy, x), _split(strategy, y)))
            values.append(value)
            callback.on_train_batch_end(index, {"loss": value})
        callback.on_epoch_end(epoch, {"loss": sum(values) / max(len(values), 1)})
        if float(anyone(tf.constant(1.0 if model.stop_training else 0.0))) > 0:
            break


def _split(strategy, batch) -> Any:
    """The global ``batch`` as per-replica values: replica r (over all workers) gets its r-th slice."""
    import tensorflow as tf

    def slice_for(ctx):
        size = len(batch) // ctx.num_replicas_in_sync
        start = ctx.replica_id_in_sync_group * size
        return tf.constant(batch[start:start + size])

    return strategy.experimental_distribute_values_from_function(slice_for)


def _drawn(batches, workers: int) -> Iterator[Any]:
    """``batches[0]``, ``batches[1]``, … in order, drawn by ``workers`` threads at most that far ahead."""
    if workers <= 1:
        yield from (batches[i] for i in range(len(batches)))
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: collections.deque = collections.deque()
        for i in range(len(batches)):
            pending.append(pool.submit(batches.__getitem__, i))
            if len(pending) >= workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
