/* tests/unit/test-oci-layout-read.c - oci/layout-read.c (ossb_layout_read) and oci/store.c's
 * ossb_store_verify: layouts written by ossb_layout_write_dir/_tar read back into a fresh
 * store (by name, the only entry, several entries), hand-made layouts (a nested index, a
 * gzip-compressed tar, missing, corrupt and wrongly sized blobs, bad oci-layout files), and
 * store verification (a corrupted blob reported and removed, junk names, stale ingest files). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "common/cleanup.h"
#include "common/fs.h"
#include "common/strbuf.h"
#include "oci/oci.h"
#include "oci/platform.h"
#include "tests/unit/tap.h"

static char tmpdir[] = "/tmp/ossb-test-layout-read-XXXXXX";
static struct ossb_store *store;

static inline void json_putp(json_object **o)
{
        if (*o)
                json_object_put(*o);
}
#define _cleanup_json_ __attribute__((cleanup(json_putp)))

static char *sub(const char *name)
{
        return ossb_path_join(tmpdir, name);
}

/* ---- a test image ---- */

struct image {
        struct ossb_descriptor manifest, config, layer;
        char diff_id[OSSB_DIGEST_STR_LEN + 1];
};

static void image_clear(struct image *im)
{
        ossb_descriptor_clear(&im->manifest);
        ossb_descriptor_clear(&im->config);
        ossb_descriptor_clear(&im->layer);
}

static int make_image(struct ossb_store *s, const char *content, struct image *im)
{
        struct ossb_layer_opts opts = { .compression = OSSB_COMPRESSION_GZIP, .level = -1, .source_date_epoch = 0 };
        struct ossb_layer_writer *w = NULL;
        const struct ossb_layer_entry file = { .path = "hello.txt", .type = OSSB_ENTRY_FILE, .mode = 0644,
                                               .size = (int64_t) strlen(content) };
        char *cfg = NULL;
        int r = ossb_layer_writer_new(s, &opts, &w, NULL);
        if (r >= 0)
                r = ossb_layer_writer_add_data(w, &file, content, strlen(content), NULL);
        if (r >= 0)
                r = ossb_layer_writer_finish(w, im->layer.digest, &im->layer.size, im->diff_id, NULL);
        ossb_layer_writer_free(w);
        if (r < 0)
                return r;
        im->layer.media_type = strdup(OSSB_MT_OCI_LAYER_GZIP);
        if (asprintf(&cfg, "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
                           "\"diff_ids\":[\"%s\"]}}", im->diff_id) < 0)
                return -ENOMEM;
        _cleanup_json_ json_object *o = json_tokener_parse(cfg);
        free(cfg);
        if (!o || !im->layer.media_type)
                return -ENOMEM;
        return ossb_image_write(s, o, &im->layer, 1, NULL, &im->manifest, &im->config, NULL);
}

static int read_layout(const char *path, const char *ref, struct ossb_descriptor *ret, struct ossb_store **ret_store,
                       struct ossb_error **err)
{
        static int n;
        char name[32];
        snprintf(name, sizeof(name), "store-%d", n++);
        _cleanup_free_ char *p = sub(name);
        struct ossb_store *s = NULL;
        int r = ossb_store_open(p, &s, NULL);
        if (r < 0)
                return r;
        r = ossb_layout_read(s, path, ref, ret, err);
        if (ret_store)
                *ret_store = s;
        else
                ossb_store_free(s);
        return r;
}

/* ---- layouts written by the exporters ---- */

static void check_read(const char *path, const char *ref, const struct image *im)
{
        struct ossb_descriptor d = { 0 };
        struct ossb_store *s = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = read_layout(path, ref, &d, &s, &e);
        if (r < 0)
                fprintf(stderr, "# %s\n", e->msg);
        ASSERT_INTEQ(r, 0);
        ASSERT_STREQ(d.digest, im->manifest.digest);
        ASSERT_INTEQ(d.size, im->manifest.size);
        ASSERT_STREQ(d.media_type, im->manifest.media_type);
        ASSERT(ossb_store_has(s, im->manifest.digest));
        ASSERT(ossb_store_has(s, im->config.digest));
        ASSERT(ossb_store_has(s, im->layer.digest));
        int64_t ok = 0;
        char **bad = NULL;
        ASSERT(ossb_store_verify(s, false, &ok, &bad, NULL) == 0);
        ASSERT_INTEQ(ok, 3);
        ASSERT_INTEQ(ossb_strv_length(bad), 0);
        ossb_strv_free(bad);
        ossb_store_free(s);
        ossb_descriptor_clear(&d);
}

