#!/bin/bash
# Writes kubeconfigs (token auth, CA embedded by path) for admin, controller-manager, scheduler, kubelet.
set -euo pipefail
cd /tmp/k8s
tok() { awk -F, -v u="$1" '$2==u{print $1}' /tmp/k8s/tokens.csv; }
mk() { # file user
cat > "$1" <<X
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: /tmp/k8s/pki/ca.crt
users:
- name: $2
  user:
    token: $(tok "$2")
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
X
chmod 600 "$1"
}
mk /tmp/k8s/kubeconfig admin
mk /tmp/k8s/controller-manager.kubeconfig system:kube-controller-manager
mk /tmp/k8s/scheduler.kubeconfig system:kube-scheduler
mk /tmp/k8s/kubelet.kubeconfig "system:node:127.0.0.1"
mk /tmp/k8s/restricted.kubeconfig mlctl-restricted  # mlctl tests: no RBAC binding
echo ok
