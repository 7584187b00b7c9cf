#!/usr/bin/env bash
# A real, single-node Kubernetes v1.20.2 for the test suite, built offline from Debian bookworm's
# `kubernetes` source package and run on loopback:
#
#   cluster.sh build   apt packages, `apt-get source kubernetes`, two patches, `make` (≈6 min on
#                      2 cores, once per machine: the binaries are cached under $PAAS_KUBE_CACHE)
#   cluster.sh up      etcd, kube-apiserver (token auth, RBAC), controller-manager, scheduler and
#                      a kubelet whose dockershim runs pods on the local Docker engine with local
#                      images; prints KUBECONFIG=... once the node is Ready
#   cluster.sh down    stops what `up` started (by PID), removes its pods' containers and mounts,
#                      and puts back the sysctls the kubelet changed
#
# Settings: PAAS_KUBE_CACHE (binaries, default /var/cache/paas-kube), PAAS_KUBE_RUN (state of one
# cluster, default /tmp/paas-kube), PAAS_KUBE_PORT (API server, 16443), PAAS_KUBE_ETCD_PORT (23790).
set -euo pipefail

CACHE=${PAAS_KUBE_CACHE:-/var/cache/paas-kube}
RUN=${PAAS_KUBE_RUN:-/tmp/paas-kube}
API_PORT=${PAAS_KUBE_PORT:-16443}
ETCD_PORT=${PAAS_KUBE_ETCD_PORT:-23790}
BIN=$CACHE/bin
PKI=$RUN/pki
KUBECONFIG_FILE=$RUN/admin.kubeconfig
VERSION=1.20.2
DEB_VERSION=1.20.5+really1.20.2-1.1+deb12u1
BINARIES="kube-apiserver kube-controller-manager kube-scheduler kubelet"

say() { printf 'cluster: %s\n' "$*" >&2; }

built() { for b in $BINARIES pause; do [ -x "$BIN/$b" ] || return 1; done; }

build() {
  if built; then say "binaries cached in $BIN"; return 0; fi
  export DEBIAN_FRONTEND=noninteractive
  # Source packages come from the mirror the host's apt already uses.
  local mirror
  mirror=$(grep -hm1 '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | head -1 || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$mirror" ] || { say "no Debian mirror found in apt's sources"; exit 1; }
  local src_list=/etc/apt/sources.list.d/paas-kube-src.sources
  [ -f $src_list ] || printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" > $src_list
  apt-get update -qq
  apt-get install -y -qq etcd-server golang-go rsync jq gcc libc6-dev openssl iproute2 golang-github-modern-go-reflect2-dev >/dev/null
  local work=$CACHE/src tree=$CACHE/src/kubernetes-$VERSION
  mkdir -p "$work" "$BIN"
  if [ ! -d "$tree" ]; then
    (cd "$work" && apt-get source -qq --download-only "kubernetes=$DEB_VERSION" && tar xzf "kubernetes_1.20.5+really$VERSION.orig.tar.gz")
  fi
  cd "$tree"
  # The vendored reflect2 v1.0.1 crashes on Go >= 1.18; Debian ships the fixed 1.0.2.
  local reflect2=vendor/github.com/modern-go/reflect2 debian_reflect2=/usr/share/gocode/src/github.com/modern-go/reflect2
  rm -f $reflect2/*.go $reflect2/*.s
  cp $debian_reflect2/*.go $debian_reflect2/*.s $reflect2/
  # Without CAP_SYS_RESOURCE a negative oom_score_adj makes runc fail: the kubelet must not ask for one.
  sed -i 's/defaultSandboxOOMAdj int = -998/defaultSandboxOOMAdj int = 0/' pkg/kubelet/dockershim/docker_sandbox.go
  sed -i 's/guaranteedOOMScoreAdj int = -997/guaranteedOOMScoreAdj int = 0/' pkg/kubelet/qos/policy.go
  printf "KUBE_GIT_VERSION='v%s'\nKUBE_GIT_MAJOR='1'\nKUBE_GIT_MINOR='20'\nKUBE_GIT_TREE_STATE='clean'\n" $VERSION > "$CACHE/version.env"
  local go_bin
  go_bin=$(ls -d /usr/lib/go-1.*/bin | sort -V | tail -1)
  env PATH="$go_bin:$PATH" HOME="$CACHE" CGO_ENABLED=0 GOPROXY=off GOFLAGS= KUBE_GIT_VERSION_FILE="$CACHE/version.env" \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" >"$CACHE/make.log" 2>&1 \
    || { tail -30 "$CACHE/make.log"; exit 1; }
  for b in $BINARIES; do cp "_output/bin/$b" "$BIN/"; done
  gcc -Os -static -o "$BIN/pause" build/pause/linux/pause.c
  # The Go build cache is big and only a rebuild would read it.
  rm -rf "$CACHE/.cache" "$tree/_output"
  say "built into $BIN"
}

pki() {
  mkdir -p "$PKI"
  [ -f "$KUBECONFIG_FILE" ] && return 0
  (
    cd "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=paas-test-ca 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n' > ext.cnf
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile ext.cnf 2>/dev/null
    # The API server's client certificate for the kubelet (logs, exec, port-forward).
    openssl req -newkey rsa:2048 -nodes -keyout kubelet-client.key -out kubelet-client.csr \
      -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' > client-ext.cnf
    openssl x509 -req -in kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out kubelet-client.crt \
      -days 3650 -extfile client-ext.cnf 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    token=$(openssl rand -hex 16)
    echo "$token,admin,admin,\"system:masters\"" > tokens.csv
    chmod 600 tokens.csv ca.key sa.key apiserver.key kubelet-client.key
    cat > "$KUBECONFIG_FILE" <<KC
apiVersion: v1
kind: Config
clusters:
- name: paas-test
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: admin
  user: {token: "$token"}
contexts:
- name: paas-test
  context: {cluster: paas-test, user: admin}
current-context: paas-test
KC
    chmod 600 "$KUBECONFIG_FILE"
  )
}

