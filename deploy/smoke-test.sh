#!/usr/bin/env bash
# Smoke test of the container image: builds it with podman, runs it next to a private redis-server and
# a fake Graph API (deploy/fake_graph_api.py), and checks the HTTP surface, one signed webhook end to
# end (the echo reply reaches the fake Graph API), the non-root user, the HEALTHCHECK, the baked
# config, a graceful SIGTERM stop and the image size. Cleans up after itself; exits non-zero on any
# failure.
#
#   bash deploy/smoke-test.sh                 # build localhost/wabot:dev, then test it
#   SKIP_BUILD=1 bash deploy/smoke-test.sh    # test an image already built
#   IMAGE=registry.example.com/wabot:1.2.3 SKIP_BUILD=1 bash deploy/smoke-test.sh
#
# Needs: podman, redis-server + redis-cli, python3, curl. Containers use --network host (the sandbox
# this was written on has no bridge networking; it also keeps the test free of port mappings).
# Without a registry, run ../shared/tools/local-images once first (it provides the base images).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/wabot:dev}
SKIP_BUILD=${SKIP_BUILD:-0}
MAX_IMAGE_BYTES=${MAX_IMAGE_BYTES:-100000000}   # 100 MB, as `podman images` counts
REPLY_TIMEOUT=${REPLY_TIMEOUT:-20}              # seconds for the echo reply to reach the fake Graph API
STOP_TIMEOUT=${STOP_TIMEOUT:-30}                # podman stop -t; server.shutdown_timeout_secs is 25

for tool in podman redis-server redis-cli python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "smoke-test: $tool is required" >&2; exit 2; }
done

work=$(mktemp -d /tmp/wabot-smoke.XXXXXX)
suffix="$$-$RANDOM"
name="wabot-smoke-$suffix"
rules_name="wabot-smoke-rules-$suffix"
redis_pid=""
graph_pid=""
passed=0
failed=0

log() { printf 'smoke-test: %s\n' "$*"; }
pass() { passed=$((passed + 1)); printf '  ok    %s\n' "$*"; }
fail() { failed=$((failed + 1)); printf '  FAIL  %s\n' "$*"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
    for c in "$name" "$rules_name"; do
      if podman container exists "$c" 2>/dev/null; then
        echo "---- logs of $c (last 40 lines)"
        podman logs --tail 40 "$c" 2>&1 || true
      fi
    done
    # podman's own messages (without systemd it cannot schedule HEALTHCHECK timers and says so).
    [ -s "$work/podman.log" ] && { echo "---- podman"; tail -10 "$work/podman.log"; }
    [ -s "$work/graph.log" ] && { echo "---- fake Graph API log"; tail -20 "$work/graph.log"; }
    [ -s "$work/redis.log" ] && { echo "---- redis log"; tail -10 "$work/redis.log"; }
  fi
  for c in "$name" "$rules_name"; do
    podman rm --force --ignore --time 0 "$c" >/dev/null 2>&1 || true
  done
  for pid in $graph_pid $redis_pid; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_for SECONDS CMD...: retries CMD every 0.25 s until it succeeds or SECONDS pass.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" || true; }

# ------------------------------------------------------------------------------------------ build
if [ "$SKIP_BUILD" != 1 ]; then
  log "building $IMAGE (podman build; the first build compiles every dependency)..."
  # --format docker: the OCI format has no HEALTHCHECK, podman would drop it.
  build_args=(--pull=never --network host --format docker -t "$IMAGE")
  if [ -r /etc/ssl/certs/ca-certificates.crt ]; then
    build_args+=(-v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
  fi
  started=$SECONDS
  if ! podman build "${build_args[@]}" . >"$work/build.log" 2>&1; then
    tail -40 "$work/build.log"
    log "image build failed"
    exit 1
  fi
  log "built in $((SECONDS - started)) s"
fi
podman image exists "$IMAGE" || { log "image $IMAGE not found"; exit 1; }

# ------------------------------------------------------------------------------------------ image
log "image checks ($IMAGE)"
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
size_mb=$(python3 -c "print(f'{$size / 1e6:.1f}')")
if [ "$size" -lt "$MAX_IMAGE_BYTES" ]; then
  pass "image size ${size_mb} MB < $((MAX_IMAGE_BYTES / 1000000)) MB"
else
  fail "image size ${size_mb} MB >= $((MAX_IMAGE_BYTES / 1000000)) MB"
fi
user=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
case "${user%%:*}" in
  "" | 0 | root) fail "image User is '${user}' (root)" ;;
  *) pass "image User is ${user} (not root)" ;;
