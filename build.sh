#!/usr/bin/env bash
# unisock's one entry point. Every subcommand is idempotent and safe to run twice.
#   ./build.sh setup        install what `test` needs (fresh Debian 12 + rustup; says how
#                           to get pyenv's Python 2.7, which it cannot install)
#   ./build.sh build        native build, wasm32 build, wasm-bindgen output in www/pkg/
#   ./build.sh test         setup, fmt, clippy (both targets), native tests, the Redis
#                           scale-out test, browser tests (wasm-pack test: a page and
#                           both kinds of worker; the chat page end to end), wasm-pack
#                           build, conformance, fuzzing, soak
#   ./build.sh redis_test   only the Redis scale-out test
#   ./build.sh demo         build and run the chat demo on http://127.0.0.1:8069/
#   ./build.sh conformance [full|ci|quick]  the Autobahn testsuite, both roles (default
#                           full; `test` runs ci)
#   ./build.sh fuzz [SECS]  each cargo-fuzz target for SECS seconds (default 60)
#   ./build.sh soak [SECS] [CONNS] [BOMBS]  the soak test (default 60 s, 10,000 connections,
#                           1,000 deflate bombs), then resumable delivery under faults at
#                           full size (1,000 clients, 10,000 messages per room)
#   ./build.sh bench [--quick]  unisock vs tokio-tungstenite, fastwebsockets, tokio-websockets,
#                           yawc, and the browser build's size vs gloo-net, ws_stream_wasm,
#                           ewebsock: writes BENCHMARKS.md + target/bench/results.json (~20 min);
#                           --quick: one tiny iteration of every row (what `test` runs)
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
WASM=wasm32-unknown-unknown
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

log() { printf '\n==> %s\n' "$*"; }

# The wasm-bindgen version pinned in Cargo.lock: wasm-bindgen-cli must match it exactly.
wasm_bindgen_version() {
  awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock
}

