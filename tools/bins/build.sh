#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kubectl, cert-manager's issuer controllers, and the Gateway API conformance suite's echo server and CoreDNS from Go modules into bin/ (or $BIN_DIR) for the
# sandbox and the integration tests. A binary already in bin/ and built from the same pins is
# kept; built binaries are also kept in a cache outside the work tree ($CROSSGATE_BIN_CACHE,
# default ~/.cache/crossgate/bin) so that a fresh clone on the same machine does not rebuild.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
bindir=${BIN_DIR:-$root/bin}
cache=${CROSSGATE_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crossgate/bin}
k8s_version=v1.36.3
mkdir -p "$bindir" "$cache"

kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=36"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# build NAME MODULE_DIR PACKAGE LDFLAGS
build() {
  local name=$1 moddir=$root/$2 pkg=$3 ldflags=$4
  local stamp
  stamp=$( (cat "$moddir/go.mod" "$moddir/go.sum"; go version; echo "$pkg $ldflags") | sha256sum | cut -c1-16)
  if [[ -x $bindir/$name && "$(cat "$bindir/.$name.stamp" 2>/dev/null)" == "$stamp" ]]; then
    echo "bins: $name is up to date"
    return
  fi
  if [[ ! -x $cache/$stamp/$name ]]; then
    echo "bins: building $name from $pkg (kube-apiserver takes about 10 minutes on 2 cores) ..."
    local start=$SECONDS
    mkdir -p "$cache/$stamp"
    (cd "$moddir" && go build -trimpath -ldflags "$ldflags" -o "$cache/$stamp/$name.tmp" "$pkg")
    mv "$cache/$stamp/$name.tmp" "$cache/$stamp/$name"
    echo "bins: built $name in $((SECONDS - start))s"
  else
    echo "bins: $name taken from the cache $cache/$stamp"
  fi
  cp "$cache/$stamp/$name" "$bindir/$name.tmp" && mv "$bindir/$name.tmp" "$bindir/$name"
  echo "$stamp" > "$bindir/.$name.stamp"
}

want=${*:-etcd kube-apiserver kube-controller-manager kubectl cert-manager-controller echo-basic coredns}
for b in $want; do
  case $b in
    etcd) build etcd tools/bins/etcd ./cmd/etcd "-s -w" ;;
    kube-apiserver) build kube-apiserver tools/bins/k8s k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags" ;;
    kubectl) build kubectl tools/bins/k8s k8s.io/kubernetes/cmd/kubectl "$kube_ldflags" ;;
    kube-controller-manager) build kube-controller-manager tools/bins/kcm k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags" ;;
    cert-manager-controller) build cert-manager-controller tools/bins/certmanager . "-s -w" ;;
    echo-basic) build echo-basic tools/bins/echo sigs.k8s.io/gateway-api/conformance/echo-basic "-s -w" ;;
    coredns) build coredns tools/bins/coredns github.com/coredns/coredns "-s -w" ;;
    golangci-lint) build golangci-lint tools/lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "-s -w" ;;
    *) echo "bins: unknown binary $b (known: etcd kube-apiserver kube-controller-manager kubectl cert-manager-controller echo-basic coredns golangci-lint)" >&2; exit 2 ;;
  esac
done
