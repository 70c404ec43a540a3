#!/usr/bin/env python3
"""Consistency checks of wabot's deployment files that schema validation cannot see.

    python3 deploy/lint_manifests.py          # from anywhere; needs PyYAML

Schemas (field names and types) are checked by kubernetes-validate in deploy/lint.sh; this script
checks that the pieces fit together and keep the contract of the design (DESIGN.md §3, §4):
Kubernetes manifests (kustomization, Deployment <-> Service / PDB / HPA selectors and ports, probes on
/health and /ready, grace period >= shutdown timeout + preStop, non-root, read-only root filesystem,
resources, ConfigMap / Secret references and variable names), deploy/docker-compose.yml (services,
Redis durability, health checks, wiring), the Dockerfile's runtime contract and .dockerignore.
Prints one line per finding and exits 1 when there is any.
"""

import re
import sys
import tomllib

import yaml

from lint_findings import ROOT, check, report

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
APP_PORT = 8000
# Variables the binary reads besides the flat ones listed in .env.example.
EXTRA_ENV = {"APP_CONFIG_DIR", "APP_ENV", "RUST_LOG", "RUST_BACKTRACE", "PORT"}
SECRET_NAMES = re.compile(r"(SECRET|TOKEN|PASSWORD|API_KEY)$")

class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path):
    """All documents of a YAML file (None entries dropped), or None after recording a finding."""
    try:
        with open(path, encoding="utf-8") as f:
            return [d for d in yaml.load_all(f, Loader=UniqueKeyLoader) if d is not None]
    except FileNotFoundError:
        check(False, path, "missing")
    except yaml.YAMLError as e:
        check(False, path, f"not valid YAML: {e}")
    return None


def dig(obj, *keys, default=None):
    for k in keys:
        if isinstance(obj, dict) and k in obj:
            obj = obj[k]
        elif isinstance(obj, list) and isinstance(k, int) and -len(obj) <= k < len(obj):
            obj = obj[k]
        else:
            return default
    return obj


def subset(small, big):
    return isinstance(small, dict) and bool(small) and all(big.get(k) == v for k, v in small.items())


def known_env_names():
    names = set(EXTRA_ENV)
    example = ROOT / ".env.example"
    if check(example.is_file(), example, "missing (the list of known variables)"):
        for line in example.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*([A-Z][A-Z0-9_]*)=", line)
            if m:
                names.add(m.group(1))
    return names


def env_name_ok(name, known):
    return name in known or re.fullmatch(r"WABOT_[A-Z0-9]+(__[A-Z0-9_]+)+", name) is not None


def shutdown_timeout_secs():
    try:
        with open(ROOT / "config" / "default.toml", "rb") as f:
            return int(tomllib.load(f)["server"]["shutdown_timeout_secs"])
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError):
        return 25


