"""envs/*.yaml carry the pip pins of requirements.txt and name what their rules import."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DIST = {"cv2": "opencv-python-headless", "sklearn": "scikit-learn", "skimage": "scikit-image", "yaml": "pyyaml",
        "PIL": "pillow"}
STDLIB = set(sys.stdlib_module_names)


def requirement_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def env_pins(path: Path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return {name.lower(): version for name, version in (p.split("==") for p in pip)}


def rules() -> dict[str, dict[str, str]]:
    """rule name -> {'script': path, 'conda': path} parsed from workflow/rules/*.smk."""
    out = {}
    for smk in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.M)[1:]:
            name = block.split(":")[0].strip()
            info = {}
            for key in ("script", "conda"):
                m = re.search(rf"^\s+{key}:\s*\n\s+\"([^\"]+)\"", block, flags=re.M)
                if m:
                    info[key] = str((smk.parent / m.group(1)).resolve())
            out[name] = info
    return out


def _module_level(tree: ast.Module):
    """Statements run at import time (function bodies excluded: a lazy import there is optional by design)."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            stack.extend(n for n in ast.iter_child_nodes(node) if isinstance(n, ast.stmt))


def third_party_imports(script: Path, seen: set[Path] | None = None) -> set[str]:
    """Top-level third-party imports of a script and, recursively, of the dcgan_repro modules it imports."""
    seen = seen if seen is not None else set()
    if script in seen or not script.exists():
        return set()
    seen.add(script)
    found: set[str] = set()
    for node in _module_level(ast.parse(script.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            top = name.split(".")[0]
            if top == "dcgan_repro":
                parts = name.split(".")
                for n in range(len(parts), 1, -1):
                    mod = REPO.joinpath(*parts[:n]).with_suffix(".py")
                    if mod.exists():
                        found |= third_party_imports(mod, seen)
                        break
            elif top not in STDLIB and top != "snakemake":
                found.add(DIST.get(top, top).lower())
    return found


@pytest.mark.parametrize("env", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_env_pins_agree_with_requirements(env):
    pins = requirement_pins()
    for name, version in env_pins(REPO / "envs" / env).items():
        assert name in pins, f"envs/{env} pins {name}, which requirements.txt does not"
        assert pins[name] == version, f"envs/{env}: {name}=={version} but requirements.txt has {pins[name]}"


def test_every_rule_with_a_script_has_a_conda_env_that_covers_its_imports():
    for name, info in rules().items():
        if "script" not in info:
            continue
        assert "conda" in info, f"rule {name} has no conda: env"
        env = Path(info["conda"])
        assert env.exists(), f"rule {name}: {env} does not exist"
        needed = third_party_imports(Path(info["script"]))
        missing = needed - set(env_pins(env))
        assert not missing, f"rule {name}: {env.name} lacks {sorted(missing)} imported by its script"


def test_env_files_parse_and_pin_everything():
    """Each envs/*.yaml is valid YAML, named, on conda-forge only, with Python and every pip package pinned."""
    used = {Path(info["conda"]).name for info in rules().values() if "conda" in info}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        assert isinstance(env, dict) and set(env) == {"name", "channels", "dependencies"}, path.name
        assert env["name"] == f"dcgan-repro-{path.stem}", f"{path.name}: name {env['name']!r}"
        assert env["channels"] == ["conda-forge", "nodefaults"], f"{path.name}: channels {env['channels']}"
        conda = [d for d in env["dependencies"] if isinstance(d, str)]
        assert any(re.fullmatch(r"python=3\.\d+", d) for d in conda), f"{path.name}: python not pinned: {conda}"
        assert all(re.fullmatch(r"[\w.-]+=[\w.]+", d) for d in conda), f"{path.name}: unpinned conda deps {conda}"
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        assert pip and all(re.fullmatch(r"[\w.-]+==[\w.+]+", p) for p in pip), f"{path.name}: unpinned {pip}"
        assert path.name in used, f"{path.name} is used by no rule"


def _python_of(env: dict) -> str:
    return next(d.split("=")[1] for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))


@pytest.mark.slow
def test_env_pins_resolve_against_the_package_index(tmp_path):
    """`pip install --dry-run` resolves every env's pins (conda cannot run here; pip is how the envs get them).

    Every env pins a subset of requirements.txt at the same versions, so one resolution of the union of the
    envs' pins per Python version (they are all 3.11 today) proves each env's pins are installable together
    without downloading torch three times. Skips, with the reason, when the index cannot be reached."""
    by_python: dict[str, dict[str, str]] = {}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        env = yaml.safe_load(path.read_text())
        by_python.setdefault(_python_of(env), {}).update(env_pins(path))
    for version, pins in by_python.items():
        req = tmp_path / f"pins-py{version}.txt"
        req.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(tmp_path / "report.json"), "-r", str(req)]
        if version != f"{sys.version_info.major}.{sys.version_info.minor}":
            cmd += ["--python-version", version, "--only-binary=:all:"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        out = res.stdout + res.stderr
        if res.returncode != 0 and re.search(r"NewConnectionError|Temporary failure in name resolution|"
                                             r"Network is unreachable|Max retries exceeded|ProxyError", out):
            pytest.skip(f"package index unreachable: {out.strip().splitlines()[-1][:200]}")
        assert res.returncode == 0, f"envs for python {version} do not resolve:\n{out[-3000:]}"
        canonical = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731 (PEP 503: torch_fidelity = torch-fidelity)
        resolved = {canonical(i["metadata"]["name"]): i["metadata"]["version"]
                    for i in json.loads((tmp_path / "report.json").read_text())["install"]}
        for name, pin in pins.items():
            got = resolved.get(canonical(name))
            assert got == pin, f"{name}: pinned {pin}, pip resolved {got}"
