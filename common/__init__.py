"""deepsuite's shared toolkit: config, runner, data sources, tracking, reports.

Nothing in here knows about any one domain; pipelines plug in through `common.pipeline.Pipeline`.
"""