static void test_dir_and_tar(void)
{
        struct image im = { 0 };
        _cleanup_free_ char *dir = sub("layout"), *tar = sub("layout.tar");
        const struct ossb_layout_tag tag = { "app:1", "example.com/app:1" };
        ASSERT(make_image(store, "one\n", &im) == 0);
        ASSERT(ossb_layout_write_dir(store, dir, &im.manifest, &tag, 1, NULL) == 0);
        ASSERT(ossb_layout_write_tar(store, tar, &im.manifest, &tag, 1, NULL) == 0);
        check_read(dir, "app:1", &im);
        check_read(dir, NULL, &im);
        check_read(tar, "app:1", &im);
        check_read(tar, NULL, &im);

        /* a name that is not there */
        struct ossb_descriptor d = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT_INTEQ(read_layout(dir, "app:2", &d, NULL, &e), -ENOENT);
        ASSERT(strstr(e->msg, "app:2") && strstr(e->msg, "app:1") && strstr(e->msg, dir));

        /* reading into a store that has the blobs already */
        ASSERT(ossb_layout_read(store, tar, "app:1", &d, NULL) == 0);
        ASSERT_STREQ(d.digest, im.manifest.digest);
        ossb_descriptor_clear(&d);
        image_clear(&im);
}

static void test_several_entries(void)
{
        struct image a = { 0 }, b = { 0 };
        _cleanup_free_ char *dir = sub("multi"), *same = sub("same");
        const struct ossb_layout_tag ta = { "a:1", NULL }, tb = { "b:1", NULL };
        const struct ossb_layout_tag both[] = { { "x:1", NULL }, { "x:2", NULL } };
        ASSERT(make_image(store, "a\n", &a) == 0);
        ASSERT(make_image(store, "b\n", &b) == 0);
        ASSERT(ossb_layout_write_dir(store, dir, &a.manifest, &ta, 1, NULL) == 0);
        ASSERT(ossb_layout_write_dir(store, dir, &b.manifest, &tb, 1, NULL) == 0);
        check_read(dir, "a:1", &a);
        check_read(dir, "b:1", &b);
        struct ossb_descriptor d = { 0 };
        _cleanup_error_ struct ossb_error *e = NULL;
        ASSERT_INTEQ(read_layout(dir, NULL, &d, NULL, &e), -EINVAL);
        ASSERT(strstr(e->msg, "a:1, b:1"));
        /* one image under two names: no name needed */
        ASSERT(ossb_layout_write_dir(store, same, &a.manifest, both, 2, NULL) == 0);
        check_read(same, NULL, &a);
        image_clear(&a);
        image_clear(&b);
}

/* ---- hand-made layouts ---- */

static int copy_blob(const char *digest, const char *blobs_dir)
{
        _cleanup_free_ char *dst = ossb_path_join(blobs_dir, digest + 7);
        _cleanup_close_ int in = -1;
        if (!dst || ossb_store_open_blob(store, digest, &in, NULL) < 0)
                return -1;
        _cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        return out < 0 ? -1 : ossb_copy_fd(in, out);
}

/* dir/oci-layout (`layout_file`), dir/index.json, and the given blobs from the store. */
static int make_layout(const char *dir, const char *layout_file, const char *index_json, char **digests)
{
        _cleanup_free_ char *blobs = ossb_path_join(dir, "blobs/sha256");
        _cleanup_free_ char *lf = ossb_path_join(dir, "oci-layout"), *ix = ossb_path_join(dir, "index.json");
        if (ossb_rm_rf(dir) < 0 || ossb_mkdir_p(blobs, 0755) < 0)
                return -1;
        if (layout_file && ossb_write_file_atomic(lf, layout_file, strlen(layout_file), 0644, NULL) < 0)
                return -1;
        if (index_json && ossb_write_file_atomic(ix, index_json, strlen(index_json), 0644, NULL) < 0)
                return -1;
        for (size_t i = 0; digests && digests[i]; i++)
                if (copy_blob(digests[i], blobs) < 0)
                        return -1;
        return 0;
}

static char *entry_json(const struct ossb_descriptor *d, int64_t size)
{
        char *s = NULL;
        if (asprintf(&s, "{\"schemaVersion\":2,\"manifests\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%lld}]}",
                     d->media_type, d->digest, (long long) size) < 0)
                return NULL;
        return s;
}

