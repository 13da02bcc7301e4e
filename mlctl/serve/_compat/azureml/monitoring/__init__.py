"""``from azureml.monitoring import ModelDataCollector`` inside the scoring server (see ``modeldatacollector``)."""

from azureml.monitoring.modeldatacollector import ModelDataCollector

__all__ = ["ModelDataCollector"]
