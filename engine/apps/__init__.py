"""The four applications behind ``python -m engine``: forecast, stocks, text, classify.

Each module has ``run(args=None, **options)`` returning a metrics dict, usable from Python::

    from engine.apps import forecast
    metrics = forecast.run(epochs=5, out="out/forecast", quiet=True)
"""
from engine.apps import classify, forecast, stocks, text

MODULES = {"forecast": forecast, "stocks": stocks, "text": text, "classify": classify}

__all__ = ["MODULES", "classify", "forecast", "stocks", "text"]
