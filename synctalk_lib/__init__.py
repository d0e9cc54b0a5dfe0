"""SyncTalk: audio-driven talking heads (CVPR 2024), as a library with a CLI (``python -m synctalk_lib``).

This package never imports ComfyUI. Importing it is cheap: submodules load their heavy dependencies
(torch, mediapipe, PyAV) when used.
"""
__version__ = "0.1.0"