# ---------------------------------------------------------------------------------------- Kubernetes
def lint_k8s(known_env):
    kust_path = K8S / "kustomization.yaml"
    kust = load_yaml(kust_path)
    if not kust:
        return
    kust = kust[0]
    check(kust.get("kind") == "Kustomization", kust_path, "kind is not Kustomization")
    resources = kust.get("resources") or []
    check(bool(resources), kust_path, "lists no resources")
    listed = set()
    for r in resources:
        if check((K8S / r).is_file(), kust_path, f"resource {r} does not exist"):
            listed.add((K8S / r).resolve())
    check("secret.example.yaml" not in resources, kust_path, "must not list secret.example.yaml")
    for f in sorted(K8S.glob("*.y*ml")):
        if f.name not in ("kustomization.yaml", "secret.example.yaml"):
            check(f.resolve() in listed, kust_path, f"does not list {f.name}")

    docs = {}  # kind -> [(path, doc)]
    for f in sorted(K8S.glob("*.y*ml")):
        if f.name == "kustomization.yaml":
            continue
        for doc in load_yaml(f) or []:
            ok = check(isinstance(doc, dict), f, "a document is not a mapping")
            ok = ok and check(bool(doc.get("apiVersion")), f, "apiVersion missing")
            ok = ok and check(bool(doc.get("kind")), f, "kind missing")
            ok = ok and check(bool(dig(doc, "metadata", "name")), f, f"{doc.get('kind')}: metadata.name missing")
            if ok:
                docs.setdefault(doc["kind"], []).append((f, doc))
    for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
        check(len(docs.get(kind, [])) == 1, K8S, f"expected exactly one {kind}, found {len(docs.get(kind, []))}")
    for kind, items in docs.items():
        if kind == "Secret":
            for f, _ in items:
                check(f.name == "secret.example.yaml", f, "a Secret outside secret.example.yaml (keep secrets out of git)")
    if len(docs.get("Deployment", [])) != 1:
        return

    dpath, dep = docs["Deployment"][0]
    check(dep["apiVersion"] == "apps/v1", dpath, "Deployment apiVersion is not apps/v1")
    check(dig(dep, "spec", "replicas", default=1) >= 2, dpath, "fewer than 2 replicas")
    selector = dig(dep, "spec", "selector", "matchLabels") or {}
    pod_labels = dig(dep, "spec", "template", "metadata", "labels") or {}
    check(subset(selector, pod_labels), dpath, "spec.selector.matchLabels do not match the template labels")
    pod = dig(dep, "spec", "template", "spec") or {}
    containers = pod.get("containers") or []
    wabot = next((c for c in containers if c.get("name") == "wabot"), None)
    if not check(wabot is not None, dpath, "no container named wabot"):
        return
    check(bool(wabot.get("image")), dpath, "container image missing")
    ports = wabot.get("ports") or []
    port_by_name = {p.get("name"): p.get("containerPort") for p in ports if p.get("name")}
    check(any(p.get("containerPort") == APP_PORT for p in ports), dpath, f"no containerPort {APP_PORT}")

    def resolves_to_app_port(port):
        return port == APP_PORT or port_by_name.get(port) == APP_PORT

    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready"), ("startupProbe", "/health")):
        p = wabot.get(probe)
        if probe == "startupProbe" and p is None:
            continue
        if check(p is not None, dpath, f"{probe} missing"):
            check(dig(p, "httpGet", "path") == path, dpath, f"{probe} must GET {path}")
            check(resolves_to_app_port(dig(p, "httpGet", "port")), dpath, f"{probe} port is not the app port {APP_PORT}")

    # Grace period: SIGTERM comes after preStop; the app then needs up to shutdown_timeout_secs.
    pre_stop = dig(wabot, "lifecycle", "preStop") or {}
    sleep_secs = None
    if "sleep" in pre_stop:
        sleep_secs = dig(pre_stop, "sleep", "seconds")
    cmd = dig(pre_stop, "exec", "command") or []
    if len(cmd) >= 2 and cmd[0].rsplit("/", 1)[-1] == "sleep":
        try:
            sleep_secs = float(cmd[1])
        except ValueError:
            sleep_secs = None
    check(sleep_secs is not None and sleep_secs > 0, dpath, "no preStop sleep hook")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    needed = shutdown_timeout_secs() + (sleep_secs or 0)
    check(grace > needed, dpath, f"terminationGracePeriodSeconds {grace} must exceed shutdown timeout + preStop ({needed:g} s)")

    res = wabot.get("resources") or {}
    for section in ("requests", "limits"):
        for r in ("cpu", "memory"):
            check(dig(res, section, r) is not None, dpath, f"resources.{section}.{r} missing")

    psc = pod.get("securityContext") or {}
    csc = wabot.get("securityContext") or {}
    check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, dpath, "runAsNonRoot is not true")
    check(csc.get("runAsUser", psc.get("runAsUser", 1)) != 0, dpath, "runAsUser is 0")
    check(csc.get("readOnlyRootFilesystem") is True, dpath, "readOnlyRootFilesystem is not true")
    check(csc.get("allowPrivilegeEscalation") is False, dpath, "allowPrivilegeEscalation is not false")
    check("ALL" in (dig(csc, "capabilities", "drop") or []), dpath, "capabilities are not dropped (drop: [ALL])")
    volumes = {v.get("name") for v in pod.get("volumes") or []}
    for m in wabot.get("volumeMounts") or []:
        check(m.get("name") in volumes, dpath, f"volumeMount {m.get('name')} has no volume")

    # envFrom: a ConfigMap of this bundle and the Secret described by secret.example.yaml.
    env_from = wabot.get("envFrom") or []
    cm_refs = [dig(e, "configMapRef", "name") for e in env_from if "configMapRef" in e]
    secret_refs = [dig(e, "secretRef", "name") for e in env_from if "secretRef" in e]
    cms = {d["metadata"]["name"]: (f, d) for f, d in docs.get("ConfigMap", [])}
    secrets = {d["metadata"]["name"]: (f, d) for f, d in docs.get("Secret", [])}
    check(bool(cm_refs), dpath, "envFrom has no configMapRef")
    check(bool(secret_refs), dpath, "envFrom has no secretRef")
    for name in cm_refs:
        check(name in cms, dpath, f"envFrom ConfigMap {name} is not in the bundle")
    for name in secret_refs:
        check(name in secrets, dpath, f"envFrom Secret {name} has no example in secret.example.yaml")
    for e in wabot.get("env") or []:
        check(env_name_ok(e.get("name", ""), known_env), dpath, f"unknown variable {e.get('name')}")
    for name, (f, cm) in cms.items():
        data = cm.get("data") or {}
        for k, v in data.items():
            check(env_name_ok(k, known_env), f, f"unknown variable {k}")
            check(isinstance(v, str), f, f"{k}: ConfigMap values must be strings")
            check(not SECRET_NAMES.search(k), f, f"{k} looks secret: put it in the Secret")
        check(str(data.get("PORT", APP_PORT)) == str(APP_PORT), f, f"PORT must be {APP_PORT} (the container port)")
    for name, (f, sec) in secrets.items():
        values = {**(sec.get("data") or {}), **(sec.get("stringData") or {})}
        for k in ("WHATSAPP_APP_SECRET", "WHATSAPP_VERIFY_TOKEN", "WHATSAPP_ACCESS_TOKEN"):
            check(k in values, f, f"{k} missing from the example Secret")
        for k in values:
            check(env_name_ok(k, known_env), f, f"unknown variable {k}")

    for spath, svc in docs.get("Service", []):
        sel = dig(svc, "spec", "selector") or {}
        check(subset(sel, pod_labels), spath, "Service selector does not match the Deployment's pod labels")
        sports = dig(svc, "spec", "ports") or []
        check(any(p.get("port") == 80 for p in sports), spath, "no Service port 80")
        for p in sports:
            check(resolves_to_app_port(p.get("targetPort", p.get("port"))), spath,
                  f"Service port {p.get('port')} does not target container port {APP_PORT}")

    replicas = dig(dep, "spec", "replicas", default=1)
    for ppath, pdb in docs.get("PodDisruptionBudget", []):
        check(pdb["apiVersion"] == "policy/v1", ppath, "PDB apiVersion is not policy/v1")
        sel = dig(pdb, "spec", "selector", "matchLabels") or {}
        check(subset(sel, pod_labels), ppath, "PDB selector does not match the Deployment's pod labels")
        min_available = dig(pdb, "spec", "minAvailable")
        check(min_available is not None or dig(pdb, "spec", "maxUnavailable") is not None, ppath,
              "neither minAvailable nor maxUnavailable")
        if isinstance(min_available, int):
            check(min_available < replicas, ppath, "minAvailable >= replicas blocks every node drain")

    for hpath, hpa in docs.get("HorizontalPodAutoscaler", []):
        check(hpa["apiVersion"] == "autoscaling/v2", hpath, "HPA apiVersion is not autoscaling/v2")
        ref = dig(hpa, "spec", "scaleTargetRef") or {}
        check(ref.get("kind") == "Deployment" and ref.get("name") == dep["metadata"]["name"]
              and ref.get("apiVersion") == "apps/v1", hpath, "scaleTargetRef is not the Deployment")
        check(dig(hpa, "spec", "minReplicas", default=1) >= 2, hpath, "minReplicas below 2 (PDB would block drains)")
        check(dig(hpa, "spec", "maxReplicas", default=0) >= dig(hpa, "spec", "minReplicas", default=1), hpath,
              "maxReplicas < minReplicas")
        cpu = [m for m in dig(hpa, "spec", "metrics", default=[]) or []
               if m.get("type") == "Resource" and dig(m, "resource", "name") == "cpu"]
        check(bool(cpu), hpath, "no CPU metric")
        check(dig(res, "requests", "cpu") is not None, dpath, "the HPA's CPU utilisation needs resources.requests.cpu")


