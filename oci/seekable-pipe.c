/* oci/seekable-pipe.c - the compression pipeline of the seekable formats: an uncompressed
 * stream cut into segments, each compressed on its own (one gzip member or one zstd frame) by
 * a pool of threads and written to a sink in order.
 *
 * Owns: struct ossb_seek_pipe, its worker threads, its job buffers and the compressed offset
 * of every segment.  Segments are batched into jobs of at least JOB_MIN input bytes so that
 * many tiny segments (the headers and data of small files) cost one thread hand-off, not one
 * each.  A segment's bytes depend only on its input and the level, so the output is the same
 * whatever the thread count, the batching or the timing.
 * Threads: only the caller's thread fills jobs, writes them out and calls the sink; workers
 * only compress.  `mu` protects the jobs' `state` and `seq_take`; a job's buffers belong to
 * the caller while FREE/FILLING/DONE and to one worker while BUSY.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "common/cleanup.h"
#include "oci/pgzip.h"
#include "oci/seekable-internal.h"

#define JOB_MIN (256 * 1024) /* input bytes a job collects before it is handed to a worker */
#define RANDOM_MIN_LEN 4096
#define RANDOM_MAX_CHI2 600

enum job_state { JOB_FREE = 0, JOB_FILLING, JOB_QUEUED, JOB_BUSY, JOB_DONE };

struct job {
        enum job_state state;     /* protected by mu */
        unsigned char *in;        /* the segments' bytes, back to back */
        size_t in_len, in_cap;
        size_t *seg_len;          /* input length of each segment */
        size_t *seg_out;          /* compressed length of each segment (after compression) */
        size_t n_seg, seg_cap;
        unsigned char *out;
        size_t out_len, out_cap;
        int r;                    /* 0 or -errno from the compression */
        const char *what;         /* a static description of the failure */
};

struct worker {
        struct ossb_seek_pipe *p;
        pthread_t thread;
        bool started;
        ZSTD_CCtx *zc;
        z_stream z, z0; /* raw deflate at the level, and stored (level 0) */
        bool z_init, z0_init;
};

struct ossb_seek_pipe {
        bool zstd;
        int level;
        ossb_sink_fn sink;
        void *userdata;
        struct job *jobs;
        size_t njobs;
        uint64_t seq_fill, seq_write; /* caller only */
        uint64_t seq_take;            /* protected by mu */
        size_t open_len;              /* bytes of the segment being filled */
        struct worker *workers;
        unsigned nworkers;            /* 0: compress in the caller, with workers[0]'s contexts */
        pthread_mutex_t mu;
        pthread_cond_t work_cv, done_cv;
        bool stop;                    /* protected by mu */
        int failed;
        /* compressed offset of each segment, and the bytes written so far (caller only) */
        int64_t *seg_off;
        size_t n_off, off_cap;
        int64_t written;
};

/* ---- compressing one job (in a worker, or in the caller) ---- */

static bool looks_random(const unsigned char *b, size_t n)
{
        uint32_t count[256] = { 0 };
        uint64_t sq = 0;
        if (n < RANDOM_MIN_LEN)
                return false;
        for (size_t i = 0; i < n; i++)
                count[b[i]]++;
        for (size_t i = 0; i < 256; i++)
                sq += (uint64_t) count[i] * count[i];
        return 256 * sq < (uint64_t) (RANDOM_MAX_CHI2 + n) * n;
}

static int job_fail(struct job *j, int r, const char *what)
{
        if (j->r == 0) {
                j->r = r;
                j->what = what;
        }
        return r;
}

static int out_reserve(struct job *j, size_t need)
{
        if (j->out_cap - j->out_len >= need)
                return 0;
        size_t cap = j->out_cap ? j->out_cap : 64 * 1024;
        while (cap - j->out_len < need) {
                if (cap > SIZE_MAX / 2)
                        return job_fail(j, -ENOMEM, "out of memory");
                cap *= 2;
        }
        unsigned char *o = realloc(j->out, cap);
        if (!o)
                return job_fail(j, -ENOMEM, "out of memory");
        j->out = o;
        j->out_cap = cap;
        return 0;
}

static void put_le32(unsigned char *b, uint32_t v)
{
        for (int i = 0; i < 4; i++)
                b[i] = (unsigned char) (v >> (8 * i));
}