esac
inspect=$(podman image inspect "$IMAGE")
if python3 - "$inspect" <<'PY'
import json, sys
image = json.loads(sys.argv[1])[0]
c = image.get("Config") or {}
problems = []
if c.get("Entrypoint") != ["/usr/local/bin/wabot"]:
    problems.append(f"Entrypoint {c.get('Entrypoint')}")
if c.get("Cmd") != ["serve"]:
    problems.append(f"Cmd {c.get('Cmd')}")
if "8000/tcp" not in (c.get("ExposedPorts") or {}):
    problems.append(f"ExposedPorts {c.get('ExposedPorts')}")
if c.get("StopSignal") not in ("SIGTERM", "15"):
    problems.append(f"StopSignal {c.get('StopSignal')}")
if c.get("WorkingDir") != "/app":
    problems.append(f"WorkingDir {c.get('WorkingDir')}")
env = dict(e.split("=", 1) for e in c.get("Env") or [])
if env.get("APP_CONFIG_DIR") != "/app/config":
    problems.append(f"APP_CONFIG_DIR {env.get('APP_CONFIG_DIR')}")
# podman shows it at the top level (docker-format images only), docker under Config.
hc = (image.get("Healthcheck") or c.get("Healthcheck") or {}).get("Test") or []
if hc[1:] != ["/usr/local/bin/wabot", "healthcheck"]:
    problems.append(f"Healthcheck {hc}")
if problems:
    print("; ".join(problems))
    sys.exit(1)
PY
then
  pass "image config: entrypoint, cmd serve, port 8000, SIGTERM, /app, APP_CONFIG_DIR, HEALTHCHECK"
else
  fail "image config"
fi

# ------------------------------------------------------------------------------------------ services
redis_port=$(free_port)
graph_port=$(free_port)
app_port=$(free_port)
rules_port=$(free_port)
secret="smoke-app-secret-$RANDOM$RANDOM"
verify_token="smoke-verify-$RANDOM"
access_token="smoke-access-$RANDOM"
prefix="smoke$suffix"

redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
wait_for 10 redis-cli -p "$redis_port" ping || { log "redis-server did not start"; exit 1; }

python3 deploy/fake_graph_api.py --port "$graph_port" --record "$work/sent.jsonl" >"$work/graph.log" 2>&1 &
graph_pid=$!
wait_for 10 curl -sf "http://127.0.0.1:$graph_port/health" || { log "fake Graph API did not start"; exit 1; }
log "redis on :$redis_port, fake Graph API on :$graph_port, wabot on :$app_port"

common_env=(
  -e "REDIS_URL=redis://127.0.0.1:$redis_port/0"
  -e "WHATSAPP_APP_SECRET=$secret"
  -e "WHATSAPP_VERIFY_TOKEN=$verify_token"
  -e "WHATSAPP_ACCESS_TOKEN=$access_token"
  -e "WHATSAPP_API_BASE_URL=http://127.0.0.1:$graph_port"
  -e "WABOT_WHATSAPP__MARK_AS_READ=false"
  -e "WABOT_WHATSAPP__TYPING_INDICATOR=false"
  -e "WABOT_REDIS__KEY_PREFIX=$prefix"
  -e "RUST_LOG=info"
)
# As locked down as the Kubernetes manifests run it.
hardening=(--network host --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges)

