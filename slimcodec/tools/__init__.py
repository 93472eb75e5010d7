"""Programs built on the library (training, ...); the library never imports this package."""
