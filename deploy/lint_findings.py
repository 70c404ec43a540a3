"""What deploy/lint_manifests.py and deploy/lint_observability.py share: every check counted,
every failed one recorded as a finding against the file (relative to the repository) it is about.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

findings = []
checks = 0


def rel(path):
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def check(condition, where, message):
    """Counts one check; records a finding when `condition` is false."""
    global checks
    checks += 1
    if not condition:
        findings.append(f"{rel(where)}: {message}")
    return bool(condition)


def report(label="", indent=""):
    """Prints the findings and the count; the exit status: 1 when there is any finding."""
    for finding in findings:
        print(f"{indent}{finding}")
    print(f"{label}{checks} checks, {len(findings)} findings")
    return 1 if findings else 0
