"""Reading a test's MLflow store back: what tests assert against is what a user would see in the UI."""
from __future__ import annotations

import mlflow


def client_for(folder) -> mlflow.MlflowClient:
    """A client on the sqlite store that `deepsuite` creates under <folder>/mlruns."""
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{folder}/mlruns/mlflow.db")


def only_run(folder, experiment: str):
    """(client, run) for the one run of `experiment` in <folder>'s store; fails if there is not exactly one."""
    client = client_for(folder)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {folder}/mlruns"
    runs = client.search_runs([found.experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]
