"""The ``linear_probe`` task kind: a logistic-regression classifier on frozen image features.

The spec names the split to train on (``params.train_split``); the task's own split is
the one evaluated. See :mod:`harness_linear_probe.kind` for the method.
"""

from __future__ import annotations

from harness import TaskKindSpec, hookimpl

#: Inverse regularisation strengths tried when a spec does not fix ``C``.
DEFAULT_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_MAX_ITER = 1000

PARAMS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["train_split"],
    "properties": {
        "train_split": {"type": "string", "minLength": 1,
                        "description": "split of the same dataset the classifier is fitted on (must differ from dataset.split)"},
        "C": {"type": "number", "exclusiveMinimum": 0,
              "description": "inverse L2 regularisation strength; omit to choose it from C_grid on a validation part of the train split"},
        "C_grid": {"type": "array", "minItems": 1, "uniqueItems": True,
                   "items": {"type": "number", "exclusiveMinimum": 0}, "default": list(DEFAULT_C_GRID),
                   "description": "values of C tried when C is not given"},
        "val_fraction": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": DEFAULT_VAL_FRACTION,
                         "description": "stratified share of the train split held out to choose C"},
        "max_iter": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_ITER,
                     "description": "L-BFGS iterations per fit"},
        "train_limit": {"type": "integer", "minimum": 1,
                        "description": "fit on a seeded random subset of at most this many train rows"},
        "classnames": {"type": "array", "minItems": 2, "items": {"type": "string", "minLength": 1},
                       "description": "class names in label order, for a label column without ClassLabel names "
                                      "(only their number is used)"},
    },
}


@hookimpl
def harness_register_task_kinds() -> list[TaskKindSpec]:
    return [
        TaskKindSpec(
            name="linear_probe",
            factory="harness_linear_probe.kind:LinearProbe",
            needs=frozenset({"image_embed"}),
            outputs=frozenset({"logits", "labels"}),
            columns=("image", "label"),
            params_schema=PARAMS_SCHEMA,
            description="multinomial logistic regression on frozen image embeddings of a train split, scored on the task split",
        )
    ]