static const char LAYOUT_FILE[] = "{\"imageLayoutVersion\":\"1.0.0\"}";

static void test_nested_index(void)
{
        struct image im = { 0 };
        char idx_digest[OSSB_DIGEST_STR_LEN + 1];
        _cleanup_free_ char *dir = sub("nested"), *idx = NULL, *top = NULL;
        ASSERT(make_image(store, "nested\n", &im) == 0);
        ASSERT(asprintf(&idx, "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
                              "\"digest\":\"%s\",\"size\":%lld,\"platform\":{\"os\":\"linux\",\"architecture\":"
                              "\"amd64\"}}]}",
                        OSSB_MT_OCI_INDEX, OSSB_MT_OCI_MANIFEST, im.manifest.digest,
                        (long long) im.manifest.size) >= 0);
        ASSERT(ossb_store_put(store, idx, strlen(idx), NULL, idx_digest, NULL) == 0);
        struct ossb_descriptor id = { .media_type = (char *) OSSB_MT_OCI_INDEX, .size = (int64_t) strlen(idx) };
        memcpy(id.digest, idx_digest, sizeof(idx_digest));
        top = entry_json(&id, id.size);
        char *blobs[] = { idx_digest, im.manifest.digest, im.config.digest, im.layer.digest, NULL };
        ASSERT(make_layout(dir, LAYOUT_FILE, top, blobs) == 0);

        struct ossb_descriptor d = { 0 };
        struct ossb_store *s = NULL;
        _cleanup_error_ struct ossb_error *e = NULL;
        int r = read_layout(dir, NULL, &d, &s, &e);
        if (r < 0)
                fprintf(stderr, "# %s\n", e->msg);
        ASSERT_INTEQ(r, 0);
        ASSERT_STREQ(d.digest, idx_digest);
        ASSERT_STREQ(d.media_type, OSSB_MT_OCI_INDEX);
        ASSERT(ossb_store_has(s, im.layer.digest) && ossb_store_has(s, im.config.digest));
        ossb_store_free(s);
        ossb_descriptor_clear(&d);

        /* the same as a gzip-compressed tar, made by libarchive */
        _cleanup_free_ char *tgz = sub("nested.tar.gz");
        struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_add_filter_gzip(a);
        ASSERT(archive_write_open_filename(a, tgz) == ARCHIVE_OK);
        static const char *const names[] = { "index.json", "oci-layout" };
        struct archive_entry *ae = archive_entry_new();
        for (size_t i = 0; i < 2 + 4; i++) {
                _cleanup_free_ char *src = NULL, *name = NULL, *data = NULL;
                size_t len = 0;
                if (i < 2) {
                        src = ossb_path_join(dir, names[i]);
                        name = ossb_path_join("./", names[i]);
                } else {
                        ASSERT(asprintf(&name, "blobs/sha256/%s", blobs[i - 2] + 7) >= 0);
                        src = ossb_path_join(dir, name);
                }
                ASSERT(ossb_read_file(src, 1 << 24, &data, &len, NULL) == 0);
                archive_entry_clear(ae);
                archive_entry_copy_pathname(ae, name);
                archive_entry_set_filetype(ae, AE_IFREG);
                archive_entry_set_perm(ae, 0644);
                archive_entry_set_size(ae, (la_int64_t) len);
                ASSERT(archive_write_header(a, ae) == ARCHIVE_OK);
                ASSERT(archive_write_data(a, data, len) == (la_ssize_t) len);
        }
        archive_entry_free(ae);
        archive_write_close(a);
        archive_write_free(a);
        r = read_layout(tgz, NULL, &d, NULL, NULL);
        ASSERT_INTEQ(r, 0);
        ASSERT_STREQ(d.digest, idx_digest);
        ossb_descriptor_clear(&d);
        image_clear(&im);
}

