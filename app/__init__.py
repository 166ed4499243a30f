"""The application layer: the `deepsuite` command, the scoring server, the MLflow UI and team server,
run comparison and inference-command dispatch. It sits above the toolkit (`deepsuite.common`), the
pipelines and tuning; nothing below imports it."""