# ---------------------------------------------------------------------------------------- compose
def lint_compose(known_env):
    docs = load_yaml(COMPOSE)
    if not docs:
        return
    c = docs[0]
    services = c.get("services") or {}
    for name in ("wabot", "redis"):
        check(name in services, COMPOSE, f"service {name} missing")
    if "wabot" not in services or "redis" not in services:
        return
    w, r = services["wabot"], services["redis"]

    context = (COMPOSE.parent / (dig(w, "build", "context") or ".")).resolve()
    dockerfile = dig(w, "build", "dockerfile") or "Dockerfile"
    check((context / dockerfile).is_file(), COMPOSE, f"wabot build: {context / dockerfile} not found")
    env_files = w.get("env_file") or []
    env_files = [env_files] if isinstance(env_files, (str, dict)) else env_files
    env_files = [e.get("path") if isinstance(e, dict) else e for e in env_files]
    check(".env" in env_files, COMPOSE, "wabot: env_file .env missing")
    env = w.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
    for k in env:
        check(env_name_ok(k, known_env), COMPOSE, f"wabot: unknown variable {k}")
    redis_url = str(env.get("REDIS_URL", ""))
    check(re.match(r"^redis://([^@/]*@)?redis(:6379)?(/\d+)?$", redis_url) is not None, COMPOSE,
          f"wabot: REDIS_URL {redis_url!r} does not point at the redis service")
    port = str(env.get("PORT", APP_PORT))
    check(any(str(p).split(":")[-1].split("/")[0] == port for p in w.get("ports") or []), COMPOSE,
          f"wabot: no published port maps to container port {port}")
    dep = w.get("depends_on") or {}
    check(isinstance(dep, dict) and dig(dep, "redis", "condition") == "service_healthy", COMPOSE,
          "wabot: depends_on redis with condition service_healthy missing")
    test = dig(w, "healthcheck", "test") or []
    test = " ".join(test) if isinstance(test, list) else str(test)
    check("wabot" in test and "healthcheck" in test, COMPOSE, "wabot: healthcheck does not run `wabot healthcheck`")
    check(w.get("restart") in ("always", "unless-stopped", "on-failure"), COMPOSE, "wabot: no restart policy")
    grace = str(w.get("stop_grace_period", "10s"))
    m = re.fullmatch(r"(\d+)s", grace)
    check(m is not None and int(m.group(1)) > shutdown_timeout_secs(), COMPOSE,
          f"wabot: stop_grace_period {grace} must exceed the shutdown timeout ({shutdown_timeout_secs()} s)")

    check(re.match(r"^(docker\.io/(library/)?)?redis:7(\.\d+)*(-[a-z0-9.]+)?$", str(r.get("image", ""))) is not None,
          COMPOSE, f"redis: image {r.get('image')!r} is not Redis 7")
    cmd = r.get("command") or []
    cmd = " ".join(cmd) if isinstance(cmd, list) else str(cmd)
    check(re.search(r"--appendonly\s+yes", cmd) is not None, COMPOSE, "redis: --appendonly yes missing")
    check(re.search(r"--maxmemory-policy\s+noeviction", cmd) is not None, COMPOSE,
          "redis: --maxmemory-policy noeviction missing")
    check(dig(r, "healthcheck", "test") is not None, COMPOSE, "redis: healthcheck missing")
    check(r.get("restart") in ("always", "unless-stopped", "on-failure"), COMPOSE, "redis: no restart policy")
    named = set((c.get("volumes") or {}).keys())
    mounts = [str(v).split(":") for v in r.get("volumes") or []]
    data = [m for m in mounts if len(m) >= 2 and m[1] == "/data"]
    check(bool(data) and data[0][0] in named, COMPOSE, "redis: /data is not a named volume")


