"""The entry-script API of the reference server: ``aml_request`` and ``aml_response``."""
