"""The mlctl scoring server: runs an Azure ML entry script as an HTTP web service.

Run it as ``python -m mlctl.serve --entry-script score.py --model-dir DIR --port 8890``. It is also
the runtime copied into environments and images, so it imports nothing of the CLI (typer, rich,
ruamel, jsonschema, docker, kubernetes, azure): only the standard library, httptools and uvloop
(its own HTTP layer, ``mlctl.serve.http``), and uvicorn only where httptools is missing.
"""
