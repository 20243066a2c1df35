"""The window's controllers and models: what runs on workers (training, generation, a ladder,
token counting), the model in hand, the loss history, what the window remembers. No widgets."""
