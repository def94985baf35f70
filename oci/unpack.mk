# oci/: layer unpacking, platforms and indexes, layout reading (see unpack.h, platform.h).
