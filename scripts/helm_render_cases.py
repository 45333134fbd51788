"""Render helm/gemma4-serve for every case and compare with an earlier render: proof that a template refactor is a move.

    python3 scripts/helm_render_cases.py write DIR     render every case into DIR (one file per case and output)
    python3 scripts/helm_render_cases.py compare DIR   render again; exit 1 unless every output is byte-identical

A case is the chart's defaults, each `ci/*-values.yaml`, and each profile of deploy/profiles forced by name
(`--set-string serving.profile=NAME`, named `profile-NAME` like the ci files that once held them). Each case
gives four outputs: `helm template` with Helm 4 and with Helm 3, and NOTES.txt (from `helm install
--dry-run=client`). The refusals of tests/contract/test_helm_values.py add one output each: Helm's stderr,
VALUES VALIDATION messages byte for byte, schema refusals listed apart (the schema is generated, so Helm's
wording of a refusal may change; the tests hold each refusal to the words it must name).

Run it with the dev venv's `helm` on PATH and HELM3 set to Helm 3 (`$HELM_TOOLS_BIN/helm3`), from the
repository root with PYTHONPATH=. (it reads the profile list and the refusal cases from the checkout).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "gemma4-serve"
PROFILES = REPO / "deploy" / "profiles"
BASE = ["template", "gemma4", str(CHART), "--namespace", "llm"]


def cases() -> dict[str, list[str]]:
    """Case name -> the values arguments Helm gets."""
    out: dict[str, list[str]] = {"defaults": []}
    for path in sorted(CHART.glob("ci/*-values.yaml")):
        out[path.name.removesuffix("-values.yaml")] = ["-f", str(path)]
    for path in sorted(PROFILES.glob("*.yaml")):
        # The name a ci file forcing this profile had; rendering the same profile twice would prove nothing new.
        out.setdefault(f"profile-{path.stem}", ["--set-string", f"serving.profile={path.stem}"])
        out[f"profile-{path.stem}-by-name"] = ["--set-string", f"serving.profile={path.stem}"]
    return out


def refusals(tmp: Path) -> dict[str, list[str]]:
    """`validation-<case>` and `schema-<case>` -> values arguments, from the chart's refusal tests."""
    sys.path.insert(0, str(REPO))
    from tests.contract.test_helm_values import COMBINATIONS, SCHEMA_VIOLATIONS

    out = {}
    for kind, table in (("validation", COMBINATIONS), ("schema", SCHEMA_VIOLATIONS)):
        for name, (values, _) in table.items():
            path = tmp / f"{kind}-{name.replace(' ', '-')}.yaml"
            path.write_text(yaml.safe_dump(values))
            out[path.stem] = ["-f", str(path)]
    return out


def run(argv: list[str]) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``argv``."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def notes(args: list[str]) -> str:
    """NOTES.txt as `helm install --dry-run=client` renders it (the part after `NOTES:`)."""
    code, out, err = run(["helm", "install", "gemma4", str(CHART), "--namespace", "llm", "--dry-run=client", *args])
    if code != 0:
        return f"exit {code}\n{err}"
    return out.split("\nNOTES:\n", 1)[1]


def render_all() -> dict[str, str]:
    """Output file name -> content, for every case and refusal."""
    helm3 = os.environ.get("HELM3", "helm3")
    jobs: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as pool:
        for name, args in cases().items():
            jobs[f"{name}.helm4.yaml"] = pool.submit(run, ["helm", *BASE, *args])
            jobs[f"{name}.helm3.yaml"] = pool.submit(run, [helm3, *BASE, *args])
            jobs[f"{name}.notes.txt"] = pool.submit(notes, args)
        for name, args in refusals(Path(tmp)).items():
            jobs[f"{name}.stderr.txt"] = pool.submit(run, ["helm", *BASE, *args])
        results = {key: job.result() for key, job in jobs.items()}  # type: ignore[attr-defined]
    out = {}
    for key, result in results.items():
        if isinstance(result, str):
            out[key] = result
            continue
        code, stdout, stderr = result
        if key.endswith(".stderr.txt"):
            assert code != 0, f"{key}: rendered, but the tests say it must be refused"
            out[key] = stderr
        else:
            assert code == 0, f"{key}: {stderr}"
            out[key] = stdout
    return out


def main(argv: list[str]) -> int:
    """Entry point; see the module docstring."""
    if len(argv) != 2 or argv[0] not in ("write", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, folder = argv[0], Path(argv[1])
    rendered = render_all()
    if mode == "write":
        folder.mkdir(parents=True, exist_ok=True)
        for key, text in rendered.items():
            (folder / key).write_text(text)
        print(f"wrote {len(rendered)} outputs of {len(cases())} cases to {folder}")
        return 0
    before = {p.name: p.read_text() for p in folder.iterdir()}
    same = [k for k in rendered if before.get(k) == rendered[k]]
    gone = sorted(set(before) - set(rendered))
    changed = sorted(k for k in rendered if k in before and before[k] != rendered[k])
    new = sorted(set(rendered) - set(before))
    hard = [k for k in changed if not k.startswith("schema-")]
    print(f"{len(same)} of {len(rendered)} outputs byte-identical ({sum(len(rendered[k]) for k in same)} bytes)")
    for title, keys in (("missing now", gone), ("new", new), ("different", hard)):
        if keys:
            print(f"{title}: {', '.join(keys)}")
    for key in (k for k in changed if k.startswith("schema-")):
        print(f"schema refusal worded differently: {key}")
        print(f"  before: {before[key].strip()}\n  after:  {rendered[key].strip()}")
    return 1 if gone or hard else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
