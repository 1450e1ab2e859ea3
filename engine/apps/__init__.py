"""The applications behind ``python -m engine``: forecast, stocks, text, classify, speech.

Each module has ``run(args=None, **options)`` returning a metrics dict, usable from Python::

    from engine.apps import forecast
    metrics = forecast.run(epochs=5, out="out/forecast", quiet=True)
"""
from engine.apps import classify, forecast, speech, stocks, text

MODULES = {"forecast": forecast, "stocks": stocks, "text": text, "classify": classify,
           "speech": speech}

__all__ = ["MODULES", "classify", "forecast", "speech", "stocks", "text"]
