# registry/: credential sources, auth challenges and tokens, registries.conf (see the headers).
