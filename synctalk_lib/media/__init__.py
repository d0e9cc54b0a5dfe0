"""Video and audio decoding/encoding (PyAV), resampling, cropping, and the clip cache."""
