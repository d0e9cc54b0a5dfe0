"""Audio side of the Face-Sync Controller: everything between a waveform and one feature row per video frame.

- ``resample``: band-limited (Kaiser-windowed sinc) resampling in PyTorch, any rate to any rate, CPU or GPU.
- ``mel``: the lip-sync mel front end the audio-visual encoder expects (16 kHz, 80 Slaney bands, [-4, 4]).
- ``windows``: one 16-mel-frame window per video frame at any fps, aligned like the original at 25 fps.
- ``ave``: the audio-visual encoder (AVE) network with the official checkpoint layout, and its loader.
- ``features``: ``encode_audio`` -> ``AudioFeatures`` (AVE 512-d or the flattened mel window).
- ``ave_train``: pre-training of the AVE on talking-face clips (lip-sync discriminator + reconstruction); its
  networks, data, metrics and checkpoints are in ``ave_train_nets``, ``_data``, ``_metrics`` and ``_checkpoint``.

Importing this package is cheap; submodules import torch when used.
"""
