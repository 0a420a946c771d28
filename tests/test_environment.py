"""The two install routes (pip via pyproject.toml, conda via environment.yml) must not drift."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: conda package name -> PyPI name, where they differ.
CONDA_TO_PYPI = {"pytorch": "torch"}
#: conda-only entries that are not Python requirements of t2ilib.
CONDA_ONLY = {"python", "pip"}


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0].lower()


def _spec(requirement: str) -> str:
    return re.sub(r"\s", "", requirement.split(";")[0])[len(_name(requirement)):]


def pyproject_requirements(repo: Path) -> dict[str, str]:
    project = tomllib.loads((repo / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    # Back-ports for older Pythons (markers) are not needed by conda's python=3.11.
    return {_name(r): _spec(r) for r in reqs if "python_version" not in r}


def conda_requirements(repo: Path) -> tuple[dict[str, str], list[str]]:
    env = yaml.safe_load((repo / "environment.yml").read_text())
    conda, pip = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += dep.get("pip", [])
            continue
        name = _name(dep)
        if name not in CONDA_ONLY:
            conda[CONDA_TO_PYPI.get(name, name)] = _spec(dep)
    return conda, pip


def test_environment_yml_names_the_same_packages_as_pyproject(repo: Path):
    conda, _ = conda_requirements(repo)
    pip = pyproject_requirements(repo)
    assert sorted(conda) == sorted(pip), (
        f"only in environment.yml: {sorted(set(conda) - set(pip))}; "
        f"only in pyproject.toml: {sorted(set(pip) - set(conda))}")
    differing = {n: (conda[n], pip[n]) for n in pip if conda[n] != pip[n]}
    assert not differing, f"version ranges differ (environment.yml, pyproject.toml): {differing}"


def test_environment_yml_installs_the_package_with_dev_extras(repo: Path):
    env = yaml.safe_load((repo / "environment.yml").read_text())
    _, pip = conda_requirements(repo)
    assert env["name"] == "t2i-course"
    assert "python=3.11" in env["dependencies"]
    assert pip == ["-e .[dev]"]


def test_torch_ranges_admit_the_course_versions(repo: Path):
    from packaging.specifiers import SpecifierSet

    pip = pyproject_requirements(repo)
    assert "2.14.1" in SpecifierSet(pip["torch"])
    assert "0.29.1" in SpecifierSet(pip["torchvision"])


def test_the_drift_check_can_fail(tmp_path: Path, repo: Path):
    for name in ("pyproject.toml", "environment.yml"):
        (tmp_path / name).write_text((repo / name).read_text())
    text = (tmp_path / "pyproject.toml").read_text().replace('"nltk>=3.8",', '"nltk>=3.9",')
    (tmp_path / "pyproject.toml").write_text(text)
    conda, _ = conda_requirements(tmp_path)
    assert conda["nltk"] != pyproject_requirements(tmp_path)["nltk"]
