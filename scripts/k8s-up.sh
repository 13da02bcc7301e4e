#!/bin/bash
# The Kubernetes tests' cluster: a real single-node Kubernetes v1.20.2 on 127.0.0.1 (scripts/k8s/,
# see its README) plus the OCI registry on 127.0.0.1:5000 it pulls images from. Idempotent:
# reuses the binaries in /tmp/k8s/bin when built (else builds them: ~10-15 min on 2 cores, once
# per machine), starts the cluster only when its API server does not answer, and the registry
# only when nothing answers on 127.0.0.1:5000. Needs root (containerd, kubelet, mounts).
set -euo pipefail
S=$(dirname "$(readlink -f "$0")")/k8s
R=/tmp/k8s
[ "$(id -u)" = 0 ] || { echo "k8s-up: needs root (kubelet, containerd); the Kubernetes tests will skip" >&2; exit 0; }

registry() {
  curl -s --max-time 2 -o /dev/null http://127.0.0.1:5000/v2/ && return 0
  command -v docker-registry >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >/dev/null
  mkdir -p $R/registry $R/pids $R/logs
  printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/registry/data\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:5000\n' $R > $R/registry/config.yml
  setsid nohup docker-registry serve $R/registry/config.yml > $R/logs/registry.log 2>&1 < /dev/null &
  echo $! > $R/pids/registry.pid
  for _ in $(seq 30); do curl -s --max-time 1 -o /dev/null http://127.0.0.1:5000/v2/ && return 0; sleep 0.5; done
  echo "k8s-up: the registry did not start (see $R/logs/registry.log)" >&2; return 1
}

ready() {
  [ "$(curl -sk --max-time 2 https://127.0.0.1:6443/readyz)" = ok ] || return 1
  [ "$($R/bin/kubectl --kubeconfig $R/kubeconfig get node 127.0.0.1 -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

registry
if [ ! -x $R/bin/kube-apiserver ] || [ ! -x $R/bin/kubelet ] || [ ! -x $R/bin/kubectl ]; then
  echo "k8s-up: building Kubernetes v1.20.2 (first run on this machine: ~10-15 min)" >&2
  bash $S/build.sh > $R-build.log 2>&1 || { echo "k8s-up: build failed, see $R-build.log" >&2; exit 1; }
fi
# The autoscaling tests register the metrics APIs on a process of their own (tests/metrics_api.py);
# one left behind by an interrupted run points at nothing, and an unavailable aggregated API stalls
# every namespace deletion, so it goes before any test runs.
forget_test_metrics_apis() {
  $R/bin/kubectl --kubeconfig $R/kubeconfig delete apiservice v1beta1.metrics.k8s.io \
    v1beta1.custom.metrics.k8s.io --ignore-not-found >/dev/null 2>&1 || true
}
# The pods' sandbox image exists only in the cluster's containerd (it cannot be pulled offline); one
# lost there (a hand-run prune, a disk-pressure eviction on a reused machine) fails every pod with
# "failed to pull docker.io/local/pause:1", so a running cluster gets it back before the tests.
ensure_local_images() {
  local a=/tmp/k8s/containerd/containerd.sock have
  have=$(ctr -a $a -n k8s.io images ls -q 2>/dev/null) || return 0
  for image in pause busybox; do
    grep -qx "docker.io/local/$image:1" <<<"$have" && continue
    echo "k8s-up: re-importing local/$image:1 into the cluster's containerd" >&2
    ctr -a $a -n k8s.io images import $R/images/$image.tar >/dev/null
  done
}
if ready; then ensure_local_images; forget_test_metrics_apis; echo "k8s-up: cluster already running"; exit 0; fi
bash $S/down.sh >/dev/null 2>&1 || true   # leftovers of a cluster that stopped half-way
bash $S/write-configs.sh
[ -f $R/images/pause.tar ] && [ -f $R/images/busybox.tar ] || bash $S/images.sh
bash $S/up.sh
ready || { echo "k8s-up: the node did not become Ready (logs in $R/logs)" >&2; exit 1; }
forget_test_metrics_apis
echo "k8s-up: cluster ready (kubeconfig $R/kubeconfig)"