/* One gzip member: the header compress.h describes (mtime 0, no name, OS 255), raw deflate, CRC-32, size. */
static int gzip_segment(struct worker *w, struct job *j, const unsigned char *in, size_t len)
{
        bool stored = looks_random(in, len);
        z_stream *z = stored ? &w->z0 : &w->z;
        int level = w->p->level;
        size_t start = j->out_len;

        if (len > UINT32_MAX / 2)
                return job_fail(j, -EFBIG, "segment too large");
        size_t bound = deflateBound(z, (uLong) len) + 18;
        if (out_reserve(j, bound) < 0)
                return j->r;
        unsigned char *h = j->out + start;
        memcpy(h, "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", 10);
        h[8] = level == 9 ? 2 : level < 2 ? 4 : 0;
        if (deflateReset(z) != Z_OK)
                return job_fail(j, -EIO, "cannot reset deflate");
        z->next_in = (Bytef *) in;
        z->avail_in = (uInt) len;
        z->next_out = h + 10;
        z->avail_out = (uInt) (bound - 18);
        if (deflate(z, Z_FINISH) != Z_STREAM_END)
                return job_fail(j, -EIO, "deflate failed");
        size_t n = 10 + (bound - 18 - z->avail_out);
        put_le32(h + n, (uint32_t) crc32(0L, in, (uInt) len));
        put_le32(h + n + 4, (uint32_t) len);
        j->out_len += n + 8;
        return 0;
}

static int zstd_segment(struct worker *w, struct job *j, const unsigned char *in, size_t len)
{
        size_t bound = ZSTD_compressBound(len);
        if (ZSTD_isError(bound))
                return job_fail(j, -EFBIG, "segment too large");
        if (out_reserve(j, bound) < 0)
                return j->r;
        size_t n = ZSTD_compress2(w->zc, j->out + j->out_len, bound, in, len);
        if (ZSTD_isError(n))
                return job_fail(j, -EIO, "zstd compression failed");
        j->out_len += n;
        return 0;
}

static void compress_job(struct worker *w, struct job *j)
{
        size_t pos = 0;
        j->out_len = 0;
        j->r = 0;
        for (size_t i = 0; i < j->n_seg; i++) {
                size_t before = j->out_len;
                int r = w->p->zstd ? zstd_segment(w, j, j->in + pos, j->seg_len[i])
                                   : gzip_segment(w, j, j->in + pos, j->seg_len[i]);
                if (r < 0)
                        return;
                j->seg_out[i] = j->out_len - before;
                pos += j->seg_len[i];
        }
}

static void *worker_main(void *arg)
{
        struct worker *w = arg;
        struct ossb_seek_pipe *p = w->p;

        pthread_mutex_lock(&p->mu);
        for (;;) {
                struct job *j = NULL;
                while (!p->stop) {
                        j = &p->jobs[p->seq_take % p->njobs];
                        if (j->state == JOB_QUEUED)
                                break;
                        j = NULL;
                        pthread_cond_wait(&p->work_cv, &p->mu);
                }
                if (!j)
                        break;
                j->state = JOB_BUSY;
                p->seq_take++;
                pthread_mutex_unlock(&p->mu);
                compress_job(w, j);
                pthread_mutex_lock(&p->mu);
                j->state = JOB_DONE;
                pthread_cond_broadcast(&p->done_cv);
        }
        pthread_mutex_unlock(&p->mu);
        return NULL;
}

/* ---- setup ---- */