static void test_bad_blobs(void)
{
        struct image im = { 0 };
        _cleanup_free_ char *dir = sub("bad"), *top = NULL, *wrong = NULL;
        ASSERT(make_image(store, "bad\n", &im) == 0);
        top = entry_json(&im.manifest, im.manifest.size);
        char *all[] = { im.manifest.digest, im.config.digest, im.layer.digest, NULL };
        char *no_layer[] = { im.manifest.digest, im.config.digest, NULL };
        struct ossb_descriptor d = { 0 };

        /* a missing layer */
        _cleanup_error_ struct ossb_error *e1 = NULL;
        ASSERT(make_layout(dir, LAYOUT_FILE, top, no_layer) == 0);
        ASSERT_INTEQ(read_layout(dir, NULL, &d, NULL, &e1), -ENOENT);
        ASSERT(strstr(e1->msg, im.layer.digest) && strstr(e1->msg, "layer") && strstr(e1->msg, "missing"));

        /* a corrupt layer (same size, other bytes) */
        _cleanup_error_ struct ossb_error *e2 = NULL;
        ASSERT(make_layout(dir, LAYOUT_FILE, top, all) == 0);
        _cleanup_free_ char *lp = NULL;
        ASSERT(asprintf(&lp, "%s/blobs/sha256/%s", dir, im.layer.digest + 7) >= 0);
        int fd = open(lp, O_WRONLY | O_CLOEXEC);
        ASSERT(fd >= 0 && pwrite(fd, "XX", 2, 12) == 2);
        close(fd);
        ASSERT_INTEQ(read_layout(dir, NULL, &d, NULL, &e2), -EBADMSG);
        ASSERT(strstr(e2->msg, im.layer.digest) && strstr(e2->msg, "corrupt"));

        /* a longer layer file */
        _cleanup_error_ struct ossb_error *e3 = NULL;
        ASSERT(make_layout(dir, LAYOUT_FILE, top, all) == 0);
        fd = open(lp, O_WRONLY | O_APPEND | O_CLOEXEC);
        ASSERT(fd >= 0 && write(fd, "more", 4) == 4);
        close(fd);
        ASSERT_INTEQ(read_layout(dir, NULL, &d, NULL, &e3), -EBADMSG);
        ASSERT(strstr(e3->msg, "larger"));

        /* the manifest's size in index.json is wrong */
        _cleanup_error_ struct ossb_error *e4 = NULL;
        wrong = entry_json(&im.manifest, im.manifest.size - 1);
        ASSERT(make_layout(dir, LAYOUT_FILE, wrong, all) == 0);
        ASSERT_INTEQ(read_layout(dir, NULL, &d, NULL, &e4), -EBADMSG);
        ASSERT(strstr(e4->msg, "descriptor says"));
        _cleanup_error_ struct ossb_error *e5 = NULL;
        ASSERT_INTEQ(ossb_layout_read(store, dir, NULL, &d, &e5), -EBADMSG); /* the store has it already */
        ASSERT(strstr(e5->msg, "descriptor says"));

        /* index.json names a config, not a manifest */
        _cleanup_error_ struct ossb_error *e6 = NULL;
        _cleanup_free_ char *cfg = entry_json(&im.config, im.config.size);
        ASSERT(make_layout(dir, LAYOUT_FILE, cfg, all) == 0);
        ASSERT_INTEQ(read_layout(dir, NULL, &d, NULL, &e6), -EPROTO);

        /* a tar whose layer entry is corrupt, and one without it */
        for (int variant = 0; variant < 2; variant++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                _cleanup_free_ char *tarp = sub("bad.tar");
                struct archive *a = archive_write_new();
                struct archive_entry *ae = archive_entry_new();
                archive_write_set_format_ustar(a);
                ASSERT(archive_write_open_filename(a, tarp) == ARCHIVE_OK);
                for (size_t i = 0; i < 5; i++) {
                        _cleanup_free_ char *name = NULL, *data = NULL;
                        size_t len = 0;
                        if (i == 3 && variant == 1)
                                continue;
                        if (i == 0)
                                name = strdup("oci-layout");
                        else if (i == 4)
                                name = strdup("index.json");
                        else
                                ASSERT(asprintf(&name, "blobs/sha256/%s", all[i - 1] + 7) >= 0);
                        _cleanup_free_ char *src = ossb_path_join(dir, name);
                        ASSERT(ossb_read_file(src, 1 << 24, &data, &len, NULL) == 0);
                        if (i == 4) { /* the good index.json */
                                free(data);
                                data = strdup(top);
                                len = strlen(top);
                        }
                        if (i == 3)
                                data[len / 2] ^= 1;
                        archive_entry_clear(ae);
                        archive_entry_copy_pathname(ae, name);
                        archive_entry_set_filetype(ae, AE_IFREG);
                        archive_entry_set_perm(ae, 0644);
                        archive_entry_set_size(ae, (la_int64_t) len);
                        ASSERT(archive_write_header(a, ae) == ARCHIVE_OK);
                        ASSERT(archive_write_data(a, data, len) == (la_ssize_t) len);
                }
                archive_entry_free(ae);
                archive_write_close(a);
                archive_write_free(a);
                int r = read_layout(tarp, NULL, &d, NULL, &e);
                ASSERT_INTEQ(r, variant == 0 ? -EBADMSG : -ENOENT);
                ASSERT(strstr(e->msg, im.layer.digest));
        }
        image_clear(&im);
}

