"""The installed environment and the project's dependency declarations.

A ``.pth`` file in site-packages runs code at every interpreter start: the compromised
litellm 1.82.7 / 1.82.8 releases shipped one (``litellm_init.pth``) that stole credentials.
So any ``.pth`` file other than the few known ones fails the suite, and so does a ``.pth``
line that runs code other than the known hooks.
"""

from __future__ import annotations

import re
import site
import sys
import sysconfig
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]

#: file name pattern -> the code its ``import`` lines may run
KNOWN_PTH = {
    r"distutils-precedence\.pth": "_distutils_hack",  # setuptools
    r"__editable__\.warden-[0-9.]+\.pth": "__editable___warden_",  # this project, installed -e
    r"__editable___warden_[0-9_]+_finder\.pth": "__editable___warden_",
    r"_virtualenv\.pth": "_virtualenv",  # virtualenv-made environments
}
COMPROMISED = {"litellm": {Version("1.82.7"), Version("1.82.8")}}


def site_dirs() -> list[Path]:
    dirs = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"], *site.getsitepackages()}
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    return sorted(Path(d) for d in dirs if Path(d).is_dir())


def pth_problems(folder: Path) -> list[str]:
    problems = []
    for pth in sorted(folder.glob("*.pth")):
        known = next((code for pattern, code in KNOWN_PTH.items() if re.fullmatch(pattern, pth.name)), None)
        if known is None:
            problems.append(f"unexpected {pth}")
            continue
        for line in pth.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith(("import ", "import\t")) and known not in line:
                problems.append(f"{pth} runs unexpected code: {line[:120]}")
    return problems


def test_no_unexpected_pth_file_in_the_environment() -> None:
    assert sys.prefix != sys.base_prefix or site_dirs(), "no site-packages found"
    problems = [p for d in site_dirs() for p in pth_problems(d)]
    assert problems == []


def test_the_pth_check_catches_a_planted_file(tmp_path: Path) -> None:
    (tmp_path / "distutils-precedence.pth").write_text("import os; __import__('_distutils_hack')\n")
    assert pth_problems(tmp_path) == []
    (tmp_path / "litellm_init.pth").write_text("import base64; exec(base64.b64decode('cHJpbnQoMSk='))\n")
    (tmp_path / "__editable__.warden-0.1.0.pth").write_text("import os; os.system('curl evil')\n")
    problems = pth_problems(tmp_path)
    assert any("unexpected" in p and "litellm_init.pth" in p for p in problems)
    assert any("runs unexpected code" in p for p in problems)


def runtime_requirements() -> list[Requirement]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(r) for r in data["project"]["dependencies"]]


def test_every_runtime_dependency_has_a_lower_bound() -> None:
    missing = [str(r) for r in runtime_requirements() if not any(s.operator in (">=", "==", "~=") for s in r.specifier)]
    assert missing == []


def test_compromised_releases_are_excluded() -> None:
    for req in runtime_requirements():
        for bad in COMPROMISED.get(req.name, ()):
            assert bad not in req.specifier, f"{req} allows the compromised {req.name} {bad}"


def test_installed_versions_are_not_compromised_and_meet_the_bounds() -> None:
    from importlib.metadata import PackageNotFoundError, version

    for req in runtime_requirements():
        try:
            installed = Version(version(req.name))
        except PackageNotFoundError:
            continue
        assert installed not in COMPROMISED.get(req.name, set())
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} outside {req}"


DEV_TOOLS = {"pytest", "pytest-asyncio", "pytest-timeout", "pytest-xdist", "mypy", "ruff", "hypothesis", "schemathesis"}
_PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)")


