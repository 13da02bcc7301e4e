"""Test infrastructure for ``mlctl edge`` (not shipped): stand-ins for what the tests cannot reach.

* ``hub`` + ``hub_http``: a fake IoT Hub service API over HTTPS on 127.0.0.1, driven by the
  unmodified ``azure-iot-hub`` client (wire reference section C), with ``query`` for target
  conditions and metric queries.
* ``device``: a simulated IoT Edge runtime per device, running the modules on the local Docker
  engine (host networking) and reporting like edgeAgent (wire reference D).
* ``methods``: module direct methods through the hub (``POST /twins/{id}/modules/{m}/methods``)
  and the simulated edgeAgent's ``GetModuleLogs`` / ``RestartModule`` / ``ping`` answers, read
  from and done to the real containers.
* ``fleet``: starts a simulated device for every connection string file that appears in a folder
  (the "provisioning" of the tests).
* ``broker`` + ``workload``: Mosquitto in edgeHub's MQTT place (plus the test's side of edgeHub:
  routing into a module's input, its twin service) and the IoT Edge daemon's workload API
  (trust bundle, SAS signing) on a Unix socket, for message scoring inside modules.

Real, not faked: the Docker engine, the OCI registry (Debian's docker-registry with htpasswd), the
images mlctl builds, the scoring servers in the modules, the HTTP between them.
"""
