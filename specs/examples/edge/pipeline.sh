#!/usr/bin/env bash
# Provisioning-host steps for IoT Edge with only mlctl's JSON output and exit codes:
# one device gets the diabetes model as a module, then a tagged fleet is rolled from model
# version 1 to 2 with an at-scale deployment (and a layered canary first), then all is deleted.
#
#   EDGE_HUB_CONNECTION_STRING=... EDGE_REGISTRY=host:port EDGE_REGISTRY_PASSWORD=... \
#   MLCTL_REGISTRY=host:port MLCTL_REGISTRY_USERNAME=edge MLCTL_REGISTRY_PASSWORD=... \
#   EDGE_MODEL_V1=model.pkl EDGE_MODEL_V2=model2.pkl EDGE_EXPECTED_V1='[...]' EDGE_EXPECTED_V2='[...]' \
#   EDGE_DEVICES_DIR=DIR EDGE_DEVICE=edge-device-1 EDGE_PORT=9001 EDGE_FLEET="f1:9002 f2:9003 f3:9004" \
#   bash specs/examples/edge/pipeline.sh
#
# EDGE_DEVICES_DIR is where device connection strings are written (0600), for whoever
# provisions the devices; EDGE_HUB_CA (optional) is a CA bundle for the hub's certificate.
# Any failing step stops the script with mlctl's exit code.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mlctl=${MLCTL:-mlctl}
# `get EXPR`: print a Python expression over the JSON result `d` read from stdin (as JSON)
get() { python3 -c 'import json, sys; d = json.load(sys.stdin); v = eval(sys.argv[1]); print(v if isinstance(v, str) else json.dumps(v))' "$1"; }
sample='{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}'
predicts() {  # PORT EXPECTED: the module on 127.0.0.1:PORT answers the sample with EXPECTED (1e-6)
  python3 - "$1" "$2" "$sample" <<'PY'
import json, sys, time, urllib.request
port, expected, sample = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3].encode()
deadline = time.monotonic() + 90
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/score", sample, timeout=5) as response:
            answer = json.loads(response.read())
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"nothing answers on port {port}")
        time.sleep(0.5)
if len(answer) != len(expected) or any(abs(a - e) > 1e-6 for a, e in zip(answer, expected)):
    sys.exit(f"port {port}: {answer} is not {expected}")
print(f"port {port}: {answer}")
PY
}
ca=${EDGE_HUB_CA:+--option ca_file=$EDGE_HUB_CA}

$mlctl -q -o json target add hub1 --kind iot-edge --option connection_string_env=EDGE_HUB_CONNECTION_STRING $ca | get 'd["name"]'
$mlctl -q -o json model register --name diabetes --path "$EDGE_MODEL_V1" | get 'd["version"]'
$mlctl -q -o json image build -f "$here/image.yaml" --push | get 'd["pushed"]'

# one device
$mlctl -q -o json edge device create "$EDGE_DEVICE" \
  --connection-string-file "$EDGE_DEVICES_DIR/$EDGE_DEVICE.connection-string" | get 'd["iot_edge"]'
$mlctl -q -o json edge push -f "$here/device.yaml" --timeout 120 | get 'd["status"]["modules"]["diabetes"]["runtime_status"]'
predicts "$EDGE_PORT" "$EDGE_EXPECTED_V1"
$mlctl -q -o json edge status "$EDGE_DEVICE" | get 'd["last_desired_status"]["code"]'

# a fleet of three tagged devices, on model version 1 (image 2, of model version 2, is built but
# not pushed: `edge push` pushes it when a deployment first needs it)
$mlctl -q -o json model register --name diabetes --path "$EDGE_MODEL_V2" | get 'd["version"]'
$mlctl -q -o json image build -f "$here/image.yaml" | get 'd["name"] + ":" + str(d["version"]) + " pushed: " + str("pushed" in d)'
ring=canary
for device in $EDGE_FLEET; do
  id=${device%%:*}
  $mlctl -q -o json edge device create "$id" --tag fleet=diabetes --tag ring=$ring \
    --connection-string-file "$EDGE_DEVICES_DIR/$id.connection-string" | get 'd["tags"]'
  ring=main
done
$mlctl -q -o json edge push -f "$here/fleet.yaml" --timeout 120 | get 'd["counts"]'
for device in $EDGE_FLEET; do predicts "${device#*:}" "$EDGE_EXPECTED_V1"; done

# the canary ring (the first device) on model version 2 (an image built from it), layered on top
$mlctl -q -o json edge push -f "$here/canary.yaml" --timeout 120 | get 'd["counts"]'
set -- $EDGE_FLEET
predicts "${1#*:}" "$EDGE_EXPECTED_V2"
predicts "${2#*:}" "$EDGE_EXPECTED_V1"

# the whole fleet on version 2: a new deployment version replaces the old one once applied
$mlctl -q -o json edge push -f "$here/fleet.yaml" --set modules.diabetes.image=edge-diabetes:2 --timeout 120 \
  | get 'd["deployment"], d["retired"], d["counts"]'
for device in $EDGE_FLEET; do predicts "${device#*:}" "$EDGE_EXPECTED_V2"; done
$mlctl -q -o json edge deployment list | get '[(c["id"], c["targeted"], c["applied"], c["reported_successful"]) for c in d]'

# delete everything
$mlctl -q -o json edge deployment delete --name diabetes-fleet | get '[r["id"] for r in d]'
$mlctl -q -o json edge deployment delete --name diabetes-canary | get '[r["deleted"] for r in d]'
for device in "$EDGE_DEVICE" $EDGE_FLEET; do
  $mlctl -q -o json edge device delete "${device%%:*}" | get 'd["deleted"]'
done
$mlctl -q -o json edge deployment list | get 'len(d)'
$mlctl -q -o json edge device list | get 'len(d)'
$mlctl -q -o json target remove hub1 | get 'd["removed"]'