def pins(lock: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of --hash lines) of a `uv pip compile --generate-hashes` file."""
    found: dict[str, tuple[str, int]] = {}
    current = None
    for line in lock.read_text(encoding="utf-8").splitlines():
        if m := _PIN.match(line):
            current = m.group(1).lower().replace("_", "-")
            found[current] = (m.group(2), 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, hashes = found[current]
            found[current] = (version, hashes + 1)
    return found


def test_locks_carry_hashes_and_the_runtime_lock_no_dev_tools() -> None:
    runtime, dev = pins(REPO / "requirements.lock"), pins(REPO / "requirements-dev.lock")
    assert runtime and dev
    assert [n for n, (_, h) in {**runtime, **dev}.items() if h == 0] == []
    assert DEV_TOOLS.isdisjoint(runtime), "test or lint tools in the runtime lock (the Docker image)"
    assert set(dev) >= DEV_TOOLS
    assert {n: v for n, (v, _) in runtime.items() if dev.get(n, (v,))[0] != v} == {}, "dev lock drifts"
    for name, bad in COMPROMISED.items():
        assert Version(runtime[name][0]) not in bad


def test_the_image_installs_only_the_hashed_runtime_lock() -> None:
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("--require-hashes -r requirements.lock" in line for line in installs)
    assert "requirements-dev" not in dockerfile
    assert not any(tool in dockerfile for tool in DEV_TOOLS)


# -- what the code imports against what the project declares ---------------------------------

PACKAGES = ("gateway", "policies", "audit", "dashboard")
TRAINING = REPO / "policies" / "training"
#: declared for a reason other than an import of their own name
NOT_IMPORTED = {
    "opentelemetry-exporter-otlp": "a meta package: audit.telemetry imports its -proto-grpc and -proto-http halves",
}


def _name(requirement: str) -> str:
    return Requirement(requirement).name.lower().replace("_", "-").replace(".", "-")


def project() -> dict[str, list[str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {"": data["dependencies"], **data.get("optional-dependencies", {})}


def requirement_lines(path: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def imports_of(path: Path) -> set[str]:
    """Top-level modules a file imports, ``importlib.import_module("literal")`` included."""
    import ast

    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value.split(".")[0])
    return found - set(sys.stdlib_module_names) - {*PACKAGES, "__future__"}


def third_party_imports() -> dict[str, set[Path]]:
    out: dict[str, set[Path]] = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for module in imports_of(path):
                out.setdefault(module, set()).add(path)
    return out


def test_requirements_in_is_the_core_of_pyproject() -> None:
    """The Docker image's lock is made from requirements.in: it must say what pyproject says."""
    assert sorted(requirement_lines(REPO / "requirements.in")) == sorted(project()[""])


def test_the_dev_lock_covers_every_extra() -> None:
    dev = set(requirement_lines(REPO / "requirements-dev.in"))
    extras = {r for name, reqs in project().items() if name for r in reqs}
    assert extras - dev == set()


def test_every_extra_has_a_lower_bound_and_excludes_compromised_releases() -> None:
    for name, reqs in project().items():
        for text in reqs:
            req = Requirement(text)
            assert any(s.operator in (">=", "==", "~=") for s in req.specifier), f"[{name}] {text}"
            for bad in COMPROMISED.get(req.name, ()):
                assert bad not in req.specifier, f"[{name}] {text} allows {bad}"


def test_every_imported_module_is_declared() -> None:
    from importlib.metadata import packages_distributions

    dists = packages_distributions()
    declared = {_name(r) for reqs in project().values() for r in reqs}
    training = {_name(r) for r in requirement_lines(TRAINING / "requirements-train.txt")}
    undeclared = {}
    for module, files in third_party_imports().items():
        candidates = {_name(d) for d in dists.get(module, [module])}
        allowed = declared | (training if all(TRAINING in f.parents for f in files) else set())
        if not candidates & allowed:
            undeclared[module] = sorted(str(f.relative_to(REPO)) for f in files)
    assert undeclared == {}


def test_every_core_dependency_is_imported() -> None:
    from importlib.metadata import packages_distributions

    imported = {_name(d) for module in third_party_imports() for d in packages_distributions().get(module, [module])}
    unused = [r for r in project()[""] if _name(r) not in imported and _name(r) not in NOT_IMPORTED]
    assert unused == []
