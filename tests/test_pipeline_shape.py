"""Every built-in pipeline has the one shape of pipelines/README.md: the same files for the same roles,
and classes named by one rule, so whoever knows one pipeline knows where everything is in the others."""
from __future__ import annotations

import pytest

from deepsuite.app import registry
from deepsuite.common.export import ExportMetadata
from tests.support.cli import REPO

ROLES = ("__init__.py", "README.md", "config.py", "contract.py", "data.py", "model.py", "evaluation.py",
         "inference.py", "pipeline.py")
BUILT_IN = sorted(p.name for p in (REPO / "pipelines").iterdir() if (p / "pipeline.py").exists())


def test_every_pipeline_folder_is_registered():
    assert len(BUILT_IN) == 7 and {n.replace("-", "_") for n in registry.names()} >= set(BUILT_IN)


@pytest.mark.parametrize("folder", BUILT_IN)
def test_the_same_files_and_names(folder):
    assert [role for role in ROLES if not (REPO / "pipelines" / folder / role).exists()] == []
    pipeline = registry.get(folder.replace("_", "-"))
    camel = "".join(part.capitalize() for part in folder.split("_"))
    assert type(pipeline).__name__ == f"{camel}Pipeline"
    assert type(pipeline).__module__ == f"deepsuite.pipelines.{folder}.pipeline"
    assert pipeline.config_cls.__name__ == f"{camel}Config"
    assert pipeline.config_cls.__module__ == f"deepsuite.pipelines.{folder}.config"
    assert pipeline.metadata_cls.__name__ == f"{camel}Metadata" and issubclass(pipeline.metadata_cls, ExportMetadata)
    assert pipeline.metadata_cls.__module__ == f"deepsuite.pipelines.{folder}.contract"
    sections = {name: field.annotation.__name__ for name, field in pipeline.config_cls.model_fields.items()
                if isinstance(field.annotation, type) and name not in ("seed", "deterministic", "preset")}
    assert sections and all(cls == f"{name.capitalize()}Config" for name, cls in sections.items()), sections
    assert pipeline.commands
    for command in pipeline.commands:
        assert command.options.__module__ == f"deepsuite.pipelines.{folder}.contract"
        assert command.options.__name__ == f"{command.name.capitalize()}Options"
        assert callable(getattr(pipeline, command.handler))
