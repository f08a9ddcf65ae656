"""Hyperparameter search with Keras Tuner, driven by YAML search spaces in ``hyperparams/``.

Laid out like keras-tuner itself:

    errors.py          every error the search raises on purpose
    engine/            the core: the vocabulary of tunable keys, the YAML space, the HyperModel,
                       the in-memory image cache, the tuner base class, the leaderboard, RUN_DIR
    tuners/            one search algorithm per file: random, hyperband, bayesian
    distribute.py      chief/worker mode on keras-tuner's own gRPC oracle
    search.py          one search from start to leaderboard and ``best/``
    export.py          the best configuration retrained into a full model directory
    report.py          ``chestx tune --report``: the table and the plots
    cli.py             ``chestx tune`` arguments (heavy imports stay in the handler)

Nothing here imports TensorFlow at import time.
"""
