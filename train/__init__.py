"""Offline side: archive -> CSV -> minibatch stream -> partial_fit -> evaluate -> pickles."""
