"""Stand-in for azureml-inference-server-http's public modules, for entry scripts written against 1.x.

Only ``api.aml_request`` (``rawhttp``, ``AMLRequest``) and ``api.aml_response`` (``AMLResponse``)
exist: the parts of the package a scoring script imports. On ``sys.path`` after site-packages, so
an installed package wins (and mlctl recognises its ``@rawhttp`` too).
"""
