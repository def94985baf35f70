/* oci/oci.h - the public interface of oci/: the content store, layer writer, image model and
 * exporters.  Other modules include this (or one of the headers below); oci/oci-internal.h is
 * private to oci/.
 */
#ifndef OSSB_OCI_OCI_H
#define OSSB_OCI_OCI_H

#include "oci/compress.h"
#include "oci/image.h"
#include "oci/layer.h"
#include "oci/layout.h"
#include "oci/store.h"

#endif
