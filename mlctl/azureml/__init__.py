"""``mlctl import azureml``: Azure ML SDK v1 / CLI v1 config files -> mlctl specs.

The input is what ``az ml model deploy --ic inferenceconfig.json --dc deploymentconfig.json``
read, YAML or JSON (the v1 CLI took either): every key azureml-core's parsers read
(``azureml._model_management._util.deploy_config_dict_to_obj`` for the deployment configuration,
the CLI's ``file_to_inference_config`` for the inference configuration) is mapped to its mlctl
spec key or reported as not carried, with the reason; keys v1 never read are warned about with a
did-you-mean, where v1 ignored them silently.

Layout: ``source`` reads a file (the only I/O besides the existence checks of the paths the
files name), ``report`` holds the per-key report, ``inference`` and ``deployment`` translate one
file each, purely, and ``translate`` puts the specs together. The CLI (``mlctl.cli.import_``)
writes the files, validates them and stores keys.
"""

from __future__ import annotations

from mlctl.azureml.report import Entry
from mlctl.azureml.source import Source, read
from mlctl.azureml.translate import Translation, translate

__all__ = ["Entry", "Source", "Translation", "read", "translate"]
