/* sandbox_fs.c — small files of /proc, /sys/fs/cgroup and /dev, read and written whole; and
 * the error formatter the sandbox's rooms share. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "sandbox-int.h"

/* Formats a clear error into err and returns ML_ERR. */
int sb_errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (err && len) {
        va_start(ap, fmt);
        ml_vsnprintf_trunc(err, len, fmt, ap);
        va_end(ap);
    }
    return ML_ERR;
}

int sb_write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(s);
    ssize_t w;

    if (fd < 0)
        return ML_ERR;
    w = write(fd, s, n);
    close(fd);
    return w == (ssize_t)n ? ML_OK : ML_ERR;
}

/* Reads up to len-1 bytes of a small file, NUL-terminated. */
int sb_read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return ML_ERR;
    r = read(fd, buf, len - 1);
    close(fd);
    if (r < 0)
        return ML_ERR;
    buf[r] = '\0';
    return ML_OK;
}

int64_t sb_read_int_at(int fd)
{
    char buf[32];
    ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
    int64_t v = -1;

    if (r <= 0)
        return -1;
    buf[r] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return ml_parse_int64(buf, 0, INT64_MAX, &v) == ML_OK ? v : -1;
}

int sb_open_null(void)
{
    return open("/dev/null", O_RDWR | O_CLOEXEC);
}
