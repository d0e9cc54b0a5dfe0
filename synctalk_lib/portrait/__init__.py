"""Portrait-Sync Generator: background, subject masks and pasting rendered faces back into the original frames."""
