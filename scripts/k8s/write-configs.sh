#!/bin/bash
# Writes containerd config, the lo-only CNI plugin + conflist, and the kubelet config.
set -e; mkdir -p /tmp/k8s/containerd /tmp/k8s/cni/bin /tmp/k8s/cni/net.d /tmp/k8s/cni/state
cat > /tmp/k8s/containerd/config.toml <<'X'
# Private containerd instance for the kubelet (separate from docker's containerd).
version = 2
root = "/tmp/k8s/containerd/root"
state = "/tmp/k8s/containerd/state"
[grpc]
  address = "/tmp/k8s/containerd/containerd.sock"
[ttrpc]
  address = "/tmp/k8s/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/local/pause:1"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # this VM withholds CAP_SYS_RESOURCE: runc cannot set oom_score_adj < 0 (sandbox wants -998)
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "/tmp/k8s/containerd/runc"
  # the local OCI registry (Debian's docker-registry on 127.0.0.1:5000) speaks plain http
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:5000"]
    endpoint = ["http://127.0.0.1:5000"]
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/tmp/k8s/cni/bin"
    conf_dir = "/tmp/k8s/cni/net.d"
[plugins."io.containerd.internal.v1.opt"]
  path = "/tmp/k8s/containerd/opt"
X
cat > /tmp/k8s/cni/bin/lo-only <<'X'
#!/bin/bash
# Fake CNI plugin: gives the pod NO external interface (its netns only has 'lo', brought up by
# containerd's built-in loopback network) and reports a unique 127.1.x.y "pod IP" for interface
# eth0 so containerd's CRI accepts the sandbox. No host interfaces or routes are created; nothing
# leaves loopback. For each port in the conflist's "forwardPorts", host connections to
# PODIP:PORT are relayed into the pod's 127.0.0.1:PORT (socat: one listener in the host netns on
# PODIP:PORT, one inside the pod netns, joined by a unix socket), so kubelet httpGet/tcpSocket
# probes and host clients reach the pod by its IP.
set -e
ST=/tmp/k8s/cni/state; mkdir -p $ST
conf=$(cat)
ver=$(printf '%s' "$conf" | sed -n 's/.*"cniVersion" *: *"\([^"]*\)".*/\1/p'); ver=${ver:-0.4.0}
ports=$(printf '%s' "$conf" | sed -n 's/.*"forwardPorts" *: *\[\([0-9, ]*\)\].*/\1/p' | tr ',' ' ')
stop_fwd() { [ -f "$ST/$1.fwd" ] || return 0
  while read -r pid; do kill "$pid" 2>/dev/null || true; done < "$ST/$1.fwd"
  rm -f "$ST/$1.fwd" "$ST/$1".*.sock; }
case "$CNI_COMMAND" in
ADD)
  exec 9>$ST/lock; flock 9
  if [ -f "$ST/$CNI_CONTAINERID" ]; then ip=$(cat "$ST/$CNI_CONTAINERID"); else
    n=$(( $(cat $ST/counter 2>/dev/null || echo 1) + 1 )); echo $n > $ST/counter
    ip="127.1.$(( (n / 250) % 250 )).$(( n % 250 + 2 ))"; echo $ip > "$ST/$CNI_CONTAINERID"; fi
  exec 9>&-
  if [ -n "$ports" ] && [ ! -f "$ST/$CNI_CONTAINERID.fwd" ]; then
    for p in $ports; do
      sock="$ST/$CNI_CONTAINERID.$p.sock"
      setsid nsenter --net="$CNI_NETNS" socat UNIX-LISTEN:"$sock",fork,unlink-early TCP:127.0.0.1:$p </dev/null >/dev/null 2>&1 &
      echo $! >> "$ST/$CNI_CONTAINERID.fwd"
      setsid socat TCP-LISTEN:$p,bind=$ip,fork,reuseaddr UNIX-CONNECT:"$sock" </dev/null >/dev/null 2>&1 &
      echo $! >> "$ST/$CNI_CONTAINERID.fwd"
    done
  fi
  printf '{"cniVersion":"%s","interfaces":[{"name":"eth0","sandbox":"%s"}],"ips":[{"version":"4","address":"%s/32","interface":0}],"routes":[],"dns":{}}\n' "$ver" "$CNI_NETNS" "$ip"
  ;;
DEL) stop_fwd "$CNI_CONTAINERID"; rm -f "$ST/$CNI_CONTAINERID" ;;
CHECK) ;;
VERSION) printf '{"cniVersion":"%s","supportedVersions":["0.3.0","0.3.1","0.4.0"]}\n' "$ver" ;;
*) echo "{\"code\":4,\"msg\":\"unknown CNI_COMMAND $CNI_COMMAND\"}"; exit 1 ;;
esac
X
chmod +x /tmp/k8s/cni/bin/lo-only; ln -sf /usr/lib/cni/loopback /tmp/k8s/cni/bin/loopback
cat > /tmp/k8s/cni/net.d/10-lo-only.conflist <<'X'
{"cniVersion":"0.4.0","name":"lo-only","plugins":[{"type":"lo-only","forwardPorts":[5001,8080,8890]}]}
X
cat > /tmp/k8s/kubelet-config.yaml <<'X'
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: /tmp/k8s/pki/ca.crt}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failSwapOn: false
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: {"memory.available": "100Mi", "nodefs.available": "2%", "imagefs.available": "2%"}
serializeImagePulls: false
volumePluginDir: /tmp/k8s/kubelet/volume-plugins
# mounted Secrets follow their object within seconds (mlctl service keys --regenerate; default 1m)
syncFrequency: 10s
X
echo configs written
