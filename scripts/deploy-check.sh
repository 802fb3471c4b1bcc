#!/usr/bin/env bash
# Checks the deployment material in deploy/ on this host, as far as the host allows, and
# says SKIP with the reason for what it cannot do. Not part of CI: it needs root (podman,
# mount namespaces, apt-get for missing tools) and several minutes.
#
#   scripts/deploy-check.sh            # binaries from the debug profile (quicker)
#   scripts/deploy-check.sh --release  # binaries as the Dockerfile builds them
#
# What it does:
#   1. systemd: `systemd-analyze verify` of deploy/systemd/rtc-engine.service (in a
#      private mount namespace where /usr/local/bin holds the built binaries).
#   2. Kubernetes: deploy/kubernetes/*.yaml against the Kubernetes schemas
#      (`kubernetes-validate --strict`, from PyPI).
#   3. Prometheus: `promtool check config` of deploy/prometheus/scrape.yml, and
#      `promtool check metrics` of a live scrape of the built rtc-engine.
#   4. Grafana: deploy/dashboards/*.json parse as JSON and have panels.
#   5. Container: deploy/container/Dockerfile built with podman (runc runtime), the
#      image started on the host network, its metrics endpoint and control socket used,
#      stopped with SIGTERM (exit status 0 expected).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PROFILE=debug
CARGO_PROFILE=()
if [ "${1:-}" = "--release" ]; then
    PROFILE=release
    CARGO_PROFILE=(--release)
fi

passed=0
failed=0
skipped=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }

