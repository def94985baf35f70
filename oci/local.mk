# oci/: content store, layer writer, image model, layout and docker-archive writers.
