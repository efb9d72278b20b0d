"""The image classifier (classifier) behind the FID, trainable on its own like any model.

results.json: test_accuracy and test_loss (softmax cross-entropy, nats per image).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxae.config import POSITIVE_INT, Config, option
from jaxae.models.classifier import Classifier
from jaxae.objectives import classification, to_float
from jaxae.outputs import save_grid
from jaxae.registry import ModelSpec, register
from jaxae.runs.common import optimizer
from jaxae.train.evaluate import evaluate, map_examples
from jaxae.train.state import create_train_state
from jaxae.train.step import make_eval_step, make_train_step


@dataclasses.dataclass(frozen=True)
class ClassifierOptions:
    """The classifier's own settings."""

    embedding: int = option(128, "units of the last hidden layer (the FID's features)", range=POSITIVE_INT)


def init(config: Config, info, steps_per_epoch: int, key: jax.Array):
    model = Classifier(embedding=config.options.embedding, classes=info.num_classes)
    return create_train_state(model, optimizer(config, steps_per_epoch), key, jnp.zeros((1, *info.image_shape)))


def train_step(config: Config, info):
    return make_train_step(classification(), config.micro_batches)


def eval_step(config: Config, info):
    def step(state, batch, key):
        return state.apply_fn({"params": state.params}, to_float(batch["image"]))

    return step


def evaluate_run(config: Config, state, data, key: jax.Array, history: list[dict]) -> dict:
    scores = evaluate(make_eval_step(classification(), state.apply_fn), state.params, data.test, key)
    return {"test_accuracy": scores["accuracy"], "test_loss": scores["loss"]}


def _predict(apply_fn, params, batch, key):
    return jnp.argmax(apply_fn({"params": params}, to_float(batch["image"])), axis=-1)


def pictures(config: Config, state, data, key: jax.Array, folder, history: list[dict]) -> None:
    """errors.png: up to 20 misclassified test images (the first test images if none is)."""
    test = data.test.load()
    predicted = map_examples(lambda params, batch, key: _predict(state.apply_fn, params, batch, key), state.params, test)
    wrong = np.flatnonzero(predicted != test["label"])[:20]
    shown = to_float(test["image"][wrong if len(wrong) else np.arange(min(20, len(predicted)))])
    save_grid(folder / "errors.png", [shown[:10], shown[10:20]] if len(shown) > 10 else [shown])


register(
    ModelSpec(
        name="classifier",
        summary="image classifier (the FID's feature network): test accuracy",
        options=ClassifierOptions,
        init=init,
        train_step=train_step,
        eval_step=eval_step,
        evaluate=evaluate_run,
        pictures=pictures,
        needs_labels=lambda config: True,
        unroll=lambda config: True,
        defaults={"epochs": 2, "schedule": "constant", "steps_per_dispatch": 8},
    )
)