# ---------------------------------------------------------------------------------------- Dockerfile
def lint_dockerfile():
    path = ROOT / "Dockerfile"
    if not check(path.is_file(), path, "missing"):
        return
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    stages = []
    for l in lines:
        if l.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(l)
    if not check(bool(stages), path, "no FROM"):
        return
    final = stages[-1]

    def instr(name):
        return [l[len(name):].strip() for l in final if l.upper().startswith(name + " ")]

    users = instr("USER")
    check(bool(users) and users[-1].split(":")[0] not in ("0", "root"), path, "final stage runs as root (no USER)")
    check(any(re.search(r"\b8000\b", e) for e in instr("EXPOSE")), path, "EXPOSE 8000 missing")
    check(any("healthcheck" in h for h in instr("HEALTHCHECK")), path, "HEALTHCHECK with `wabot healthcheck` missing")
    check(instr("ENTRYPOINT") == ['["/usr/local/bin/wabot"]'], path, 'ENTRYPOINT ["/usr/local/bin/wabot"] missing')
    check(instr("CMD") == ['["serve"]'], path, 'CMD ["serve"] missing')
    check(instr("WORKDIR")[-1:] == ["/app"], path, "WORKDIR /app missing (config/ is found relative to it)")
    check(any("APP_CONFIG_DIR=/app/config" in e for e in instr("ENV")), path, "ENV APP_CONFIG_DIR=/app/config missing")
    check(any("SIGTERM" in s for s in instr("STOPSIGNAL")), path, "STOPSIGNAL SIGTERM missing")
    check(any("--locked" in l and "cargo build" in l for l in lines), path, "no `cargo build --locked`")

    ignore = ROOT / ".dockerignore"
    if check(ignore.is_file(), ignore, "missing"):
        entries = [l.strip() for l in ignore.read_text(encoding="utf-8").splitlines()
                   if l.strip() and not l.strip().startswith("#")]
        allow_list = "*" in entries
        for needed in ("target", ".git", ".env"):
            check(allow_list and not any(e.lstrip("!").strip("/") == needed and e.startswith("!") for e in entries)
                  or any(e.strip("/").endswith(needed) for e in entries if not e.startswith("!")),
                  ignore, f"{needed} is not excluded from the build context")


def main():
    known_env = known_env_names()
    lint_k8s(known_env)
    lint_compose(known_env)
    lint_dockerfile()
    return report("manifest checks: ", indent="  ")


if __name__ == "__main__":
    sys.exit(main())