# All `build` and `demo` need besides rustup: the wasm32 target and wasm-bindgen-cli.
setup_wasm() {
  log "setup: the wasm32 target and wasm-bindgen-cli"
  if ! rustup target list --installed | grep -qx "$WASM"; then
    rustup target add "$WASM"
  fi
  local want have
  want=$(wasm_bindgen_version)
  have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
  if [ "$have" != "$want" ]; then
    # No --locked: the registry here lacks some of the tool's locked dependency versions.
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

# What `test` needs besides: it installs what it can, and fails at once, saying what to do,
# for what it cannot (Python 2.7), rather than in the conformance step half an hour later.
setup() {
  setup_wasm
  log "setup: wasm-pack, Chromium, node, Redis, proxies, Python websockets, the fuzzing and conformance tools"
  # wasm-pack (pinned) for `wasm-pack test` and `wasm-pack build`, on the tools installed here.
  if [ "$(wasm-pack --version 2>/dev/null | awk '{print $2}')" != 0.15.1 ]; then
    cargo install wasm-pack --version 0.15.1 --locked
  fi
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    $SUDO apt-get update
    $SUDO apt-get install -y chromium chromium-driver
  fi
  # The chat page's end-to-end test: node (>= 20) and playwright-core, pinned in package-lock.json.
  if ! command -v npm >/dev/null; then
    $SUDO apt-get update
    $SUDO apt-get install -y nodejs npm
  fi
  if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
    npm ci --no-audit --no-fund
  fi
  redis_setup
  proxy_setup
  pyws_setup
  fuzz_setup
  autobahn_python >/dev/null
}

# Debian's tinyproxy (HTTP CONNECT) and microsocks (SOCKS5), for tests/proxy.rs and
# tests/proxy_env.rs, which start their own on free ports (and fail under CI without them).
proxy_setup() {
  if ! command -v tinyproxy >/dev/null || ! command -v microsocks >/dev/null; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends tinyproxy microsocks
  fi
}

# Python websockets (pinned) in a venv under target/, for the interoperability test over
# wss:// in tests/tls_server.rs, which test_native points at it with PYWS_PYTHON.
PYWS=target/pyws
PYWS_VERSION=15.0.1
pyws_setup() {
  if "$PYWS/bin/python" -c "import sys, websockets.version as v; sys.exit(v.version != '$PYWS_VERSION')" 2>/dev/null; then
    return 0
  fi
  # Debian's python3 makes venvs only with python3-venv (ensurepip) installed.
  if ! python3 -m venv --clear "$PYWS" >/dev/null 2>&1; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends python3-venv
    python3 -m venv --clear "$PYWS"
  fi
  "$PYWS/bin/pip" install -q "websockets==$PYWS_VERSION"
}

# Debian's redis-server, for the scale-out test (tests/redis.rs starts its own instances).
redis_setup() {
  if ! command -v redis-server >/dev/null; then
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends redis-server
  fi
}

# The chat page's wasm module, bound for the browser into www/pkg/ (served with www/); the
# `page` profile (Cargo.toml) is built for size.
build_chat_page() {
  cargo build --profile page --target "$WASM" --example chat_page
  wasm-bindgen --target web --no-typescript --out-dir www/pkg \
    "target/$WASM/page/examples/chat_page.wasm"
  optimize_page_wasm www/pkg/chat_page_bg.wasm
}

# The fault test's browser room client (examples/rooms_page.rs) into target/rooms-page/.
build_rooms_page() {
  cargo build --profile page --target "$WASM" --example rooms_page
  wasm-bindgen --target web --no-typescript --out-dir target/rooms-page \
    "target/$WASM/page/examples/rooms_page.wasm"
}

# Shrinks a page's bound wasm in place with binaryen's wasm-opt -Oz (the chat page: a fifth
# less gzipped), if there is one that works; without it the page works as it is.
optimize_page_wasm() {
  local opt
  if ! opt=$(page_wasm_opt); then
    echo "no wasm-opt >= 132 (npm ci installs one): $1 is not size-optimized"
    return 0
  fi
  # The features: what Rust's wasm32 target and wasm-bindgen emit, which binaryen must accept.
  "$opt" -Oz --enable-bulk-memory --enable-mutable-globals --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-reference-types --enable-multivalue -o "$1" "$1"
}

# The wasm-opt to use: binaryen 132 from package.json, or the system's if as new. Debian 12's
# (108) breaks the page: it exports the wrong table as wasm-bindgen's externref table.
page_wasm_opt() {
  local opt
  for opt in node_modules/.bin/wasm-opt "$(command -v wasm-opt || true)"; do
    [ -x "$opt" ] || continue
    [ "$("$opt" --version | awk '{print $3}')" -ge 132 ] 2>/dev/null && { echo "$opt"; return 0; }
  done
  return 1
}

build() {
  log "build"
  cargo build --all-targets
  cargo build --target "$WASM" --lib
  build_chat_page
}

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# Starts examples/echo_server on a free port and sets ECHO_URL to its ws:// URL.
start_echo_server() {
  cargo build --release --example echo_server
  mkdir -p target
  local out=target/echo_server.out
  : >"$out"
  target/release/examples/echo_server 127.0.0.1:0 >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    ECHO_URL=$(sed -n 's/^listening on //p' "$out")
    [ -n "$ECHO_URL" ] && return 0
    sleep 0.1
  done
  echo "echo server did not start:"; cat "$out"; return 1
}

test_native() {
  log "native tests"
  local out=target/native-tests.log
  mkdir -p target
  # PYWS_PYTHON: setup made it, so the Python client test fails rather than skips without it.
  PYWS_PYTHON="$ROOT/$PYWS/bin/python" cargo test --all-targets --all-features 2>&1 | tee "$out"
  # Test files that a feature or a tool gates must not lose their tests unseen.
  expect_tests_ran "$out" tls_native_roots tls_server
  cargo test --doc --all-features
}

# Two chat_server processes sharing a room over a redis-server the test starts on a free
# port, kills and restarts (tests/redis.rs); prints how many messages the outage lost.
# And resumable rooms across nodes (tests/resume_redis.rs), and under faults, short
# (tests/resume_faults.rs: 12 clients and 2 headless-Chromium pages for 12 s).
# Reuses test_native's debug build (same features), so it adds seconds, not a build.
redis_test() {
  log "scale-out over Redis (two chat servers, redis-server killed and restarted)"
  redis_setup
  cargo build --all-features --example chat_server --example rooms_node
  build_rooms_page
  local out=target/redis-tests.log
  mkdir -p target
  REDIS_SERVER_BIN=$(command -v redis-server) CHAT_SERVER=target/debug/examples/chat_server \
    ROOMS_NODE=target/debug/examples/rooms_node ROOMS_PAGE_PKG="$ROOT/target/rooms-page" \
    cargo test --all-features --test redis --test resume_redis --test resume_faults \
    -- --ignored --nocapture 2>&1 | tee "$out"
  expect_tests_ran "$out" redis resume_redis resume_faults
}

# Resumable delivery under faults at full size (tests/resume_faults.rs): 1,000 clients,
# 10,000 messages per room (10 rooms at 200 a second), 3 nodes, Redis restarted twice.
resume_soak() {
  log "resumable delivery under faults: $1 clients, $2 s"
  redis_setup
  cargo build --release --all-features --example rooms_node
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  local out=target/resume-soak.log
  RESUME_FAULTS_CLIENTS=$1 RESUME_FAULTS_SECS=$2 RESUME_FAULTS_RATE=200 \
    REDIS_SERVER_BIN=$(command -v redis-server) ROOMS_NODE=target/release/examples/rooms_node \
    cargo test --release --all-features --test resume_faults -- --ignored --nocapture 2>&1 |
    tee "$out"
  expect_tests_ran "$out" resume_faults
}

# Fails unless each test binary tests/NAME.rs named in $2... passed at least one test in
# the `cargo test` output $1: one that lost its configuration or its tests passes silently.
expect_tests_ran() {
  local out=$1 t n
  shift
  for t in "$@"; do
    n=$(awk -v t="tests/$t.rs" '/^ +Running / { on = ($2 == t) }
      on && $1 == "test" && $2 == "result:" && $3 == "ok." { print $4; exit }' "$out")
    if [ "${n:-0}" -eq 0 ]; then echo "tests/$t.rs ran no tests"; return 1; fi
    echo "tests/$t.rs: $n passed"
  done
}

# The browser tests (tests/web_common/) three times: in a page, a dedicated worker and a
# shared worker (tests/web.rs, tests/web_dedicated_worker.rs, tests/web_shared_worker.rs).
test_browser() {
  log "browser tests (headless Chromium: a page, a dedicated worker, a shared worker)"
  start_echo_server
  echo "echo server: $ECHO_URL"
  local out=target/browser-tests.log
  # Through `wasm-pack test`, the ecosystem's command: `cargo test --target wasm32-unknown-unknown`
  # with wasm-bindgen-test-runner, in this environment (the URLs reach the tests' build).
  # --mode no-install and --chromedriver: the tools setup installed, not downloads.
  # The runner's timeout (default 20 s) is for the whole suite, not per test.
  UNISOCK_TEST_SERVER="$ECHO_URL" UNISOCK_TEST_CLOSED="ws://127.0.0.1:$(free_port)/" \
    WASM_BINDGEN_TEST_TIMEOUT=${WASM_BINDGEN_TEST_TIMEOUT:-120} \
    wasm-pack test --headless --chrome --chromedriver "$(command -v chromedriver)" --mode no-install \
    2>&1 | tee "$out"
  expect_tests_ran "$out" web web_dedicated_worker web_shared_worker
  test_e2e
}

# The library packed as `wasm-pack build --target web` does for npm users (wasm-opt is off in
# Cargo.toml: wasm-pack would download binaryen).
test_wasm_pack_build() {
  log "wasm-pack build --target web"
  local pkg=target/wasm-pack/pkg
  rm -rf "$pkg"
  wasm-pack build --target web --mode no-install --out-dir "$pkg"
  [ -s "$pkg/unisock_bg.wasm" ] && [ -s "$pkg/unisock.js" ] && [ -s "$pkg/package.json" ] ||
    { echo "wasm-pack build left no package in $pkg"; return 1; }
}

# The chat end to end: two Chromium pages and the native terminal client
# (tests/e2e/chat.mjs). The script starts examples/chat_server itself, as it kills it (by
# its PID) and starts it again on the same port to check that every client reconnects.
test_e2e() {
  log "chat end to end (Playwright + Chromium + native client)"
  build_chat_page
  cargo build --release --example chat_server --example chat_client
  CHAT_SERVER=target/release/examples/chat_server CHAT_CLIENT=target/release/examples/chat_client \
    node tests/e2e/chat.mjs
}

lint() {
  log "fmt + clippy (native and wasm32)"
  cargo fmt --check
  cargo clippy --all-targets --all-features -- -D warnings
  # Without features too: code used only by a feature must not warn in a default build.
  cargo clippy --lib -- -D warnings
  cargo clippy -p unisock-bench --all-targets -- -D warnings
  cargo clippy --target "$WASM" --lib --tests --example chat_page --example rooms_page -- -D warnings
}

# The Autobahn testsuite (wstest, Python 2.7) in its own virtualenv under target/.
AB=target/autobahn
# Prints the Python 2.7 that wstest runs on (it runs on no Python 3), or says how to get one
# and fails: Debian 12 has no Python 2 package, so setup cannot install it.
autobahn_python() {
  local py2
  py2=$(pyenv root 2>/dev/null || true)/versions/2.7.18/bin/python
  if [ ! -x "$py2" ]; then
    echo "The conformance tests (the Autobahn testsuite) need Python 2.7.18 from pyenv, not found." >&2
    echo "Install pyenv (https://github.com/pyenv/pyenv#installation), run" >&2
    echo "'pyenv install 2.7.18', then run this again." >&2
    return 1
  fi
  echo "$py2"
}

autobahn_setup() {
  if [ -x "$AB/venv/bin/wstest" ]; then return 0; fi
  local py2
  py2=$(autobahn_python) || return 1
  "$py2" -m virtualenv --version >/dev/null 2>&1 || "$py2" -m pip install -q --user virtualenv==20.15.1
  mkdir -p "$AB"
  "$py2" -m virtualenv -q "$AB/venv"
  "$AB/venv/bin/pip" install -q -r autobahn/requirements.txt
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Runs Autobahn in both modes. $1 = full (every case, with 12.x and 13.x:
# permessage-deflate, which echo_server accepts and autobahn_client offers by default;
# 12.x/13.x take tens of minutes), ci (sections 1-10 whole, and the first two cases of
# each 12.x/13.x group: every compression parameter set, small messages; about a minute),
# or quick (without the slow 9.x performance and 12.x/13.x compression cases).
# `cases` is how many cases the pinned autobahntestsuite has with those exclusions: a
# role's report with fewer (a run cut short, a section lost) fails like a failed case.
conformance() {
  local mode=${1:-full} excluded cases status=0
  case "$mode" in
    full) excluded='[]' cases=517 ;;
    ci) excluded='["12.*.[3-9]", "12.*.1[0-9]", "13.*.[3-9]", "13.*.1[0-9]"]' cases=325 ;;
    quick) excluded='["9.*", "12.*", "13.*"]' cases=247 ;;
    *) echo "conformance: unknown mode '$mode' (full, ci or quick)"; return 2 ;;
  esac
  # The gate itself: NON-STRICT, UNIMPLEMENTED and missing cases must fail it.
  (cd autobahn && python3 -B -m unittest -q test_summary)
  log "Autobahn testsuite ($mode): fuzzingclient against examples/echo_server"
  autobahn_setup
  cargo build --release --example echo_server --example autobahn_client
  rm -rf "$AB/reports"
  start_echo_server
  cat >"$AB/fuzzingclient.json" <<JSON
{"outdir": "./reports/server", "servers": [{"agent": "unisock", "url": "$ECHO_URL"}],
 "cases": ["*"], "exclude-cases": $excluded, "exclude-agent-cases": {}}
JSON
  # A wstest that dies still leaves what it ran: the summary counts the rest as failed.
  (cd "$AB" && venv/bin/wstest -m fuzzingclient -s fuzzingclient.json >fuzzingclient.log 2>&1) ||
    { tail -n 20 "$AB/fuzzingclient.log"; status=1; }
  python3 autobahn/summary.py "$AB/reports/server/index.json" autobahn-server "$cases" || status=1

  log "Autobahn testsuite ($mode): examples/autobahn_client against fuzzingserver"
  local port
  port=$(free_port)
  cat >"$AB/fuzzingserver.json" <<JSON
{"url": "ws://127.0.0.1:$port", "outdir": "./reports/client",
 "cases": ["*"], "exclude-cases": $excluded, "exclude-agent-cases": {}}
JSON
  # --webport 0: no report web server on the fixed port 8080 (another run may hold it).
  (cd "$AB" && exec venv/bin/wstest -m fuzzingserver --webport 0 -s fuzzingserver.json >fuzzingserver.log 2>&1) &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.2
  done
  target/release/examples/autobahn_client "ws://127.0.0.1:$port" >"$AB/autobahn_client.log" 2>&1 || status=1
  python3 autobahn/summary.py "$AB/reports/client/index.json" autobahn-client "$cases" || status=1
  return $status
}

