#!/bin/bash
# Generates CA, apiserver serving cert, apiserver->kubelet client cert, SA keypair, static tokens.
set -euo pipefail
P=/tmp/k8s/pki; mkdir -p $P; cd $P
[ -f ca.key ] || openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=local-k8s-ca" 2>/dev/null
cat > apiserver.ext <<X
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
X
openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' > client.ext
openssl req -newkey rsa:2048 -nodes -keyout apiserver-kubelet-client.key -out apiserver-kubelet-client.csr -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" 2>/dev/null
openssl x509 -req -in apiserver-kubelet-client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver-kubelet-client.crt -days 3650 -extfile client.ext 2>/dev/null
[ -f sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; }
# static token file: token,user,uid,"group1,group2"
if [ ! -f /tmp/k8s/tokens.csv ]; then
  t() { head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
  {
  echo "$(t),admin,admin,system:masters"
  echo "$(t),system:kube-controller-manager,kcm"
  echo "$(t),system:kube-scheduler,sched"
  echo "$(t),system:node:127.0.0.1,node,system:nodes"
  } > /tmp/k8s/tokens.csv
  chmod 600 /tmp/k8s/tokens.csv
fi
# mlctl's tests: a user with no RBAC binding, so every request it makes is forbidden (403)
grep -q ',mlctl-restricted,' /tmp/k8s/tokens.csv || echo "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n'),mlctl-restricted,restricted" >> /tmp/k8s/tokens.csv
echo ok
