"""Read the Dockerfile and docker-compose.yml the way Docker does, for the deployment tests.

Only what this repo's files use: stages (FROM ... AS, inheriting a previous stage), ARG defaults,
ENV, COPY (with --from), CMD and HEALTHCHECK in exec form; compose interpolation of ${VAR},
${VAR:-default}, ${VAR-default}, ${VAR:?message} and $$, and YAML merge keys.
"""

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"


@dataclass
class Copy:
    sources: list[str]
    destination: str
    from_stage: str | None


@dataclass
class Stage:
    name: str
    base: str
    env: dict[str, str] = field(default_factory=dict)
    copies: list[Copy] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] | None = None
    healthcheck: list[str] | None = None
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    exposed: list[str] = field(default_factory=list)


def _instructions(text: str) -> list[tuple[str, str]]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    out = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def _substitute(value: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value)


def parse_dockerfile(
    path: Path = DOCKERFILE, build_args: Mapping[str, str] | None = None
) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    global_args: dict[str, str] = {}
    stage: Stage | None = None
    args: dict[str, str] = {}
    for keyword, rest in _instructions(path.read_text()):
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else f"stage{len(stages)}"
            parent = stages.get(base)
            stage = Stage(name, base)
            if parent is not None:
                stage.env = dict(parent.env)
                stage.copies = list(parent.copies)
                stage.runs = list(parent.runs)
                stage.cmd, stage.healthcheck = parent.cmd, parent.healthcheck
                stage.healthcheck_options = dict(parent.healthcheck_options)
                stage.user = parent.user
            stages[name] = stage
            args = {}
            continue
        if keyword == "ARG":
            key, _, default = rest.partition("=")
            target = global_args if stage is None else args
            if stage is not None and not default and key in global_args:
                default = global_args[key]  # `ARG NAME` inside a stage re-imports the global default
            target[key] = (build_args or {}).get(key, default)
            continue
        if stage is None:
            continue
        scope = {**global_args, **args, **stage.env}
        if keyword == "ENV":
            for token in shlex.split(rest):
                key, _, value = token.partition("=")
                stage.env[key] = _substitute(value, scope)
        elif keyword == "COPY":
            words = rest.split()
            from_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [_substitute(w, scope) for w in words if not w.startswith("--")]
            stage.copies.append(Copy(paths[:-1], paths[-1], from_stage))
        elif keyword == "RUN":
            stage.runs.append(_substitute(rest, scope))
        elif keyword == "CMD":
            stage.cmd = json.loads(rest)
        elif keyword == "HEALTHCHECK":
            options, _, command = rest.partition("CMD ")
            stage.healthcheck = json.loads(command)
            stage.healthcheck_options = dict(re.findall(r"--([\w-]+)=(\S+)", options))
        elif keyword == "USER":
            stage.user = rest
        elif keyword == "EXPOSE":
            stage.exposed += rest.split()
    return stages


_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


class InterpolationError(ValueError):
    pass


def interpolate(value: Any, environ: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, environ) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, environ) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3) or ""
        present = name in environ
        current = environ.get(name, "")
        if operator == ":-":
            return current if current else argument
        if operator == "-":
            return current if present else argument
        if operator in (":?", "?"):
            if (operator == ":?" and not current) or not present:
                raise InterpolationError(f"{name}: {argument}")
            return current
        return current

    return _VARIABLE.sub(replace, value)


def load_compose(environ: Mapping[str, str], path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as compose sees it: YAML (merge keys resolved), then interpolated."""
    document = yaml.safe_load(path.read_text())
    return {key: interpolate(value, environ) for key, value in document.items() if not key.startswith("x-")}


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}
