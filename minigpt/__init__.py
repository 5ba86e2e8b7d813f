"""MiniGPT-ES: the shared logic behind the DVC stages in stages/."""