api() { curl -sf --cacert "$PKI/ca.crt" -H "Authorization: Bearer $(cut -d, -f1 "$PKI/tokens.csv")" "https://127.0.0.1:$API_PORT$1"; }

start() { # name command...: run in the background, remember the PID, log to $RUN/logs/name.log
  local name=$1; shift
  "$@" >"$RUN/logs/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

alive_or_fail() { # name: fail with the end of its log when it died
  kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null || { say "$1 exited:"; tail -20 "$RUN/logs/$1.log" >&2; exit 1; }
}

wait_for() { # name seconds command...: poll command until it succeeds, while name is alive
  local name=$1 seconds=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    alive_or_fail "$name"
    [ $SECONDS -lt $deadline ] || { say "$name not ready after ${seconds}s:"; tail -20 "$RUN/logs/$name.log" >&2; exit 1; }
    sleep 0.2
  done
}

node_ready() {
  [ "$(api /api/v1/nodes/paas-node 2>/dev/null | jq -r '.status.conditions[]? | select(.type=="Ready") | .status')" = True ]
}

up() {
  built || { say "no binaries in $BIN: run '$0 build' first"; exit 1; }
  pki
  mkdir -p "$RUN/logs"
  start etcd etcd --name paas --data-dir "$RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "paas=http://127.0.0.1:$((ETCD_PORT + 1))" --log-level warn
  start apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" --insecure-port=0 \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
    --token-auth-file="$PKI/tokens.csv" --authorization-mode=RBAC --service-cluster-ip-range=10.0.0.0/24 \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" --allow-privileged=true \
    --kubelet-client-certificate="$PKI/kubelet-client.crt" --kubelet-client-key="$PKI/kubelet-client.key" \
    --kubelet-preferred-address-types=InternalIP
  wait_for apiserver 60 api /readyz
  local common=(--kubeconfig="$KUBECONFIG_FILE" --authentication-kubeconfig="$KUBECONFIG_FILE"
    --authorization-kubeconfig="$KUBECONFIG_FILE" --bind-address=127.0.0.1 --port=0 --leader-elect=false)
  start controller-manager "$BIN/kube-controller-manager" "${common[@]}" --cert-dir="$RUN/controller-manager" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --controllers='*,-nodeipam,-cloud-node-lifecycle'
  start scheduler "$BIN/kube-scheduler" "${common[@]}" --cert-dir="$RUN/scheduler"
  # The dockershim's sandbox image, made from the source tree's pause.c (no registry to pull it from).
  if ! docker image inspect paas-kube/pause:3.2 >/dev/null 2>&1; then
    local ctx
    ctx=$(mktemp -d)
    cp "$BIN/pause" "$ctx/"
    printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t paas-kube/pause:3.2 "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
  # The node's address: the Docker bridge's gateway, a local address that isn't loopback (which
  # a kubelet refuses) and isn't on an outside network. The API server reaches the kubelet there.
  local node_ip
  node_ip=$(ip -4 -o addr show docker0 | awk '{split($4, a, "/"); print a[1]; exit}')
  [ -n "$node_ip" ] || { say "the Docker bridge (docker0) has no IPv4 address"; exit 1; }
  sysctl -n vm.overcommit_memory kernel.panic kernel.panic_on_oops >"$RUN/sysctl.before"
  cat >"$RUN/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $node_ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: false}, webhook: {enabled: false}, x509: {clientCAFile: "$PKI/ca.crt"}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "50Mi", nodefs.available: "1%", imagefs.available: "1%"}
YAML
  start kubelet "$BIN/kubelet" --kubeconfig="$KUBECONFIG_FILE" --config="$RUN/kubelet.yaml" \
    --root-dir="$RUN/kubelet" --cert-dir="$RUN/kubelet/pki" --container-runtime=docker \
    --pod-infra-container-image=paas-kube/pause:3.2 --hostname-override=paas-node --node-ip="$node_ip" --oom-score-adj=0
  wait_for kubelet 120 node_ready
  echo "KUBECONFIG=$KUBECONFIG_FILE"
}

down() {
  local name pid
  for name in kubelet scheduler controller-manager apiserver etcd; do
    [ -f "$RUN/$name.pid" ] || continue
    pid=$(cat "$RUN/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$RUN/$name.pid"
  done
  if [ -f "$RUN/sysctl.before" ]; then
    local overcommit panic oops
    { read -r overcommit; read -r panic; read -r oops; } <"$RUN/sysctl.before"
    sysctl -q -w vm.overcommit_memory="$overcommit" kernel.panic="$panic" kernel.panic_on_oops="$oops" || true
    rm -f "$RUN/sysctl.before"
  fi
  local ids
  ids=$(docker ps -aq --filter label=io.kubernetes.pod.namespace 2>/dev/null || true)
  [ -z "$ids" ] || docker rm -f $ids >/dev/null
  # The kubelet leaves its root dir and its secret volumes mounted: unmount the deepest first.
  findmnt -rn -o TARGET | grep "^$RUN/kubelet" | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
  # The 1.20 kubelet also writes to these fixed paths.
  rm -rf "$RUN" /var/log/pods /var/log/containers /var/lib/dockershim /var/lib/kubelet
}

case "${1:-}" in
  build) build ;;
  up) up ;;
  down) down ;;
  *) echo "usage: $0 build|up|down" >&2; exit 2 ;;
esac