static void test_not_layouts(void)
{
        _cleanup_free_ char *dir = sub("notlayout"), *junk = sub("junk.bin"), *missing = sub("missing");
        struct ossb_descriptor d = { 0 };
        static const struct {
                const char *layout, *index, *msg;
        } cases[] = {
                { NULL, "{}", "oci-layout" },
                { "{\"imageLayoutVersion\":\"2.0.0\"}", "{}", "2.0.0" },
                { "{}", "{}", "imageLayoutVersion" },
                { "nope", "{}", "oci-layout" },
                { LAYOUT_FILE, NULL, "index.json" },
                { LAYOUT_FILE, "{\"schemaVersion\":2,\"manifests\":[]}", "no image" },
                { LAYOUT_FILE, "{\"schemaVersion\":2}", "index.json" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_error_ struct ossb_error *e = NULL;
                ASSERT(make_layout(dir, cases[i].layout, cases[i].index, NULL) == 0);
                ASSERT(read_layout(dir, NULL, &d, NULL, &e) < 0);
                if (!strstr(e->msg, cases[i].msg))
                        fprintf(stderr, "# case %zu: %s\n", i, e->msg);
                ASSERT(strstr(e->msg, cases[i].msg) && strstr(e->msg, dir));
        }
        /* a tar with an index.json (named "/index.json") but no oci-layout */
        _cleanup_error_ struct ossb_error *e0 = NULL;
        _cleanup_free_ char *tarp = sub("no-layout-file.tar");
        struct archive *a = archive_write_new();
        struct archive_entry *ae = archive_entry_new();
        archive_write_set_format_ustar(a);
        ASSERT(archive_write_open_filename(a, tarp) == ARCHIVE_OK);
        static const char *const names[] = { "/index.json", "manifest.json" };
        for (size_t i = 0; i < 2; i++) {
                static const char ix[] = "{\"schemaVersion\":2,\"manifests\":[]}";
                archive_entry_clear(ae);
                archive_entry_copy_pathname(ae, names[i]);
                archive_entry_set_filetype(ae, AE_IFREG);
                archive_entry_set_perm(ae, 0644);
                archive_entry_set_size(ae, (la_int64_t) strlen(ix));
                ASSERT(archive_write_header(a, ae) == ARCHIVE_OK);
                ASSERT(archive_write_data(a, ix, strlen(ix)) == (la_ssize_t) strlen(ix));
        }
        archive_entry_free(ae);
        archive_write_close(a);
        archive_write_free(a);
        ASSERT_INTEQ(read_layout(tarp, NULL, &d, NULL, &e0), -EPROTO);
        ASSERT(strstr(e0->msg, "oci-layout"));

        _cleanup_error_ struct ossb_error *e1 = NULL, *e2 = NULL;
        ASSERT(ossb_write_file_atomic(junk, "not a tar at all, not at all", 28, 0644, NULL) == 0);
        ASSERT(read_layout(junk, NULL, &d, NULL, &e1) < 0);
        ASSERT_INTEQ(read_layout(missing, NULL, &d, NULL, &e2), -ENOENT);
}

/* ---- store verification ---- */

static void test_verify(void)
{
        _cleanup_free_ char *root = sub("vstore");
        struct ossb_store *s = NULL;
        char d1[OSSB_DIGEST_STR_LEN + 1], d2[OSSB_DIGEST_STR_LEN + 1];
        int64_t ok = -1;
        char **bad = NULL;

        ASSERT(ossb_store_open(root, &s, NULL) == 0);
        ASSERT(ossb_store_put(s, "first", 5, NULL, d1, NULL) == 0);
        ASSERT(ossb_store_put(s, "second", 6, NULL, d2, NULL) == 0);
        ASSERT(ossb_store_verify(s, false, &ok, &bad, NULL) == 0);
        ASSERT_INTEQ(ok, 2);
        ASSERT(bad && !bad[0]);
        ossb_strv_free(bad);

        /* corrupt one: chmod u+w, then write */
        _cleanup_free_ char *p = NULL;
        ASSERT(ossb_store_blob_path(s, d2, &p, NULL) == 0);
        ASSERT(chmod(p, 0644) == 0);
        int fd = open(p, O_WRONLY | O_CLOEXEC);
        ASSERT(fd >= 0 && pwrite(fd, "S", 1, 0) == 1);
        close(fd);
        /* junk beside the blobs */
        _cleanup_free_ char *junk = NULL, *dirjunk = NULL, *link = NULL;
        ASSERT(asprintf(&junk, "%s/blobs/sha256/not-a-digest", root) >= 0);
        ASSERT(asprintf(&dirjunk, "%s/blobs/sha256/%s", root,
                        "0000000000000000000000000000000000000000000000000000000000000000") >= 0);
        ASSERT(asprintf(&link, "%s/blobs/sha256/%s", root, d1 + 7) >= 0);
        ASSERT(ossb_write_file_atomic(junk, "x", 1, 0644, NULL) == 0);
        ASSERT(mkdir(dirjunk, 0755) == 0);
        /* a symlink named like a blob (to a good blob): not a blob either */
        _cleanup_free_ char *sym = NULL;
        ASSERT(asprintf(&sym, "%s/blobs/sha256/%s", root,
                        "1111111111111111111111111111111111111111111111111111111111111111") >= 0);
        ASSERT(symlink(link, sym) == 0);
        /* ingest leftovers: a stale one and a fresh one */
        _cleanup_free_ char *stale = NULL, *fresh = NULL;
        ASSERT(asprintf(&stale, "%s/ingest/stale", root) >= 0 && asprintf(&fresh, "%s/ingest/fresh", root) >= 0);
        ASSERT(ossb_write_file_atomic(stale, "x", 1, 0644, NULL) == 0);
        ASSERT(ossb_write_file_atomic(fresh, "x", 1, 0644, NULL) == 0);
        struct timespec old[2] = { { time(NULL) - 7200, 0 }, { time(NULL) - 7200, 0 } };
        ASSERT(utimensat(AT_FDCWD, stale, old, 0) == 0);

        ASSERT(ossb_store_verify(s, false, &ok, &bad, NULL) == 0);
        ASSERT_INTEQ(ok, 1);
        ASSERT_INTEQ(ossb_strv_length(bad), 4);
        ASSERT(ossb_strv_contains(bad, d2));
        ASSERT(ossb_strv_contains(bad, "sha256:not-a-digest"));
        ossb_strv_free(bad);
        ASSERT(access(p, F_OK) == 0); /* reported, not removed */
        ASSERT(access(stale, F_OK) < 0 && access(fresh, F_OK) == 0);

        ASSERT(ossb_store_verify(s, true, &ok, &bad, NULL) == 0);
        ASSERT_INTEQ(ossb_strv_length(bad), 4);
        ossb_strv_free(bad);
        ASSERT(access(p, F_OK) < 0 && access(junk, F_OK) < 0 && access(dirjunk, F_OK) < 0);
        struct stat st;
        ASSERT(lstat(sym, &st) < 0 && access(link, F_OK) == 0); /* the link went, not its target */
        ASSERT(!ossb_store_has(s, d2) && ossb_store_has(s, d1));
        ASSERT(ossb_store_verify(s, true, &ok, NULL, NULL) == 0);
        ASSERT_INTEQ(ok, 1);

        /* a store whose blobs directory vanished */
        _cleanup_error_ struct ossb_error *e = NULL;
        _cleanup_free_ char *blobs = NULL;
        ASSERT(asprintf(&blobs, "%s/blobs", root) >= 0);
        ASSERT(ossb_rm_rf(blobs) == 0);
        ASSERT_INTEQ(ossb_store_verify(s, false, &ok, NULL, &e), -ENOENT);
        ossb_store_free(s);
}

int main(void)
{
        if (!mkdtemp(tmpdir))
                return 99;
        _cleanup_free_ char *sp = sub("store");
        if (ossb_store_open(sp, &store, NULL) < 0)
                return 99;
        RUN_TEST(test_dir_and_tar);
        RUN_TEST(test_several_entries);
        RUN_TEST(test_nested_index);
        RUN_TEST(test_bad_blobs);
        RUN_TEST(test_not_layouts);
        RUN_TEST(test_verify);
        ossb_store_free(store);
        if (!tap_failed_total)
                ossb_rm_rf(tmpdir);
        else
                fprintf(stderr, "# left %s for inspection\n", tmpdir);
        TAP_END();
}