static int worker_init(struct ossb_seek_pipe *p, struct worker *w, struct ossb_error **err)
{
        w->p = p;
        if (p->zstd) {
                w->zc = ZSTD_createCCtx();
                if (!w->zc)
                        return ossb_error_set(err, -ENOMEM, "out of memory");
                size_t z = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_compressionLevel, p->level);
                if (!ZSTD_isError(z))
                        z = ZSTD_CCtx_setParameter(w->zc, ZSTD_c_checksumFlag, 1);
                if (ZSTD_isError(z))
                        return ossb_error_set(err, -EINVAL, "cannot configure zstd: %s", ZSTD_getErrorName(z));
                return 0;
        }
        if (deflateInit2(&w->z, p->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return ossb_error_set(err, -ENOMEM, "cannot initialise zlib");
        w->z_init = true;
        if (deflateInit2(&w->z0, 0, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
                return ossb_error_set(err, -ENOMEM, "cannot initialise zlib");
        w->z0_init = true;
        return 0;
}

static int check_level(bool zstd, int *level, struct ossb_error **err)
{
        if (*level == -1)
                *level = zstd ? 3 : 6;
        else if (zstd && (*level < ZSTD_minCLevel() || *level > ZSTD_maxCLevel() || *level == 0))
                return ossb_error_set(err, -EINVAL, "zstd level %d is out of range (%d-%d, not 0)", *level,
                                      ZSTD_minCLevel(), ZSTD_maxCLevel());
        else if (!zstd && (*level < 0 || *level > 9))
                return ossb_error_set(err, -EINVAL, "gzip level %d is out of range (0-9)", *level);
        return 0;
}

int ossb_seek_pipe_new(bool zstd, int level, unsigned threads, ossb_sink_fn sink, void *userdata,
                       struct ossb_seek_pipe **ret, struct ossb_error **err)
{
        int r = check_level(zstd, &level, err);
        if (r < 0)
                return r;
        if (threads == 0)
                threads = ossb_pgzip_default_threads();
        if (threads > 64)
                return ossb_error_set(err, -EINVAL, "%u compression threads (at most 64)", threads);
        struct ossb_seek_pipe *p = calloc(1, sizeof(*p));
        if (!p)
                return ossb_error_set(err, -ENOMEM, "out of memory");
        p->zstd = zstd;
        p->level = level;
        p->sink = sink;
        p->userdata = userdata;
        p->nworkers = threads > 1 ? threads : 0;
        p->njobs = p->nworkers ? p->nworkers + 2 : 1;
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->work_cv, NULL);
        pthread_cond_init(&p->done_cv, NULL);
        p->jobs = calloc(p->njobs, sizeof(*p->jobs));
        p->workers = calloc(p->nworkers ? p->nworkers : 1, sizeof(*p->workers));
        if (!p->jobs || !p->workers) {
                ossb_seek_pipe_free(p);
                return ossb_error_set(err, -ENOMEM, "out of memory");
        }
        for (unsigned i = 0; i < (p->nworkers ? p->nworkers : 1); i++) {
                r = worker_init(p, &p->workers[i], err);
                if (r < 0) {
                        ossb_seek_pipe_free(p);
                        return r;
                }
        }
        for (unsigned i = 0; i < p->nworkers; i++) {
                r = -pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]);
                if (r < 0) {
                        ossb_seek_pipe_free(p);
                        return ossb_error_set(err, r, "cannot start a compression thread: %s", strerror(-r));
                }
                p->workers[i].started = true;
        }
        p->jobs[0].state = JOB_FILLING;
        *ret = p;
        return 0;
}

void ossb_seek_pipe_free(struct ossb_seek_pipe *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
        for (unsigned i = 0; p->workers && i < (p->nworkers ? p->nworkers : 1); i++) {
                struct worker *w = &p->workers[i];
                if (w->started)
                        pthread_join(w->thread, NULL);
                ZSTD_freeCCtx(w->zc);
                if (w->z_init)
                        deflateEnd(&w->z);
                if (w->z0_init)
                        deflateEnd(&w->z0);
        }
        for (size_t i = 0; p->jobs && i < p->njobs; i++) {
                free(p->jobs[i].in);
                free(p->jobs[i].out);
                free(p->jobs[i].seg_len);
                free(p->jobs[i].seg_out);
        }
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->work_cv);
        pthread_cond_destroy(&p->done_cv);
        free(p->jobs);
        free(p->workers);
        free(p->seg_off);
        free(p);
}

/* ---- the caller's side ---- */

static int pipe_fail(struct ossb_seek_pipe *p, int r, const char *what, struct ossb_error **err)
{
        if (!p->failed)
                p->failed = r;
        return ossb_error_set(err, r, "%s compression failed: %s", p->zstd ? "zstd" : "gzip", what);
}

static int record_offset(struct ossb_seek_pipe *p, struct ossb_error **err)
{
        if (p->n_off == p->off_cap) {
                size_t cap = p->off_cap ? p->off_cap * 2 : 1024;
                int64_t *o = reallocarray(p->seg_off, cap, sizeof(*o));
                if (!o)
                        return pipe_fail(p, -ENOMEM, "out of memory", err);
                p->seg_off = o;
                p->off_cap = cap;
        }
        p->seg_off[p->n_off++] = p->written;
        return 0;
}

/* Write out the oldest submitted job, waiting for it. */
static int write_oldest(struct ossb_seek_pipe *p, struct ossb_error **err)
{
        struct job *j = &p->jobs[p->seq_write % p->njobs];
        pthread_mutex_lock(&p->mu);
        while (j->state != JOB_DONE)
                pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
        if (j->r < 0)
                return pipe_fail(p, j->r, j->what, err);
        size_t pos = 0;
        for (size_t i = 0; i < j->n_seg; i++) {
                int r = record_offset(p, err);
                if (r < 0)
                        return r;
                r = p->sink(p->userdata, j->out + pos, j->seg_out[i], err);
                if (r < 0) {
                        p->failed = r;
                        return r;
                }
                pos += j->seg_out[i];
                p->written += (int64_t) j->seg_out[i];
        }
        j->in_len = j->n_seg = j->out_len = 0;
        j->state = JOB_FREE;
        p->seq_write++;
        return 0;
}

