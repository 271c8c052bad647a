// The tests' HTTP/1.0 GET client and Prometheus sample lookup (http_client.h).
#include "support/http_client.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t
mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
connect_loopback(uint16_t port)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Reads until the peer closes or the deadline passes; returns the bytes read or -1.
static long
read_all(int fd, char *buf, size_t cap, int64_t deadline_ms)
{
    size_t len = 0;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    // Bounded by the deadline and the buffer.
    while (len < cap) {
        int64_t left = deadline_ms - mono_ms();
        if (left <= 0) {
            return -1;
        }
        int pr = poll(&pfd, 1, (int)left);
        if (pr < 0 && errno != EINTR) {
            return -1;
        }
        if (pr <= 0) {
            continue;
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n == 0) {
            return (long)len;
        }
        if (n < 0) {
            return errno == EINTR ? 0 : -1;
        }
        len += (size_t)n;
    }
    return -1;
}

int
sl_test_http_get(uint16_t port, const char *path, int timeout_ms, int *status_out, char **body_out)
{
    int64_t deadline = mono_ms() + timeout_ms;
    int fd = connect_loopback(port);
    if (fd < 0) {
        return -1;
    }
    char req[2048];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (n <= 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    char *buf = malloc(SL_TEST_HTTP_RESPONSE_MAX + 1);
    if (buf == NULL) {
        close(fd);
        return -1;
    }
    long len = read_all(fd, buf, SL_TEST_HTTP_RESPONSE_MAX, deadline);
    close(fd);
    int major = 0;
    int minor = 0;
    char *body = NULL;
    if (len > 0) {
        buf[len] = '\0';
        body = strstr(buf, "\r\n\r\n");
    }
    if (body == NULL || sscanf(buf, "HTTP/%d.%d %d", &major, &minor, status_out) != 3) {
        free(buf);
        return -1;
    }
    body += 4;
    size_t body_len = (size_t)len - (size_t)(body - buf);
    memmove(buf, body, body_len + 1);
    *body_out = buf;
    return 0;
}

int
sl_test_prom_sample(const char *text, const char *prefix, const char *const *extra,
                    double *value_out)
{
    size_t plen = strlen(prefix);
    // Bounded by the text: every pass moves to the next line.
    for (const char *line = text; line != NULL && *line != '\0';) {
        const char *eol = strchr(line, '\n');
        size_t len = eol != NULL ? (size_t)(eol - line) : strlen(line);
        int match = len > plen && strncmp(line, prefix, plen) == 0;
        for (int i = 0; match && extra != NULL && extra[i] != NULL; i++) {
            const char *at = strstr(line, extra[i]);
            match = at != NULL && at < line + len;
        }
        if (match) {
            const char *v = line + len;
            while (v > line && v[-1] != ' ') {
                v--;
            }
            *value_out = strtod(v, NULL);
            return 0;
        }
        line = eol != NULL ? eol + 1 : NULL;
    }
    return -1;
}
