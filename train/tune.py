"""`digitlite tune`: hyperparameter search with keras-tuner over the grid one report used.

Filters (32/64/128), dense units (32/64/128) and learning rate (1e-2/1e-3/1e-4), random search within a
small budget, scored on the validation split of the training set. Writes results.md / results.json and
best_config.json, which `digitlite train --config` accepts.

    digitlite tune --max-trials 6 --epochs 2 --out runs/tune
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import keras
import keras_tuner as kt

from digitdata.atomic import write_json, write_text
from digitdata.mnist import find_mnist
from train.config import TrainConfig
from train.models import build_model
from train.split import split
from train.trainer import compile_model, dataset, seed_everything

SPACE = {"filters": [32, 64, 128], "units": [32, 64, 128], "learning_rate": [1e-2, 1e-3, 1e-4]}


def tune(out: str | Path, max_trials: int = 6, epochs: int = 2, subset: int = 10000, seed: int = 42,
         arch: str = "basic-cnn", data_dir: str | Path | None = None) -> dict:
    """Search SPACE for `arch`; return the best hyperparameters (also saved as best_config.json in `out`)."""
    out = Path(out)
    base = TrainConfig(arch=arch, epochs=epochs, subset=subset, seed=seed, augment=False).validate()
    data = find_mnist(data_dir)
    seed_everything(seed)
    x_train, y_train, x_val, y_val = split(data, base)
    steps = -(-len(x_train) // base.batch_size)

    def build(hp: kt.HyperParameters) -> keras.Model:
        values = {name: hp.Choice(name, choices) for name, choices in SPACE.items()}
        model = build_model(arch, filters=values["filters"], units=values["units"])
        compile_model(model, replace(base, learning_rate=values["learning_rate"]), steps)
        return model

    work = out / "trials"
    shutil.rmtree(work, ignore_errors=True)  # a fresh search each time; results below are the record
    tuner = kt.RandomSearch(build, objective="val_accuracy", max_trials=max_trials, seed=seed,
                            directory=str(work), project_name=arch, overwrite=True)
    tuner.search(dataset(x_train, y_train, base), validation_data=(x_val, y_val), epochs=epochs, verbose=0,
                 shuffle=False)  # the dataset shuffles itself

    rows = []
    for trial in tuner.oracle.get_best_trials(num_trials=max_trials):
        rows.append({**trial.hyperparameters.values, "val_accuracy": trial.score})
    best = rows[0]
    best_config = replace(base, epochs=TrainConfig().epochs, subset=0, augment=True,
                          **{k: best[k] for k in SPACE})
    write_json(out / "best_config.json", best_config.to_dict())
    write_json(out / "results.json", {"arch": arch, "epochs": epochs, "subset": subset, "trials": rows})
    table = ["| filters | units | learning rate | val accuracy |", "|---|---|---|---|"]
    table += [f"| {r['filters']} | {r['units']} | {r['learning_rate']:g} | {r['val_accuracy']:.4f} |" for r in rows]
    write_text(out / "results.md", f"# keras-tuner random search, {arch}, {epochs} epochs on {subset or 'all'} "
               f"training images\n\n" + "\n".join(table) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return best
