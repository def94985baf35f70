# registry/: the HTTP client, sessions, blob transfers, blob provenance (see client.h).