# ------------------------------------------------------------------------------------------ config
log "configuration checks"
if out=$(podman run --rm "${hardening[@]}" "${common_env[@]}" -e "PORT=$app_port" "$IMAGE" check-config 2>&1) \
   && grep -q "configuration OK" <<<"$out"; then
  if grep -qF -- "$secret" <<<"$out" || grep -qF -- "$access_token" <<<"$out"; then
    fail "check-config printed a secret"
  else
    pass "check-config accepts the environment and redacts the secrets"
  fi
else
  printf '%s\n' "$out" | tail -5
  fail "check-config with a complete environment"
fi
if out=$(podman run --rm "${hardening[@]}" "$IMAGE" check-config 2>&1); then
  fail "check-config without WHATSAPP_* should fail"
elif grep -qiE 'app_secret|WHATSAPP_APP_SECRET|verify_token|access_token' <<<"$out"; then
  pass "check-config without secrets fails naming the setting: $(tail -1 <<<"$out" | cut -c1-110)"
else
  printf '%s\n' "$out" | tail -5
  fail "check-config without secrets: no setting named"
fi

# ------------------------------------------------------------------------------------------ serve
log "starting the container (RESPONDER=echo)"
podman run -d --name "$name" "${hardening[@]}" "${common_env[@]}" \
  -e "PORT=$app_port" -e RESPONDER=echo -e LOG_FORMAT=json "$IMAGE" >/dev/null 2>>"$work/podman.log"
base="http://127.0.0.1:$app_port"

if wait_for 30 curl -sf "$base/health"; then pass "GET /health 200"; else fail "GET /health did not answer 200 within 30 s"; fi
if wait_for 15 curl -sf "$base/ready"; then pass "GET /ready 200 (Redis reachable)"; else fail "GET /ready did not answer 200 within 15 s"; fi

challenge="smoke-challenge-$RANDOM$RANDOM"
got=$(curl -s --max-time 5 -G "$base/webhook" --data-urlencode "hub.mode=subscribe" \
  --data-urlencode "hub.verify_token=$verify_token" --data-urlencode "hub.challenge=$challenge" || true)
if [ "$got" = "$challenge" ]; then pass "GET /webhook handshake echoes the challenge"; else fail "handshake answered '$got'"; fi
code=$(http_status -G "$base/webhook" --data-urlencode "hub.mode=subscribe" \
  --data-urlencode "hub.verify_token=wrong" --data-urlencode "hub.challenge=$challenge")
if [ "$code" = 403 ]; then pass "handshake with a wrong token: 403"; else fail "handshake with a wrong token: $code"; fi

text="smoke test $RANDOM$RANDOM"
sender="15550001234"
wamid="wamid.SMOKE$RANDOM$RANDOM$RANDOM"
python3 - "$text" "$sender" "$wamid" >"$work/body.json" <<'PY'
import json, sys, time
text, sender, wamid = sys.argv[1:4]
print(json.dumps({
    "object": "whatsapp_business_account",
    "entry": [{"id": "104857396102834", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15557840213", "phone_number_id": "113948572261094"},
        "contacts": [{"profile": {"name": "Smoke Test"}, "wa_id": sender}],
        "messages": [{"from": sender, "id": wamid, "timestamp": str(int(time.time())),
                      "type": "text", "text": {"body": text}}],
    }}]}],
}, separators=(",", ":")), end="")
PY
signature="sha256=$(python3 -c 'import hashlib, hmac, sys; print(hmac.new(sys.argv[1].encode(), open(sys.argv[2], "rb").read(), hashlib.sha256).hexdigest())' "$secret" "$work/body.json")"

