"""Face capture: MediaPipe landmarks and blendshapes, expression coefficients, face region masks."""
