"""Connect: the browser OAuth flow (connect sessions, consent, callback) and its grants."""
