"""The dashboard: a web app over the status reader and the engine's commands."""

__all__: list[str] = []
