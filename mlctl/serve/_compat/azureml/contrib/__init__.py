"""``azureml.contrib``: a namespace of several distributions; see ``azureml``."""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