# cargo-fuzz targets over the sans-io core, the handshake and permessage-deflate
# negotiation parsers (both roles) and the backplane's wire decoder (fuzz/), each for $1
# seconds. Needs the machine's nightly toolchain (cargo-fuzz is installed, pinned).
# Each run starts from the committed seeds (fuzz/corpus/<target>/, only read) and what
# earlier runs here found (target/fuzz-corpus/<target>/: libFuzzer writes new inputs into
# the first directory it is given only, so the committed one never grows).
FUZZ_TARGETS="frame_decode connection handshake_server handshake_client inflate deflate_offer deflate_answer backplane_wire resume_frames"
# A nightly toolchain (libFuzzer's sanitizer flags are nightly-only) and cargo-fuzz, pinned.
fuzz_setup() {
  if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal ||
      { echo "fuzzing needs a nightly toolchain, and 'rustup toolchain install nightly' failed"; return 1; }
  fi
  [ "$(cargo-fuzz --version 2>/dev/null | awk '{print $2}')" = 0.13.2 ] || cargo install cargo-fuzz --version 0.13.2
}

fuzz() {
  local secs=${1:-60} t out corpus args
  fuzz_setup
  mkdir -p target
  for t in $FUZZ_TARGETS; do
    log "fuzz $t for ${secs}s"
    out=target/fuzz-$t.log
    corpus=target/fuzz-corpus/$t
    mkdir -p "$corpus" "fuzz/corpus/$t"
    args=(-max_total_time="$secs")
    # The text formats' tokens, which mutations alone rarely spell.
    case "$t" in
      deflate_*) args+=(-dict=fuzz/dict/deflate.dict) ;;
      handshake_*) args+=(-dict=fuzz/dict/http.dict) ;;
    esac
    if ! cargo +nightly fuzz run "$t" "$corpus" "fuzz/corpus/$t" -- "${args[@]}" >"$out" 2>&1; then
      tail -n 40 "$out"
      echo "fuzz $t: crashed (the input is under fuzz/artifacts/$t/)"
      return 1
    fi
    grep -E '^#[0-9]+ +DONE|^Done' "$out"
  done
}

