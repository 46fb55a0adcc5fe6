"""cryptoforecast: leak-free crypto price forecasting, evaluated after costs."""

__version__ = "0.1.0"
