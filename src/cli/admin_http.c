// The CLI's side of sluiced's admin HTTP endpoint (libcurl): GET a page with a deadline, parse
// the JSON ones (jansson), and look values up in a /stats document. Used by `sluice why`,
// `drops`, `stats`, `top` and `demo`. The address comes from --admin, else $SLUICE_ADMIN, else
// 127.0.0.1:7421.
#include "cli/ops.h"

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include <sluice/error.h>

typedef struct body_buf {
    char *data;
    size_t len;
    size_t cap;
    bool too_big;
} body_buf;

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *user)
{
    body_buf *b = user;
    size_t n = size * nmemb;
    if (b->len + n + 1 > SL_CLI_ADMIN_BODY_MAX) {
        b->too_big = true;
        return 0; // aborts the transfer
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap == 0 ? 64 * 1024 : b->cap;
        // Doubling, bounded by SL_CLI_ADMIN_BODY_MAX.
        while (cap < b->len + n + 1) {
            cap *= 2;
        }
        char *bigger = realloc(b->data, cap);
        if (bigger == NULL) {
            return 0;
        }
        b->data = bigger;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

const char *
sl_cli_admin_addr(const char *opt)
{
    if (opt != NULL && opt[0] != '\0') {
        return opt;
    }
    const char *env = getenv(SL_CLI_ADMIN_ENV);
    return env != NULL && env[0] != '\0' ? env : SL_CLI_ADMIN_DEFAULT;
}

int
sl_cli_admin_get(const char *admin, const char *path, int64_t timeout_ms, char **body_out,
                 long *status_out, char *why, size_t why_size)
{
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        snprintf(why, why_size, "cannot start libcurl");
        return SL_ENOMEM;
    }
    char url[1024];
    snprintf(url, sizeof(url), "http://%s%s", sl_cli_admin_addr(admin), path);
    body_buf b = {0};
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http");
    CURLcode rc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        free(b.data);
        snprintf(why, why_size, "admin endpoint %s: %s", sl_cli_admin_addr(admin),
                 b.too_big ? "answer too large" : curl_easy_strerror(rc));
        return rc == CURLE_OPERATION_TIMEDOUT ? SL_ETIMEDOUT : SL_ECONNREFUSED;
    }
    if (b.data == NULL) {
        b.data = calloc(1, 1);
        if (b.data == NULL) {
            return SL_ENOMEM;
        }
    }
    *body_out = b.data;
    *status_out = status;
    return SL_OK;
}

int
sl_cli_admin_json(const char *admin, const char *path, int64_t timeout_ms, json_t **json_out,
                  long *status_out, char *why, size_t why_size)
{
    char *body = NULL;
    int rc = sl_cli_admin_get(admin, path, timeout_ms, &body, status_out, why, why_size);
    if (rc != SL_OK) {
        return rc;
    }
    json_error_t jerr;
    json_t *j = json_loads(body, 0, &jerr);
    if (j == NULL) {
        snprintf(why, why_size, "%s answered %ld with no JSON: %.120s", path, *status_out, body);
        free(body);
        return SL_EPROTO;
    }
    free(body);
    *json_out = j;
    return SL_OK;
}

// ---- /stats lookups -----------------------------------------------------------------------------

json_t *
sl_cli_stats_family(json_t *stats, const char *family)
{
    json_t *fams = json_object_get(stats, "families");
    size_t i;
    json_t *f;
    json_array_foreach(fams, i, f)
    {
        const char *name = json_string_value(json_object_get(f, "name"));
        if (name != NULL && strcmp(name, family) == 0) {
            return json_object_get(f, "series");
        }
    }
    return NULL;
}

// True when every label pair (key, value, ..., NULL) matches the series' labels.
static bool
labels_match(json_t *series, const char *const *pairs)
{
    json_t *labels = json_object_get(series, "labels");
    for (size_t i = 0; pairs != NULL && pairs[i] != NULL && pairs[i + 1] != NULL; i += 2) {
        const char *v = json_string_value(json_object_get(labels, pairs[i]));
        if (v == NULL || strcmp(v, pairs[i + 1]) != 0) {
            return false;
        }
    }
    return true;
}

double
sl_cli_stat(json_t *stats, const char *family, const char *const *pairs, const char *field)
{
    json_t *series = sl_cli_stats_family(stats, family);
    size_t i;
    json_t *s;
    json_array_foreach(series, i, s)
    {
        if (!labels_match(s, pairs)) {
            continue;
        }
        json_t *v = json_object_get(s, field != NULL ? field : "value");
        if (json_is_null(v)) {
            return INFINITY; // the JSON encoder writes non-finite values as null
        }
        return json_number_value(v);
    }
    return NAN;
}
