"""Azure IoT Edge: models as IoT Edge modules on devices registered in an IoT Hub.

Not a web-service target (``mlctl.targets``): a device runs what its deployment manifest says.

* ``spec``: the frozen records of ``kind: EdgeDeployment`` documents.
* ``manifest``: the pure renderer (spec -> ``modulesContent``), createOptions chunking and
  validation against the official schemas (copies in ``schemas/``).
* ``hub``: the IoT Hub service API through ``azure-iot-hub`` (imported lazily).
* ``wait``: polling devices and deployments until they run.
"""