code=$(http_status -X POST "$base/webhook" -H 'Content-Type: application/json' --data-binary "@$work/body.json")
if [ "$code" = 401 ]; then pass "unsigned POST /webhook: 401"; else fail "unsigned POST /webhook: $code"; fi
code=$(http_status -X POST "$base/webhook" -H 'Content-Type: application/json' \
  -H "X-Hub-Signature-256: $signature" --data-binary "@$work/body.json")
if [ "$code" = 200 ]; then pass "signed POST /webhook: 200"; else fail "signed POST /webhook: $code"; fi

reply_sent() {
  python3 - "$work/sent.jsonl" "echo: $text" "$sender" "Bearer $access_token" <<'PY'
import json, sys
path, want, to, auth = sys.argv[1:5]
try:
    lines = open(path, encoding="utf-8").read().splitlines()
except FileNotFoundError:
    sys.exit(1)
for line in lines:
    e = json.loads(line)
    b = e.get("body")
    if (isinstance(b, dict) and e["path"].endswith("/113948572261094/messages")
            and (b.get("text") or {}).get("body") == want
            and str(b.get("to", "")).lstrip("+") == to.lstrip("+")
            and e.get("authorization") == auth):
        sys.exit(0)
sys.exit(1)
PY
}
started=$SECONDS
if wait_for "$REPLY_TIMEOUT" reply_sent; then
  pass "fake Graph API received 'echo: $text' from the receiving number ($((SECONDS - started)) s)"
else
  fail "no 'echo: $text' reached the fake Graph API within $REPLY_TIMEOUT s"
  [ -s "$work/sent.jsonl" ] && tail -3 "$work/sent.jsonl"
fi

uid=$(podman exec "$name" id -u 2>/dev/null || echo "?")
if [ "$uid" != "?" ] && [ "$uid" != 0 ]; then pass "process runs as uid $uid (not root)"; else fail "process uid: $uid"; fi
if podman healthcheck run "$name" >/dev/null 2>&1; then
  pass "HEALTHCHECK (wabot healthcheck) passes"
else
  fail "podman healthcheck run $name"
fi
# As uid 0 (owner of /etc) so that only the read-only mount can refuse the write.
if out=$(podman exec --user 0 "$name" touch /etc/wabot-smoke 2>&1); then
  fail "root filesystem is writable"
elif grep -qi "read-only" <<<"$out"; then
  pass "root filesystem is read-only"
else
  fail "write to the root filesystem failed, but not as read-only: $out"
fi

log "stopping the container (SIGTERM)"
started=$SECONDS
podman stop -t "$STOP_TIMEOUT" "$name" >/dev/null 2>>"$work/podman.log"
took=$((SECONDS - started))
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
if [ "$exit_code" = 0 ] && [ "$took" -lt "$STOP_TIMEOUT" ]; then
  pass "SIGTERM: exit code 0 after ${took} s"
else
  fail "SIGTERM: exit code $exit_code after ${took} s (timeout $STOP_TIMEOUT s)"
fi

# ------------------------------------------------------------------------------------------ rules
log "starting the image's default responder (rules) to check the baked config/rules.toml"
podman run -d --name "$rules_name" "${hardening[@]}" "${common_env[@]}" \
  -e "PORT=$rules_port" -e "WABOT_REDIS__KEY_PREFIX=${prefix}r" -e WABOT_WORKER__ENABLED=false \
  "$IMAGE" >/dev/null 2>>"$work/podman.log"
if wait_for 30 curl -sf "http://127.0.0.1:$rules_port/health"; then
  if podman logs "$rules_name" 2>&1 | grep -q "rules file not found"; then
    fail "rules responder fell back to the built-in rules (config/rules.toml not found from WORKDIR)"
  else
    pass "rules responder starts with /app/config/rules.toml"
  fi
else
  fail "the rules-responder container did not become healthy"
fi
podman rm --force --ignore --time 0 "$rules_name" >/dev/null 2>&1 || true

echo
log "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
