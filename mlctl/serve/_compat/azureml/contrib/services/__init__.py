"""Stand-in for ``azureml.contrib.services`` so Azure ML entry scripts run unchanged.

Only importable inside the scoring server, which appends ``mlctl/serve/_compat`` to ``sys.path``
(after site-packages, so an installed ``azureml-contrib-services`` wins).
"""
