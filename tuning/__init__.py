"""Hyperparameter search over any registered pipeline with Keras Tuner, every trial an MLflow run.

- space.py       declares a pipeline's search space (its `search_space(hp, config)`), pins values, checks it
- hypermodel.py  the keras_tuner.HyperModel: search space -> config -> build_model -> runner.fit_model
- tuners.py      Random / Bayesian / Hyperband tuners with MLflow child runs per trial and resume
- progress.py    one line per trial: i/N, hyperparameters, objective, best so far, elapsed, ETA
- distributed.py Keras Tuner's chief/worker protocol (KERASTUNER_* variables), reachability with backoff
- search.py      the search: parent run, tuner, trials, best model restored, exported and registered
"""