# Soak: CONNS connections exchanging numbered messages for SECS seconds while a second
# process opens, drops and abuses connections. Checks: every message echoed exactly once
# and in order, every abuse refused or failed with its close code and the server still
# answering (chaos), RSS flat while loaded (<= 20% growth from a quarter of the run to its
# end), and no socket left in the registry afterwards.
# The rss_kb=N figure of a `soak stats` line.
rss_kb_of() {
  echo "$1" | sed -n 's/.*rss_kb=\([0-9]*\).*/\1/p'
}

soak() {
  local secs=${1:-60} conns=${2:-10000} bombs=${3:-1000} out=target/soak_server.out url pass=0 fail=0
  cargo build --release --example soak
  ulimit -n "$(ulimit -Hn)"
  mkdir -p target
  : >"$out"
  target/release/examples/soak server 127.0.0.1:0 >"$out" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^listening on //p' "$out")
    [ -n "$url" ] && break
    sleep 0.1
  done
  local before
  before=$(target/release/examples/soak stats "$url")
  log "soak: $conns connections and $bombs deflate bombs for ${secs}s against $url"
  target/release/examples/soak load "$url" "$conns" "$secs" >target/soak_load.out 2>&1 &
  local load_pid=$!
  target/release/examples/soak chaos "$url" "$secs" >target/soak_chaos.out 2>&1 &
  local chaos_pid=$!
  target/release/examples/soak bomb "$url" "$bombs" "$secs" >target/soak_bomb.out 2>&1 &
  local bomb_pid=$!
  sleep $((secs / 4 + 1))
  local early late
  early=$(target/release/examples/soak stats "$url")
  sleep $((secs - secs / 4 - 2))
  late=$(target/release/examples/soak stats "$url")
  local load_ok=0 chaos_ok=0 bomb_ok=0
  wait "$load_pid" || load_ok=$?
  wait "$chaos_pid" || chaos_ok=$?
  wait "$bomb_pid" || bomb_ok=$?
  cat target/soak_load.out target/soak_chaos.out target/soak_bomb.out
  echo "stats before: $before; at 1/4: $early; near the end: $late"
  if [ "$load_ok" = 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: messages lost or reordered"; fi
  if [ "$chaos_ok" = 0 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: a hostile connection got through, or the server stopped answering"
  fi
  if [ "$bomb_ok" = 0 ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: a deflate bomb got an answer other than holding, 1009 or 1013"
  fi
  # The bombs may take the registry's memory budget (256 MiB) and no more: the server's
  # growth over the whole run, with the load's connections, stays under 512 MiB.
  local rss0 rss1 rss2
  rss0=$(rss_kb_of "$before")
  rss1=$(rss_kb_of "$early")
  rss2=$(rss_kb_of "$late")
  if [ -n "$rss0" ] && [ -n "$rss2" ] && [ "$rss2" -le $((rss0 + 512 * 1024)) ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: RSS grew by more than 512 MiB: from ${rss0:-?} kB to ${rss2:-?} kB"
  fi
  if [ -n "$rss1" ] && [ -n "$rss2" ] && [ "$rss2" -le $((rss1 * 120 / 100)) ]; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1)); echo "FAIL: RSS grew from ${rss1:-?} kB to ${rss2:-?} kB"
  fi
  local final=""
  for _ in $(seq 1 100); do
    final=$(target/release/examples/soak stats "$url")
    case "$final" in sockets=0\ *) break ;; esac
    sleep 0.1
  done
  echo "stats after: $final"
  case "$final" in
    sockets=0\ *) pass=$((pass + 1)) ;;
    *) fail=$((fail + 1)); echo "FAIL: sockets left in the registry" ;;
  esac
  echo "soak: $pass passed, $fail failed"
  [ "$fail" = 0 ]
}

