"""Map the repo's top-level folders under one importable name, `deepsuite` (the rest is in pyproject.toml).

The design keeps `common/`, `pipelines/`, `tuning/` and `app/` at the top of the repo, but installing them
as top-level packages would put generic names (`common`) into site-packages, where another distribution
or a user's own `common/` folder collides with them. So the wheel holds one package, `deepsuite`, a
namespace whose sub-packages come from those folders; new sub-folders are picked up without editing this.
"""
from setuptools import find_packages, setup

FOLDERS = ("common", "pipelines", "tuning", "app")

setup(
    package_dir={f"deepsuite.{folder}": folder for folder in FOLDERS},
    packages=[f"deepsuite.{name}" for name in find_packages(include=[f"{f}*" for f in FOLDERS])],
    package_data={f"deepsuite.{folder}": ["**/*.md"] for folder in FOLDERS},
)
