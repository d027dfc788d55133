"""Segmentation losses that compose by arithmetic, a spec parser, and losses scheduled by epoch.

    loss = BCE() + 0.5 * Dice()
    loss = parse("0.5*bce+dice")                 # same thing from a CLI string
    loss = parse("bce@0,bce+dice@5,dice@20")     # a schedule: switches at the start of epochs 5 and 20
    loss = parse("bce+dice+0.5*hardneg+0.25*hardpos")  # the default: + the most confident background pixels
                                                       #   and the least confident defect pixels

Every loss is a callable ``(y_true, y_pred) -> scalar`` over (N, H, W, 1) masks and sigmoid probabilities,
usable directly as Keras' ``compile(loss=...)``. A schedule computes all its stages and selects one with a
non-trainable variable (set by :class:`LossScheduleCallback` at each epoch start), so the compiled graph
stays valid when the loss switches.
"""

from __future__ import annotations

import re
from typing import Any

from edgeseg.errors import EdgesegError

_EPS = 1e-7


def _ops():
    from keras import ops

    return ops


class Loss:
    """Base class: subclasses implement ``call``; ``+`` and scalar ``*`` build weighted sums."""

    def __call__(self, y_true, y_pred):
        ops = _ops()
        return self.call(ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"))

    def call(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def __add__(self, other: "Loss") -> "Loss":
        if not isinstance(other, Loss):
            return NotImplemented
        return Sum([(1.0, self), (1.0, other)])

    def __mul__(self, k: float) -> "Loss":
        if not isinstance(k, (int, float)):
            return NotImplemented
        return Sum([(float(k), self)])

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return self.spec

    @property
    def spec(self) -> str:
        return type(self).__name__.lower()


class Sum(Loss):
    """Σ weight·loss; nested sums flatten so ``a + b + c`` is one level."""

    def __init__(self, terms: list[tuple[float, Loss]]):
        flat: list[tuple[float, Loss]] = []
        for w, loss in terms:
            flat.extend((w * w2, l2) for w2, l2 in loss.terms) if isinstance(loss, Sum) else flat.append((w, loss))
        self.terms = flat

    def call(self, y_true, y_pred):
        total = 0.0
        for w, loss in self.terms:
            total = total + w * loss.call(y_true, y_pred)
        return total

    @property
    def spec(self) -> str:
        return "+".join(loss.spec if w == 1.0 else f"{w:g}*{loss.spec}" for w, loss in self.terms)


class BCE(Loss):
    """Binary cross-entropy; ``pos_weight`` > 1 weights defect pixels up (the classes are ~1:100)."""

    def __init__(self, pos_weight: float = 1.0):
        self.pos_weight = float(pos_weight)

    def call(self, y_true, y_pred):
        ops = _ops()
        p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
        ll = self.pos_weight * y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p)
        return -ops.mean(ll)

    @property
    def spec(self) -> str:
        return "bce" if self.pos_weight == 1.0 else f"wbce:pos_weight={self.pos_weight:g}"


class Dice(Loss):
    """1 − soft Dice per image, averaged over the batch; ``smooth`` makes a defect-free image with an
    empty prediction score 0 instead of 0/0."""

    def __init__(self, smooth: float = 1.0):
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        ops = _ops()
        axes = (1, 2, 3)
        inter = ops.sum(y_true * y_pred, axis=axes)
        total = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
        return 1.0 - ops.mean((2.0 * inter + self.smooth) / (total + self.smooth))

    @property
    def spec(self) -> str:
        return "dice" if self.smooth == 1.0 else f"dice:smooth={self.smooth:g}"


class Focal(Loss):
    """Focal loss (Lin et al.): BCE down-weighted by (1 − p_t)^gamma on easy pixels; ``alpha`` weights the
    defect class (alpha = 0.5 weights both classes equally; the result is ×2 so gamma = 0 gives BCE)."""

    def __init__(self, gamma: float = 2.0, alpha: float = 0.5):
        self.gamma, self.alpha = float(gamma), float(alpha)

    def call(self, y_true, y_pred):
        ops = _ops()
        p = ops.clip(y_pred, _EPS, 1.0 - _EPS)
        p_t = y_true * p + (1.0 - y_true) * (1.0 - p)
        a_t = y_true * self.alpha + (1.0 - y_true) * (1.0 - self.alpha)
        return -2.0 * ops.mean(a_t * ops.power(1.0 - p_t, self.gamma) * ops.log(p_t))

    @property
    def spec(self) -> str:
        return f"focal:gamma={self.gamma:g},alpha={self.alpha:g}"


class Tversky(Loss):
    """1 − Tversky index per image: ``alpha`` weights false positives, ``beta`` false negatives
    (alpha = beta = 0.5 is Dice; beta > alpha favours recall)."""

    def __init__(self, alpha: float = 0.5, beta: float | None = None, smooth: float = 1.0):
        self.alpha = float(alpha)
        self.beta = float(1.0 - self.alpha if beta is None else beta)
        self.smooth = float(smooth)

    def call(self, y_true, y_pred):
        ops = _ops()
        axes = (1, 2, 3)
        tp = ops.sum(y_true * y_pred, axis=axes)
        fp = ops.sum((1.0 - y_true) * y_pred, axis=axes)
        fn = ops.sum(y_true * (1.0 - y_pred), axis=axes)
        return 1.0 - ops.mean((tp + self.smooth) / (tp + self.alpha * fp + self.beta * fn + self.smooth))

    @property
    def spec(self) -> str:
        return f"tversky:alpha={self.alpha:g},beta={self.beta:g}"


def _top_k_cost(error, k: int):
    """Mean −log(1 − e) over each image's ``k`` largest errors ``e`` (N, H, W, 1) in [0, 1), over the batch."""
    ops = _ops()
    top, _ = ops.top_k(ops.reshape(error, (ops.shape(error)[0], -1)), k)
    return -ops.mean(ops.log(1.0 - top))


class HardNegatives(Loss):
    """Mean −log(1 − p) over each image's ``k`` most confident *background* pixels (those more than ``margin``
    px from any defect), averaged over the batch.

    What an inspection line counts is false blobs: a few dozen confident background pixels together. BCE
    averages them with 65,000 easy ones and Dice with the defect pixels, so a net trained on those alone
    ends with rare but confident false blobs, which no threshold removes without losing faint defects. This
    term charges exactly those pixels (hard-negative mining). The margin keeps defect rims, which the labels
    place only to ±1 px, out of it. Added to ``bce+dice`` at weight 0.5 it gains ~1 point of recall at an
    equal false-alarm rate, and cuts false blobs and overkill (docs/study.md, "Which loss, and when?").
    """

    def __init__(self, k: float = 64, margin: float = 4):
        if k < 1 or margin < 0:
            raise EdgesegError(f"hardneg: k must be >= 1 and margin >= 0, got k={k:g}, margin={margin:g}")
        self.k, self.margin = int(k), int(margin)

    def call(self, y_true, y_pred):
        ops = _ops()
        near = ops.max_pool(y_true, 2 * self.margin + 1, strides=1, padding="same") if self.margin else y_true
        return _top_k_cost(ops.clip(y_pred, _EPS, 1.0 - _EPS) * (1.0 - near), self.k)

    @property
    def spec(self) -> str:
        return "hardneg" if (self.k, self.margin) == (64, 4) else f"hardneg:k={self.k},margin={self.margin}"


class HardPositives(Loss):
    """Mean −log p over each image's ``k`` least confident *defect-interior* pixels (the defect eroded by
    ``erode`` px), averaged over the batch; the mirror image of :class:`HardNegatives`.

    A faint or thin defect the net half-sees leaves a few low-probability pixels inside it, which BCE
    averages away and Dice weighs against the whole defect; this term charges them. An image with fewer
    interior pixels than ``k`` (or none) fills the rest with zero cost. The erosion keeps label rims out.
    Beside ``hardneg`` it is the largest recall gain measured, but it widens the probability around defects,
    so hysteresis to 0.2 bloats masks and the F1-best threshold lets through false blobs: it belongs in the
    default loss only together with the operating point fitted under a false-alarm budget
    (:mod:`edgeseg.operating`; docs/study.md, "Which loss, and when?").
    """

    def __init__(self, k: float = 32, erode: float = 1):
        if k < 1 or erode < 0:
            raise EdgesegError(f"hardpos: k must be >= 1 and erode >= 0, got k={k:g}, erode={erode:g}")
        self.k, self.erode = int(k), int(erode)

    def call(self, y_true, y_pred):
        ops = _ops()
        inner = -ops.max_pool(-y_true, 2 * self.erode + 1, strides=1, padding="same") if self.erode else y_true
        return _top_k_cost((1.0 - ops.clip(y_pred, _EPS, 1.0 - _EPS)) * inner, self.k)

    @property
    def spec(self) -> str:
        return "hardpos" if (self.k, self.erode) == (32, 1) else f"hardpos:k={self.k},erode={self.erode}"


class Scheduled(Loss):
    """Stage losses switched by epoch: ``[(0, BCE()), (5, BCE() + Dice())]``.

    The active stage lives in a non-trainable Keras variable (created on first use, inside the model's
    graph scope) that :meth:`set_epoch` updates, so switching needs no recompilation.
    """

    def __init__(self, stages: list[tuple[int, Loss]]):
        stages = sorted(stages, key=lambda s: s[0])
        if not stages or stages[0][0] != 0:
            raise EdgesegError("a loss schedule must start at epoch 0, e.g. bce@0,bce+dice@5")
        if len({e for e, _ in stages}) != len(stages):
            raise EdgesegError("a loss schedule names the same epoch twice")
        self.stages = stages
        self._stage = None

    @property
    def stage_variable(self):
        if self._stage is None:
            import keras

            self._stage = keras.Variable(0, dtype="int32", trainable=False, name="loss_stage")
        return self._stage

    def stage_at(self, epoch: int) -> int:
        return max(i for i, (start, _) in enumerate(self.stages) if start <= epoch)

    def set_epoch(self, epoch: int) -> None:
        self.stage_variable.assign(self.stage_at(epoch))

    def call(self, y_true, y_pred):
        ops = _ops()
        stage = self.stage_variable
        total = 0.0
        for i, (_, loss) in enumerate(self.stages):
            total = total + ops.cast(ops.equal(stage, i), "float32") * loss.call(y_true, y_pred)
        return total

    @property
    def spec(self) -> str:
        return ",".join(f"{loss.spec}@{e}" for e, loss in self.stages)


# name → (class, fixed keyword arguments)
LOSSES: dict[str, tuple[type[Loss], dict[str, Any]]] = {
    "bce": (BCE, {}),
    "wbce": (BCE, {"pos_weight": 10.0}),
    "dice": (Dice, {}),
    "focal": (Focal, {}),
    "tversky": (Tversky, {"alpha": 0.3}),
    "hardneg": (HardNegatives, {}),
    "hardpos": (HardPositives, {}),
}

_TERM = re.compile(r"^\s*(?:(?P<w>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?)\s*\*\s*)?(?P<name>[a-z_]+)(?::(?P<args>.*))?\s*$")


def _parse_term(text: str) -> tuple[float, Loss]:
    m = _TERM.match(text)
    if not m:
        raise EdgesegError(f"bad loss term {text.strip()!r}: write e.g. bce, 0.5*dice, focal:gamma=2")
    name = m["name"]
    if name not in LOSSES:
        raise EdgesegError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    cls, kwargs = LOSSES[name]
    kwargs = dict(kwargs)
    for item in filter(None, (m["args"] or "").split(",")):
        key, sep, value = item.partition("=")
        try:
            kwargs[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise EdgesegError(f"bad loss argument {item!r} in {text.strip()!r}: write key=number")
    try:
        loss = cls(**kwargs)
    except TypeError:
        import inspect

        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise EdgesegError(f"loss {name!r} takes {', '.join(allowed)}; got {', '.join(kwargs)}") from None
    return float(m["w"] or 1.0), loss


def _parse_sum(text: str) -> Loss:
    terms = [_parse_term(t) for t in text.split("+")]
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][1]
    return Sum(terms)


def parse(spec: str) -> Loss:
    """A loss from a spec: ``"bce"``, ``"bce+dice"``, ``"0.5*bce+dice"``, ``"focal:gamma=2"``,
    ``"tversky:alpha=0.3,beta=0.7"``, or a schedule ``"bce@0,bce+dice@5,dice@20"``.

    Commas separate a term's arguments and, in a schedule, the stages (each stage ends in ``@epoch``).
    """
    if not spec or not spec.strip():
        raise EdgesegError(f"empty loss spec: choose from {', '.join(LOSSES)}")
    if "@" not in spec:
        return _parse_sum(spec)
    stages, pending = [], ""
    for piece in spec.split(","):
        pending = f"{pending},{piece}" if pending else piece
        if "@" in piece:
            body, _, epoch = pending.rpartition("@")
            try:
                stages.append((int(epoch), _parse_sum(body)))
            except ValueError:
                raise EdgesegError(f"bad schedule stage {pending!r}: write LOSS@EPOCH, e.g. dice@5") from None
            pending = ""
    if pending:
        raise EdgesegError(f"schedule stage {pending!r} has no @EPOCH")
    return Scheduled(stages)


def schedule_callback(loss: Loss):
    """A Keras callback that moves a :class:`Scheduled` loss to the stage of each epoch (None otherwise)."""
    if not isinstance(loss, Scheduled):
        return None
    import keras

    class LossScheduleCallback(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            loss.set_epoch(epoch)

    return LossScheduleCallback()
