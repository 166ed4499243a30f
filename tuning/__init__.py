"""Hyperparameter search over any registered pipeline with Keras Tuner, every trial an MLflow run.

- session.py     SearchOptions and SearchSession: one search's definition (pipeline, base config, name,
                 objective, space, budget) and its tuner, built the same way by the chief and every worker
- search.py      run_search: a one-process search or the chief (parent run, resume, best model registered)
- worker.py      run_worker: a distributed worker joins the chief's search and runs the trials it hands out
- space.py       declares a pipeline's search space (its `search_space(hp, config)`), pins values, checks it
- hypermodel.py  the keras_tuner.HyperModel: search space -> config -> build_model -> runner.fit_model
- tuners.py      Random / Bayesian / Hyperband oracles and tuners with MLflow child runs per trial and resume
- trials.py      the MLflow side: one child run per trial under the search's parent run
- progress.py    one line per trial: i/N, hyperparameters, objective, best so far, elapsed, ETA
- distributed.py Keras Tuner's chief/worker protocol (KERASTUNER_* variables), reachability with backoff
- best.py        after the search: the best trial's model restored, evaluated, exported and registered

Imports go one way (search -> worker -> session -> the rest); no two modules here import each other.
"""