# The side-by-side benchmarks (bench/). The servers run on CPU 0 and the load generator on
# CPU 1 when there are two cores; the 10,000-connection rows (idle memory, one in flight at a
# fixed rate) need the open-file limit raised.
bench() {
  local quick=${1:-} pin=() pinflag=""
  log "bench ${quick}"
  cargo build --release -p unisock-bench
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin=(taskset -c 1); pinflag=--pin
  fi
  if [ "$quick" = --quick ]; then
    cargo test --release -p unisock-bench
    "${pin[@]}" target/release/unisock-bench run --quick $pinflag >target/bench-quick.log 2>&1 ||
      { cat target/bench-quick.log; return 1; }
    tail -n 4 target/bench-quick.log
    # Every row must have produced a number for unisock (throughput and CPU per message).
    if grep -q 'unisock failed' target/bench/BENCHMARKS.quick.md; then
      grep 'unisock failed' target/bench/BENCHMARKS.quick.md; return 1
    fi
  else
    "${pin[@]}" target/release/unisock-bench run $pinflag
    # Compressed beside uncompressed text (#8), and broadcast fan-out in one process and
    # across two nodes over Redis (#10), appended to the same report.
    redis_setup
    cargo build --release --example deflate_bench
    cargo build --release --features redis --example fanout_bench
    {
      printf '\n## permessage-deflate: JSON-like text, compressed beside uncompressed\n\n'
      printf 'From `examples/deflate_bench` (3 s per mode; memory with 1,000 connections).\n\n```\n'
      target/release/examples/deflate_bench 3 1000
      printf '```\n\n## Broadcast fan-out to 1,000 sockets: one process, and two nodes over Redis\n\n'
      printf 'From `examples/fanout_bench` (5,000 broadcasts; broadcasts per second, each to every socket). `resume_*`: the same with resumable delivery (`Rooms`, `RedisRooms`; `resume_vs_plain` is its rate over plain broadcast'"'"'s).\n\n```\n'
      target/release/examples/fanout_bench
      printf '```\n'
    } >>BENCHMARKS.md
    # The browser build's size beside gloo-net, ws_stream_wasm and ewebsock (#21; bench/wasm-size/).
    python3 bench/wasm_size.py --write BENCHMARKS.md
  fi
}

run_tests() {
  setup
  lint
  test_native
  redis_test
  bench --quick
  test_browser
  test_wasm_pack_build
  conformance ci
  fuzz 30
  soak 30 1000
  log "all tests passed"
}

demo() {
  setup_wasm
  build_chat_page
  cargo build --release --example chat_server --example chat_client
  log "chat demo: open http://127.0.0.1:8069/ in two tabs (Ctrl-C stops it)"
  echo "terminal client: target/release/examples/chat_client --url ws://127.0.0.1:8069/ws"
  exec target/release/examples/chat_server 127.0.0.1:8069 www
}

case "${1:-}" in
  setup) setup ;;
  build) setup_wasm; build ;;
  test) run_tests ;;
  redis_test) redis_test ;;
  demo) demo ;;
  conformance) conformance "${2:-full}" ;;
  fuzz) fuzz "${2:-60}" ;;
  soak) soak "${2:-60}" "${3:-10000}" "${4:-1000}" && resume_soak 1000 500 ;;
  bench) bench "${2:-}" ;;
  *) echo "usage: $0 setup|build|test|demo|conformance [full|ci|quick]|fuzz [SECS]|soak [SECS] [CONNS] [BOMBS]|bench [--quick]"; exit 2 ;;
esac