static int submit(struct ossb_seek_pipe *p, struct ossb_error **err)
{
        struct job *j = &p->jobs[p->seq_fill % p->njobs];
        if (j->n_seg == 0)
                return 0;
        if (p->nworkers == 0) {
                compress_job(&p->workers[0], j);
                j->state = JOB_DONE;
        } else {
                pthread_mutex_lock(&p->mu);
                j->state = JOB_QUEUED;
                pthread_cond_broadcast(&p->work_cv);
                pthread_mutex_unlock(&p->mu);
        }
        p->seq_fill++;
        struct job *next = &p->jobs[p->seq_fill % p->njobs];
        if (p->seq_fill - p->seq_write == p->njobs) {
                int r = write_oldest(p, err);
                if (r < 0)
                        return r;
        }
        next->state = JOB_FILLING;
        return 0;
}

int ossb_seek_pipe_write(struct ossb_seek_pipe *p, const void *data, size_t len, struct ossb_error **err)
{
        if (p->failed)
                return ossb_error_set(err, p->failed, "the compression failed earlier");
        struct job *j = &p->jobs[p->seq_fill % p->njobs];
        if (len == 0)
                return 0;
        if (j->in_cap - j->in_len < len) {
                size_t cap = j->in_cap ? j->in_cap : JOB_MIN * 2;
                while (cap - j->in_len < len) {
                        if (cap > SIZE_MAX / 2)
                                return pipe_fail(p, -ENOMEM, "out of memory", err);
                        cap *= 2;
                }
                unsigned char *in = realloc(j->in, cap);
                if (!in)
                        return pipe_fail(p, -ENOMEM, "out of memory", err);
                j->in = in;
                j->in_cap = cap;
        }
        memcpy(j->in + j->in_len, data, len);
        j->in_len += len;
        p->open_len += len;
        return 0;
}

int ossb_seek_pipe_cut(struct ossb_seek_pipe *p, struct ossb_error **err)
{
        if (p->failed)
                return ossb_error_set(err, p->failed, "the compression failed earlier");
        struct job *j = &p->jobs[p->seq_fill % p->njobs];
        if (p->open_len == 0)
                return 0;
        if (j->n_seg == j->seg_cap) {
                size_t cap = j->seg_cap ? j->seg_cap * 2 : 64;
                size_t *a = reallocarray(j->seg_len, cap, sizeof(*a));
                if (!a)
                        return pipe_fail(p, -ENOMEM, "out of memory", err);
                j->seg_len = a;
                size_t *b = reallocarray(j->seg_out, cap, sizeof(*b));
                if (!b)
                        return pipe_fail(p, -ENOMEM, "out of memory", err);
                j->seg_out = b;
                j->seg_cap = cap;
        }
        j->seg_len[j->n_seg++] = p->open_len;
        p->open_len = 0;
        return j->in_len >= JOB_MIN ? submit(p, err) : 0;
}

uint64_t ossb_seek_pipe_next_index(const struct ossb_seek_pipe *p)
{
        uint64_t n = p->n_off;
        for (uint64_t s = p->seq_write; s <= p->seq_fill; s++)
                n += p->jobs[s % p->njobs].n_seg;
        return n;
}

size_t ossb_seek_pipe_open_len(const struct ossb_seek_pipe *p)
{
        return p->open_len;
}

int ossb_seek_pipe_flush(struct ossb_seek_pipe *p, struct ossb_error **err)
{
        int r = ossb_seek_pipe_cut(p, err);
        if (r >= 0)
                r = submit(p, err);
        while (r >= 0 && p->seq_write < p->seq_fill)
                r = write_oldest(p, err);
        return r;
}

int ossb_seek_pipe_raw(struct ossb_seek_pipe *p, const void *data, size_t len, struct ossb_error **err)
{
        int r = ossb_seek_pipe_flush(p, err);
        if (r < 0)
                return r;
        r = p->sink(p->userdata, data, len, err);
        if (r < 0)
                return p->failed = r;
        p->written += (int64_t) len;
        return 0;
}

int64_t ossb_seek_pipe_segment_offset(const struct ossb_seek_pipe *p, uint64_t idx)
{
        return idx < p->n_off ? p->seg_off[idx] : -1;
}

int64_t ossb_seek_pipe_segment_end(const struct ossb_seek_pipe *p, uint64_t idx)
{
        if (idx >= p->n_off)
                return -1;
        return idx + 1 < p->n_off ? p->seg_off[idx + 1] : p->written;
}

int64_t ossb_seek_pipe_written(const struct ossb_seek_pipe *p)
{
        return p->written;
}
