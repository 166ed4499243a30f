"""Sentiment analysis: raw text in, polarity out (VADER movie-review sentences by default, offline)."""
