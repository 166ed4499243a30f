"""Text generation: a character-level GPT (or LSTM) on Shakespeare, with greedy/temperature/top-k/top-p sampling."""
