"""`chestx tune` (owned by the hyperparameter search work)."""


def add_tune(sub) -> None:
    sub.add_parser("tune", help="Keras Tuner search from a hyperparams/ YAML file (not built yet)")