TMP=$(mktemp -d /tmp/deploy-check.XXXXXX)
CONTAINER=rtc-engine-check-$$
DAEMON_PID=
cleanup() {
    [ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null
    if command -v podman >/dev/null 2>&1; then
        podman rm -f "$CONTAINER" >/dev/null 2>&1
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

# Installs Debian package $2 when command $1 is missing (root only). Returns 1 when the
# command is still missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $2 (for $1)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" \
            >"$TMP/apt-$2.log" 2>&1 || { apt-get update -q >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" \
                >"$TMP/apt-$2.log" 2>&1; }
    fi
    command -v "$1" >/dev/null 2>&1
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (at most $2 seconds) until $1 answers a scrape; prints the body.
wait_scrape() {
    local url=$1 deadline=$((SECONDS + $2))
    while [ $SECONDS -lt $deadline ]; do
        if curl -fsS --max-time 10 "$url" 2>/dev/null; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

echo "== binaries ($PROFILE)"
if ! cargo build -q "${CARGO_PROFILE[@]}" -p rtc-engine --bin rtc-engine -p tools --bin rtcctl; then
    fail "cargo build of rtc-engine and rtcctl"
    echo "$passed passed, $failed failed, $skipped skipped"
    exit 1
fi
BIN=$ROOT/target/$PROFILE
pass "built $BIN/rtc-engine and $BIN/rtcctl"

echo "== systemd unit"
UNIT=deploy/systemd/rtc-engine.service
if ! need systemd-analyze systemd; then
    skip "$UNIT: systemd-analyze is not available"
elif ! command -v unshare >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    skip "$UNIT: needs root and unshare to put the binaries at /usr/local/bin privately"
else
    mkdir -p "$TMP/units"
    cp "$UNIT" "$TMP/units/"
    # ExecStart names /usr/local/bin/rtc-engine: a tmpfs there, in a private mount
    # namespace, holds the built binaries; the host's /usr/local/bin is not touched.
    if unshare -m sh -c "mount --make-rprivate / && mount -t tmpfs tmpfs /usr/local/bin &&
        cp '$BIN/rtc-engine' '$BIN/rtcctl' /usr/local/bin/ &&
        SYSTEMD_UNIT_PATH='$TMP/units:' systemd-analyze verify --man=no '$TMP/units/rtc-engine.service'" \
        >"$TMP/verify.log" 2>&1 && [ ! -s "$TMP/verify.log" ]; then
        pass "$UNIT: systemd-analyze verify ($(systemd-analyze --version | head -1))"
    else
        cat "$TMP/verify.log"
        fail "$UNIT: systemd-analyze verify"
    fi
fi

echo "== Kubernetes manifests"
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    pip install -q kubernetes-validate >"$TMP/pip.log" 2>&1
fi
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    skip "deploy/kubernetes: kubernetes-validate (PyPI) could not be installed: $(tail -1 "$TMP/pip.log")"
else
    for m in deploy/kubernetes/*.yaml; do
        if kubernetes-validate --strict "$m"; then
            pass "$m: valid against the Kubernetes $(kubernetes-validate --version 2>/dev/null | awk '{print $NF}') schemas (strict)"
        else
            fail "$m: kubernetes-validate --strict"
        fi
    done
fi
if command -v kubectl >/dev/null 2>&1; then
    skip "kubectl apply --dry-run=server: no cluster reachable from this host (client-side schema validation above)"
fi

echo "== Prometheus"
if ! need promtool prometheus; then
    skip "deploy/prometheus/scrape.yml and the exposition: promtool is not available"
else
    if promtool check config deploy/prometheus/scrape.yml; then
        pass "deploy/prometheus/scrape.yml: promtool check config"
    else
        fail "deploy/prometheus/scrape.yml: promtool check config"
    fi
    "$BIN/rtc-engine" --shards 2 --pin false --stats-interval 0 --metrics 127.0.0.1:0 \
        --control-socket "$TMP/host/control.sock" >"$TMP/host.log" 2>&1 &
    DAEMON_PID=$!
    url=
    for _ in $(seq 1 60); do
        url=$(grep -o 'http://[^ ]*/metrics' "$TMP/host.log" | head -1)
        [ -n "$url" ] && break
        sleep 0.5
    done
    if [ -n "$url" ] && wait_scrape "$url" 30 >"$TMP/scrape.txt" &&
        grep -q '^rtc_engine_up 1$' "$TMP/scrape.txt"; then
        if promtool check metrics <"$TMP/scrape.txt"; then
            pass "live scrape of $url ($(grep -vc '^#' "$TMP/scrape.txt") samples): promtool check metrics"
        else
            fail "live scrape of $url: promtool check metrics"
        fi
    else
        cat "$TMP/host.log"
        fail "rtc-engine --metrics did not serve a scrape"
    fi
    kill "$DAEMON_PID" 2>/dev/null
    wait "$DAEMON_PID" 2>/dev/null
    DAEMON_PID=
fi

echo "== Grafana dashboards"
for d in deploy/dashboards/*.json; do
    if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["panels"] and d["title"]' "$d"; then
        pass "$d: JSON with $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["panels"]))' "$d") panels (its metric names are checked against a live scrape by tools/tests/metrics.rs)"
    else
        fail "$d: not a dashboard JSON"
    fi
done
skip "dashboard rendering: no Grafana on this host (not in Debian)"

echo "== container image (podman, runc)"
IMG=localhost/rtc-engine-check
if ! need podman podman || ! need runc runc; then
    skip "deploy/container/Dockerfile: podman or runc is not available"
elif ! podman --runtime runc info >/dev/null 2>&1; then
    skip "deploy/container/Dockerfile: podman cannot use runc here: $(podman --runtime runc info 2>&1 | tail -1)"
else
    DF=deploy/container/Dockerfile
    build_df=$DF
    mkdir -p "$TMP/ctx"
    if timeout 60 podman pull -q docker.io/library/rust:1.95-bookworm >/dev/null 2>&1 &&
        timeout 60 podman pull -q docker.io/library/debian:bookworm-slim >/dev/null 2>&1; then
        ctx=$ROOT
    else
        # No container registry is reachable (only Debian's, PyPI, crates.io and npm
        # are): stand in for the two base images with what is reachable. The runtime
        # stage is built exactly as written; the build stage is replaced by the binaries
        # built above (same Debian 12 userland as rust:1.95-bookworm).
        skip "$DF build stage (FROM rust:1.95-bookworm, cargo build in the image): no container registry reachable to pull rust:1.95-bookworm / debian:bookworm-slim; replaced by host-built binaries and a debootstrapped Debian 12 minbase"
        if ! podman image exists "$IMG/debian:bookworm-minbase"; then
            if ! need debootstrap debootstrap; then
                fail "debootstrap is not available to make a Debian base image"
            else
                mirror=$(grep -ho 'http[s]*://deb.debian.org/debian\b' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null | head -1)
                echo "debootstrap bookworm minbase from ${mirror:=http://deb.debian.org/debian}"
                if debootstrap --variant=minbase bookworm "$TMP/rootfs" "$mirror" >"$TMP/debootstrap.log" 2>&1; then
                    tar -C "$TMP/rootfs" -c . | podman import -q - "$IMG/debian:bookworm-minbase" >/dev/null
                else
                    tail -5 "$TMP/debootstrap.log"
                fi
            fi
        fi
        cp "$BIN/rtc-engine" "$BIN/rtcctl" "$TMP/ctx/"
        printf 'FROM %s\nCOPY rtc-engine rtcctl /out/\n' "$IMG/debian:bookworm-minbase" >"$TMP/Containerfile.artifacts"
        podman --runtime runc build -q -f "$TMP/Containerfile.artifacts" -t "$IMG/artifacts" "$TMP/ctx" >/dev/null
        # The Dockerfile with the two FROM lines substituted and the build stage's body
        # (which needs cargo) dropped; everything from the runtime stage on is verbatim.
        awk -v art="$IMG/artifacts" -v base="$IMG/debian:bookworm-minbase" '
            /^FROM rust:[^ ]+ AS build$/ { print "FROM " art " AS build"; inbuild = 1; subs++; next }
            /^FROM debian:bookworm-slim$/ { print "FROM " base; inbuild = 0; subs++; next }
            inbuild { next }
            { print }
            END { if (subs != 2) exit 1 }' "$DF" >"$TMP/Dockerfile.check" ||
            fail "$DF no longer has the two FROM lines this script substitutes"
        build_df=$TMP/Dockerfile.check
        ctx=$TMP/ctx
    fi
    if podman --runtime runc build -q -f "$build_df" -t "$IMG/rtc-engine" "$ctx" >"$TMP/build.log" 2>&1; then
        pass "$DF: podman build (runc), image $IMG/rtc-engine, user $(podman image inspect --format '{{.Config.User}}' "$IMG/rtc-engine")"
        install -d -o 10001 -g 10001 -m 0750 "$TMP/run"
        port=$(free_port)
        # Explicit limits within this host's: podman's defaults (1048576 open files, a
        # high process count) are refused where the hard limits are lower, as in a
        # sandbox. The Dockerfile's `--ulimit memlock=-1` applies only where the host
        # allows it.
        nofile=$(ulimit -Hn)
        [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
        limits=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=4096:4096)
        if [ "$(ulimit -Hl)" = unlimited ]; then
            limits+=(--ulimit memlock=-1)
        else
            echo "note: the memlock hard limit here is $(ulimit -Hl) KiB, so not --ulimit memlock=-1"
        fi
        if podman --runtime runc run -d --name "$CONTAINER" --network host "${limits[@]}" \
            -v "$TMP/run:/run/rtc-engine" "$IMG/rtc-engine" \
            --bind 127.0.0.1 --port 0 --shards 1 --pin false --metrics "127.0.0.1:$port" \
            >/dev/null 2>"$TMP/run.log"; then
            if wait_scrape "http://127.0.0.1:$port/metrics" 60 >"$TMP/cscrape.txt" &&
                grep -q '^rtc_engine_up 1$' "$TMP/cscrape.txt"; then
                backend=$(grep -o 'backend="[a-z_]*"' "$TMP/cscrape.txt" | head -1)
                pass "container runs: metrics served on the host network ($backend)"
            else
                podman logs "$CONTAINER" 2>&1 | tail -20
                fail "container: no metrics from the running image"
            fi
            if podman exec "$CONTAINER" /usr/local/bin/rtcctl --socket /run/rtc-engine/control.sock \
                --timeout 5 shard list >"$TMP/shards.txt" 2>&1; then
                pass "container: rtcctl shard list over the control socket in the mounted /run/rtc-engine"
            else
                cat "$TMP/shards.txt"
                fail "container: rtcctl shard list"
            fi
            podman stop -t 15 "$CONTAINER" >/dev/null 2>&1
            code=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER" 2>/dev/null)
            if [ "$code" = 0 ]; then
                pass "container: SIGTERM stops the engine cleanly (exit status 0)"
            else
                podman logs "$CONTAINER" 2>&1 | tail -20
                fail "container: exit status $code after SIGTERM"
            fi
            if podman logs "$CONTAINER" 2>&1 | grep -q 'falling back to the portable backend'; then
                echo "note: podman's default seccomp profile refused io_uring; the portable backend ran (as documented)"
            fi
        else
            cat "$TMP/run.log"
            fail "container: podman run"
        fi
    else
        cat "$TMP/build.log"
        fail "$DF: podman build (runc)"
    fi
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
