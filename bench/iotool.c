/*
 * iotool: a small block-device load generator for bench/transport.py, run inside the built-in
 * guest (busybox: it has dd but no fio). Built on the host with `gcc -static` at run time and
 * copied into the guest over SSH, so it needs nothing the guest lacks.
 *
 * Queue depth N is N threads, each doing one pread/pwrite at a time on an O_DIRECT descriptor:
 * the guest's block layer then has up to N requests in flight on the virtio queue, as an
 * asynchronous engine at depth N would (the guest has no libaio/io_uring tooling to rely on).
 *
 *   iotool MODE DEVICE BLOCK_BYTES QD SECONDS SPAN_BYTES [tick]
 *
 * MODE: randread | randwrite | read | write. Random modes pick block-aligned offsets uniformly
 * in [0, SPAN); sequential modes hand out consecutive blocks from one shared cursor (wrapping
 * at SPAN), so the N threads together stream through the span in order. Write modes end with
 * one fsync (a FLUSH to the device), inside the timed window. With `tick`, the number of
 * operations completed in each second is printed as it happens (the reconnect experiment reads
 * it to see a stall and a resumption).
 *
 * Output, one line: `ops=… bytes=… io_s=… total_s=… errors=… first_error=…`
 * io_s is the timed I/O phase, total_s includes the final fsync. Exit status 0 only when no
 * operation (nor the fsync) failed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_QD 256

enum mode { RANDREAD, RANDWRITE, SEQREAD, SEQWRITE };

static enum mode mode;
static int fd;
static size_t block;
static uint64_t span_blocks;
static double seconds;
static volatile int stop;
static uint64_t seq_cursor; /* next block for the sequential modes (atomic) */
static uint64_t total_ops;  /* completed operations (atomic), read by the ticker */
static uint64_t total_errors;
static int first_error;

struct worker {
    pthread_t thread;
    unsigned id;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* xorshift64*: a per-thread generator, enough for spreading offsets uniformly. */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (w->id + 1);
    void *buf;
    int writing = mode == RANDWRITE || mode == SEQWRITE;
    if (posix_memalign(&buf, 4096, block) != 0) {
        __atomic_add_fetch(&total_errors, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    /* Random, non-zero content: no layer may shortcut the writes as zeroes. */
    for (size_t i = 0; i < block; i += 8) {
        uint64_t r = next_random(&rng) | 1;
        memcpy((char *)buf + i, &r, 8);
    }
    while (!stop) {
        uint64_t b;
        if (mode == RANDREAD || mode == RANDWRITE)
            b = next_random(&rng) % span_blocks;
        else
            b = __atomic_fetch_add(&seq_cursor, 1, __ATOMIC_RELAXED) % span_blocks;
        off_t off = (off_t)(b * block);
        ssize_t n = writing ? pwrite(fd, buf, block, off) : pread(fd, buf, block, off);
        if (n != (ssize_t)block) {
            int e = n < 0 ? errno : EIO;
            if (__atomic_add_fetch(&total_errors, 1, __ATOMIC_RELAXED) == 1)
                first_error = e;
            usleep(10000); /* a failing device: do not spin */
            continue;
        }
        __atomic_add_fetch(&total_ops, 1, __ATOMIC_RELAXED);
    }
    free(buf);
    return NULL;
}

static int parse_mode(const char *s, enum mode *m)
{
    static const struct { const char *name; enum mode m; } modes[] = {
        {"randread", RANDREAD}, {"randwrite", RANDWRITE}, {"read", SEQREAD}, {"write", SEQWRITE},
    };
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(s, modes[i].name) == 0) {
            *m = modes[i].m;
            return 0;
        }
    return -1;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t bs, qd, secs, span;
    int tick = argc == 8 && strcmp(argv[7], "tick") == 0;
    if ((argc != 7 && !tick) || parse_mode(argv[1], &mode) != 0 || parse_u64(argv[3], &bs) != 0 ||
        parse_u64(argv[4], &qd) != 0 || parse_u64(argv[5], &secs) != 0 || parse_u64(argv[6], &span) != 0 ||
        bs == 0 || bs % 512 != 0 || qd == 0 || qd > MAX_QD || secs == 0 || span < bs) {
        fprintf(stderr, "usage: iotool randread|randwrite|read|write DEVICE BLOCK_BYTES QD(1-%d) "
                        "SECONDS SPAN_BYTES [tick]\n", MAX_QD);
        return 2;
    }
    block = bs;
    span_blocks = span / bs;
    seconds = (double)secs;
    int writing = mode == RANDWRITE || mode == SEQWRITE;
    fd = open(argv[2], (writing ? O_RDWR : O_RDONLY) | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "iotool: open %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    struct worker workers[MAX_QD];
    double t0 = now();
    for (unsigned i = 0; i < qd; i++) {
        workers[i].id = i;
        if (pthread_create(&workers[i].thread, NULL, run, &workers[i]) != 0) {
            fprintf(stderr, "iotool: cannot start thread %u\n", i);
            stop = 1;
            qd = i;
            break;
        }
    }
    uint64_t last = 0;
    double end = t0 + seconds;
    for (double t = now(); t < end; t = now()) {
        double nap = end - t < 1.0 ? end - t : 1.0;
        usleep((useconds_t)(nap * 1e6));
        if (tick) {
            uint64_t ops = __atomic_load_n(&total_ops, __ATOMIC_RELAXED);
            printf("tick t=%.1f ops=%llu\n", now() - t0, (unsigned long long)(ops - last));
            fflush(stdout);
            last = ops;
        }
    }
    stop = 1;
    for (unsigned i = 0; i < qd; i++)
        pthread_join(workers[i].thread, NULL);
    double io_end = now();
    if (writing && fsync(fd) != 0) {
        if (__atomic_add_fetch(&total_errors, 1, __ATOMIC_RELAXED) == 1)
            first_error = errno;
    }
    double t_end = now();
    close(fd);
    unsigned long long ops = __atomic_load_n(&total_ops, __ATOMIC_RELAXED);
    printf("ops=%llu bytes=%llu io_s=%.3f total_s=%.3f errors=%llu first_error=%s\n", ops,
           ops * (unsigned long long)block, io_end - t0, t_end - t0,
           (unsigned long long)total_errors, first_error ? strerror(first_error) : "none");
    return total_errors == 0 ? 0 : 1;
}
