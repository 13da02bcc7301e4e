"""An Azure ML SDK v1 entry script for binary data (the "advanced entry script" pattern): a client
uploads an image as multipart/form-data field "image", run() reads request.files["image"].

It answers the image's width and height, read from the PNG header with the standard library
(Azure's sample opens it with Pillow the same way)."""

import json
import struct

from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

PNG = b"\x89PNG\r\n\x1a\n"


def init():
    pass


@rawhttp
def run(request: AMLRequest):
    if request.method == "GET":
        return AMLResponse(request.full_path.encode(), 200)  # echo the query, as Azure's sample
    if request.method != "POST":
        return AMLResponse("bad request", 500)
    upload = request.files["image"]
    head = upload.read(24)
    if not head.startswith(PNG):
        return AMLResponse({"error": "not a PNG image"}, 400, json_str=True)
    width, height = struct.unpack(">II", head[16:24])
    return AMLResponse(json.dumps({"filename": upload.filename, "size": [width, height]}), 200)
