/* tests/fuzz/fuzz-unpack.c - libFuzzer target for oci/unpack.c: arbitrary bytes (plain, gzip or
 * zstd, as their magic says) applied as a layer to a directory inside a sandbox.
 *
 * Checks: a failure is a negative errno with a message; nothing outside the destination is
 * created, changed or removed (the sandbox holds only the destination and an untouched canary
 * file); the destination is still a directory.  Files are capped at 64 MiB (RLIMIT_FSIZE) so a
 * decompression bomb ends as an error instead of filling the disk.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/fs.h"
#include "oci/unpack.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CANARY "canary content"

static char box[] = "/tmp/ossb-fuzz-unpack-XXXXXX";
static char *dest, *canary;

static void cleanup_box(void)
{
        (void) ossb_rm_rf(box);
}

static void setup(void)
{
        struct rlimit rl = { 64 << 20, 64 << 20 };
        if (!mkdtemp(box))
                abort();
        dest = ossb_path_join(box, "root");
        canary = ossb_path_join(box, "canary");
        if (!dest || !canary || ossb_write_file_atomic(canary, CANARY, strlen(CANARY), 0644, NULL) < 0)
                abort();
        signal(SIGXFSZ, SIG_IGN);
        (void) setrlimit(RLIMIT_FSIZE, &rl);
        atexit(cleanup_box);
}

/* The sandbox holds exactly "root" (a directory) and the unchanged canary. */
static void check_box(void)
{
        DIR *d = opendir(box);
        struct dirent *de;
        struct stat st;
        if (!d)
                abort();
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "root") &&
                    strcmp(de->d_name, "canary"))
                        abort();
        closedir(d);
        if (lstat(dest, &st) < 0 || !S_ISDIR(st.st_mode))
                abort();
        _cleanup_free_ char *c = NULL;
        size_t len = 0;
        if (lstat(canary, &st) < 0 || !S_ISREG(st.st_mode) || ossb_read_file(canary, 1024, &c, &len, NULL) < 0 ||
            len != strlen(CANARY) || memcmp(c, CANARY, len) != 0)
                abort();
}

static int make_writable(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        if (type == FTW_D || type == FTW_DNR)
                (void) chmod(path, 0700);
        return 0;
}

/* Empty the destination; without privileges, read-only directories need u+rwx first. */
static void clear_dest(void)
{
        if (ossb_rm_rf(dest) >= 0)
                return;
        (void) chmod(dest, 0700);
        (void) nftw(dest, make_writable, 16, FTW_PHYS);
        if (ossb_rm_rf(dest) < 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        _cleanup_error_ struct ossb_error *e = NULL;
        char diff_id[80];
        struct ossb_unpack_stats st;

        if (!dest)
                setup();
        _cleanup_close_ int fd = memfd_create("layer", MFD_CLOEXEC);
        if (fd < 0 || ossb_write_all(fd, data, size) < 0 || lseek(fd, 0, SEEK_SET) != 0)
                abort();
        int r = ossb_layer_unpack(fd, "fuzz", dest, NULL, diff_id, &st, &e);
        if (r < 0 && (!e || !e->msg || e->code != r))
                abort();
        if (r >= 0 && (e || !ossb_digest_is_valid(diff_id) || st.entries < 0 || st.bytes < 0))
                abort();
        check_box();
        clear_dest();
        return 0;
}
